"""What every representation of symbols shares: a token per step, embedded in, a softmax out.

``SymbolSteps`` is the network side of ``chord_tokens``, ``abc_chars`` and ``roll_tokens``:
one int32 column of tokens (named by ``columns[0]``), ``vocabulary`` symbols, embedded in
``embedding`` dimensions, predicted by one categorical field, scored by accuracy and the
loss on the last step, and set beside repeat, unigram, Markov-chain and interpolated n-gram
baselines (``TokenNGrams``, orders ``NGRAM_ORDERS``, each strength tuned on the validation
files; ``roll_tokens`` is scored by its frames instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from models.config import InputSpec
from note_matrix.evaluation.baselines import TokenBaselines
from note_matrix.evaluation.ngram import NGram
from note_matrix.representations.base import Representation

NGRAM_ORDERS = (2, 3, 5, 8)


class SymbolSteps(Representation):
    """A representation whose steps are tokens of ``vocabulary`` symbols (module docstring);
    a subclass sets ``vocabulary`` and ``embedding``."""

    heads = ("categorical",)
    options: ClassVar[tuple[str, ...]]  # the constructor's arguments, saved by ``to_json``
    vocabulary: int
    embedding: int

    @classmethod
    def from_json(cls, data: dict) -> SymbolSteps:
        unknown = sorted(set(data) - {"name", *cls.options})
        if unknown:
            raise ValueError(f"{cls.name} has no option {unknown[0]!r}")
        return cls(**{key: data[key] for key in cls.options if key in data})

    def inputs(self) -> InputSpec:
        return InputSpec("tokens", 1, vocabulary=self.vocabulary, embedding=self.embedding)

    def head(self, name: str, mixtures: int):
        from models.fields import Categorical, Head

        if name != "categorical":
            raise ValueError(f"{self.name} has the head categorical only, not {name!r}")
        return Head((Categorical(self.columns[0], self.vocabulary, scale=1.0),))

    def metrics(self, head_name: str, head) -> list:
        from models.head_metrics import ColumnAccuracy, LastLoss

        return [ColumnAccuracy(head, column=0, scale=1.0, name="accuracy"), LastLoss(head)]

    def valid_steps(self, steps):
        from keras import ops

        limit = float(self.vocabulary - 1)
        return ops.cast(ops.clip(ops.round(ops.cast(steps, "float32")), 0.0, limit), "int32")

    def baselines(self, training: list[np.ndarray], validation: list[np.ndarray] | None = None):
        """Repeat, unigram and Markov chain, and interpolated n-grams of orders ``NGRAM_ORDERS``
        (``evaluation.ngram``, each strength tuned on ``validation``)."""
        return TokenNGrams.fit(training, validation or [], self.vocabulary)


@dataclass(frozen=True)
class TokenNGrams:
    """``TokenBaselines`` plus interpolated n-grams of the tokens (``SymbolSteps.baselines``),
    scored file by file so no more than one file's distributions are held at once."""

    tokens: TokenBaselines
    training: list[np.ndarray]
    validation: list[np.ndarray]

    @classmethod
    def fit(cls, training: list[np.ndarray], validation: list[np.ndarray], classes: int) -> TokenNGrams:
        def column(arrays):
            return [np.asarray(array[:, 0], np.int64) for array in arrays if len(array)]

        return cls(TokenBaselines.fit(training, classes), column(training), column(validation))

    def score_all(self, arrays: list[np.ndarray], window: int) -> dict[str, dict]:
        """Every baseline's accuracy and NLL on the tokens a window-``window`` model is scored
        on: each file's scores weighted by its tokens scored (none without such files)."""
        files = [array for array in arrays if len(array) > window]
        models = {
            order: NGram.tune(self.training, self.validation, order, self.tokens.marginal, start=window)
            for order in NGRAM_ORDERS
        }
        per_file = [self.file_scores(array, window, models) for array in files]
        weights = [len(array) - window for array in files]
        return {
            name: {
                key: None if value is None else float(np.average([s[name][key] for s in per_file], weights=weights))
                for key, value in scores.items()
            }
            for name, scores in (per_file[0].items() if per_file else ())
        }

    def file_scores(self, array: np.ndarray, window: int, models: dict[int, NGram]) -> dict[str, dict]:
        tokens = np.asarray(array[:, 0], np.int64)
        scores = self.tokens.score_all([array], window)
        for order, model in models.items():
            probabilities = model.distributions(tokens, window)[0]
            scores[f"n-gram, order {order}"] = TokenBaselines.score(
                probabilities, probabilities.argmax(axis=1), tokens[window:]
            )
        return scores

"""The interface every representation implements: files in, steps out, and back.

A representation is one way of seeing music. It says which files it reads, learns from
the training files whatever must come from them alone (``fit``), turns a file into an
array of steps plus what decoding needs (``encode``), writes generated steps back
(``decode``), declares the network's input and output fields, makes a generated step
valid inside the compiled loop (``valid_steps``, ``keras.ops``), scores predictions of
its steps beside its baselines, and saves itself as JSON.

Steps are always 2-D, ``(steps, columns)``: float32 for continuous values (the note
matrix), int32 for tokens (one column, the token index).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:  # Keras loads only when a model is built or run
    from models.config import InputSpec
    from models.head import Head


@dataclass(frozen=True)
class Encoded:
    """One file as steps: ``steps`` ``(steps, columns)``; ``meta`` what decoding needs
    (``tempo_us_per_beat``, ``ticks_per_beat`` for MIDI)."""

    steps: np.ndarray
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreColumn:
    """A column of the test table: ``key`` in the scores, ``header``, which way is better, format."""

    key: str
    header: str
    higher_is_better: bool
    form: str = "{:.3f}"


NLL_COLUMN = ScoreColumn("nll", "NLL/step", False)


class Representation(ABC):
    """A reversible mapping between a source file and ``(steps, columns)`` arrays."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = (".mid", ".midi")  # the file kinds it reads
    decodes_to: ClassVar[str] = ".mid"  # the file kind ``decode`` writes
    columns: ClassVar[tuple[str, ...]]  # a step's values, by name (the head's target columns)
    heads: ClassVar[tuple[str, ...]]  # the output heads it offers; the first is the default
    needs_fit: ClassVar[bool] = False  # True: ``fit`` learns something from the training files
    reads_rolls: ClassVar[bool] = False  # True: ``encode_roll`` reads a piano-roll benchmark's pieces
    key_tokens: ClassVar[int] = 0  # token ids below it are keys a semitone apart (``--transpose``)
    # Training settings that replace the card's when their flag is not given (``TrainConfig.flat`` names).
    recipe: ClassVar[dict] = {}

    def fit(self, paths: list[Path]) -> None:
        """Learn from the training files what must come from them alone (a vocabulary, a
        scaling); nothing by default. Never changes which files ``encode`` accepts."""

    @abstractmethod
    def encode(self, path: str | os.PathLike) -> Encoded:
        """Read ``path``; raise ``MidiError`` (naming the file and the reason) if it cannot be."""

    @abstractmethod
    def decode(self, steps: np.ndarray, meta: dict, path: str | os.PathLike) -> int:
        """Write valid ``steps`` ``(steps, columns)`` to ``path`` as a playable file; returns notes written."""

    @abstractmethod
    def inputs(self) -> InputSpec:
        """What the network reads per step."""

    @abstractmethod
    def head(self, name: str, mixtures: int) -> Head:
        """The output fields of head ``name`` (one of ``heads``)."""

    @abstractmethod
    def metrics(self, head_name: str, head: Head) -> list:
        """The metrics compiled with the model (``models.head_metrics``)."""

    def monitor(self, head_name: str) -> str:
        """The metric that picks the best model: the head's own loss after the whole window."""
        return "last_loss"

    @abstractmethod
    def valid_steps(self, steps):
        """Generated steps ``(N, columns)`` (``keras.ops``) made valid: what is written and fed back."""

    def next_step(self, head: Head, prediction, noise, previous, *, temperature: float, top_k: int | None,
                  spread):
        """The generated step after ``previous`` (``(N, columns)``, the step fed last), from the
        network's ``prediction`` ``(N, width)`` and ``noise`` (``Head.draw_noise``), in
        ``keras.ops``: the head's point (temperature 0) or sample, made valid. A
        representation whose valid steps depend on what came before overrides this."""
        del previous
        if temperature == 0:
            return self.valid_steps(head.point(prediction))
        return self.valid_steps(head.sample(prediction, noise, temperature=temperature, top_k=top_k, spread=spread))

    # -- evaluation ------------------------------------------------------------------
    score_columns: ClassVar[tuple[ScoreColumn, ...]] = (ScoreColumn("accuracy", "accuracy", True), NLL_COLUMN)
    score_legend: ClassVar[tuple[str, ...]] = (
        "* best in its column. NLL/step: negative log-likelihood in nats per step ('-': none).",
    )

    def point_scores(self, points: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Scores of point predictions ``(rows, columns)`` against targets: here, exact-step accuracy."""
        return {"accuracy": float(np.mean(np.all(np.rint(points) == targets, axis=-1)))}

    def distribution_scores(self, head: Head, outputs: np.ndarray, targets: np.ndarray, spread) -> dict[str, float]:
        """Scores of the distributions the network's ``outputs`` ``(rows, width)`` give for
        ``targets`` ``(rows, columns)`` (they replace ``point_scores``' of the same name):
        here ``nll``, the mean of ``Head.nll`` in nats per step."""
        return {"nll": float(np.mean(head.nll(outputs, np.asarray(targets)[:, : head.columns], spread)))}

    def baselines(self, training: list[np.ndarray], validation: list[np.ndarray] | None = None):
        """Predictors fitted on the training arrays (settings tuned on ``validation``), with
        ``score_all(arrays, window)``: for token steps, repeat, unigram and Markov chain over
        the input's vocabulary."""
        from note_matrix.evaluation.baselines import TokenBaselines

        return TokenBaselines.fit(training, self.inputs().vocabulary)

    # -- saving ------------------------------------------------------------------------
    @abstractmethod
    def to_json(self) -> dict:
        """Everything needed to rebuild this representation (``name`` first)."""

    @classmethod
    def from_json(cls, data: dict) -> Representation:
        """Rebuild from ``to_json``'s dict; ``ValueError`` if it is not one of this class."""
        options = {key: value for key, value in data.items() if key != "name"}
        return cls(**options)

"""The network's settings and its input, as validated dataclasses (no Keras: cheap to import)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

CELL_NAMES = ("lstm", "gru", "rnn")
TARGETS = ("last", "all")
INPUT_KINDS = ("continuous", "tokens", "multi_hot", "one_hot")
OPTIMIZERS = ("rmsprop", "adam")
DEFAULT_MIXTURES = 5


@dataclass(frozen=True)
class InputSpec:
    """What the network reads per step.

    ``continuous``: ``width`` float32 features; ``multi_hot``: ``width`` 0/1 float32
    values; ``tokens``: one int32 column of ids below ``vocabulary``, embedded in
    ``embedding`` dimensions; ``one_hot``: ``width`` int32 columns, column ``i`` one-hot
    over ``classes[i]`` classes, or passed on as its 0/1 value where ``classes[i]`` is 1.
    """

    kind: str = "continuous"
    width: int = 3
    vocabulary: int = 0
    embedding: int = 0
    classes: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        if self.width < 1:
            raise ValueError(f"input width must be positive, got {self.width}")
        if self.kind == "tokens" and (self.width != 1 or self.vocabulary < 2 or self.embedding < 1):
            raise ValueError("token input needs width 1, a vocabulary of at least 2 and a positive embedding")
        classes = tuple(self.classes) if isinstance(self.classes, (list, tuple)) else None
        if classes is None or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in classes):
            raise ValueError(f"input classes must be a list of positive integers, got {self.classes!r}")
        if (self.kind == "one_hot") != bool(classes) or (classes and len(classes) != self.width):
            raise ValueError("one_hot input needs one classes entry per column; other inputs none")
        object.__setattr__(self, "classes", classes)

    @property
    def dtype(self) -> str:
        return "int32" if self.kind in ("tokens", "one_hot") else "float32"

    @property
    def features(self) -> int:
        """The width of what the recurrent layer reads (the one-hot columns expanded)."""
        return sum(self.classes) if self.kind == "one_hot" else self.width

    def to_json(self) -> dict:
        return {**asdict(self), "classes": list(self.classes)}


@dataclass(frozen=True)
class ModelConfig:
    """The network's hyperparameters, with the card's defaults. ``head`` names one of the
    representation's heads (``mixtures``: its mixture components, where it has one)."""

    cell: str = "lstm"
    units: int = 512
    layers: int = 1
    dropout_rate: float = 0.75
    head: str = "regression"
    mixtures: int = DEFAULT_MIXTURES
    learning_rate: float = 1e-4
    targets: str = "last"  # "last": the step after the window (the card); "all": the next step at every step
    optimizer: str = "rmsprop"  # the card's
    clipnorm: float | None = None  # clip each gradient to this norm; None: never (the card)

    def __post_init__(self):
        if self.cell not in CELL_NAMES:
            raise ValueError(f"cell must be one of {sorted(CELL_NAMES)}, got {self.cell!r}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")
        if self.units < 1 or self.layers < 1 or self.mixtures < 1:
            raise ValueError("units, layers and mixtures must be positive")
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {self.dropout_rate}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise ValueError(f"clipnorm must be positive, got {self.clipnorm}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    def to_json(self) -> dict:
        return asdict(self)

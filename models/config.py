"""The network's settings and its input, as validated dataclasses (no Keras: cheap to import)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

CELL_NAMES = ("lstm", "gru", "rnn")
TARGETS = ("last", "all")
INPUT_KINDS = ("continuous", "tokens", "multi_hot")
DEFAULT_MIXTURES = 5


@dataclass(frozen=True)
class InputSpec:
    """What the network reads per step.

    ``continuous``: ``width`` float32 features; ``multi_hot``: ``width`` 0/1 float32
    values; ``tokens``: one int32 column of ids below ``vocabulary``, embedded in
    ``embedding`` dimensions.
    """

    kind: str = "continuous"
    width: int = 3
    vocabulary: int = 0
    embedding: int = 0

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        if self.width < 1:
            raise ValueError(f"input width must be positive, got {self.width}")
        if self.kind == "tokens" and (self.width != 1 or self.vocabulary < 2 or self.embedding < 1):
            raise ValueError("token input needs width 1, a vocabulary of at least 2 and a positive embedding")

    @property
    def dtype(self) -> str:
        return "int32" if self.kind == "tokens" else "float32"

    def to_json(self) -> dict:
        return asdict(self)


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

    def __post_init__(self):
        if self.cell not in CELL_NAMES:
            raise ValueError(f"cell must be one of {sorted(CELL_NAMES)}, got {self.cell!r}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")
        if self.units < 1 or self.layers < 1 or self.mixtures < 1:
            raise ValueError("units, layers and mixtures must be positive")
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {self.dropout_rate}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    def to_json(self) -> dict:
        return asdict(self)

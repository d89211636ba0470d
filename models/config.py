"""The network's settings and its input, as validated dataclasses (no Keras: cheap to import)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

CELL_NAMES = ("lstm", "gru", "rnn", "lstm-reference")
TARGETS = ("last", "all")
INPUT_KINDS = ("continuous", "tokens", "multi_hot", "one_hot")
OPTIMIZERS = ("rmsprop", "adam", "sgd", "adagrad")
LR_SCHEDULES = ("constant", "cyclic")
DEFAULT_CYCLE_STEPS = 2000  # Smith 2017's example step size (a half cycle), in optimizer steps
DEFAULT_MIXTURES = 5
DEFAULT_OUTPUT_UNITS = 150  # a frame output's units: RNN-NADE's hidden units (Boulanger-Lewandowski et al. 2012)


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
    representation's heads (``mixtures``: its mixture components, where it has one;
    ``output_units``: the units of a piano roll's frame output, the NADE's hidden layer of
    head ``nade`` or the LSTM across keys of head ``biaxial``)."""

    cell: str = "lstm"
    units: int = 512
    layers: int = 1
    dropout_rate: float = 0.75
    head: str = "regression"
    mixtures: int = DEFAULT_MIXTURES
    output_units: int = DEFAULT_OUTPUT_UNITS
    learning_rate: float = 1e-4
    targets: str = "last"  # "last": the step after the window (the card); "all": the next step at every step
    optimizer: str = "rmsprop"  # the card's
    clipnorm: float | None = None  # clip each gradient to this norm; None: never (the card)
    lr_schedule: str = "constant"  # "constant": learning_rate; "cyclic": Smith 2017's triangle, lr_min to lr_max
    lr_min: float | None = None  # cyclic only: the lowest rate (needed)
    lr_max: float | None = None  # cyclic only: the highest rate (needed)
    cycle_steps: int | None = None  # cyclic only: optimizer steps from lr_min to lr_max, half a cycle (Smith's
    # "step size"; None: DEFAULT_CYCLE_STEPS)

    def __post_init__(self):
        if self.cell not in CELL_NAMES:
            raise ValueError(f"cell must be one of {sorted(CELL_NAMES)}, got {self.cell!r}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")
        if self.units < 1 or self.layers < 1 or self.mixtures < 1 or self.output_units < 1:
            raise ValueError("units, layers, mixtures and output_units must be positive")
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {self.dropout_rate}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise ValueError(f"clipnorm must be positive, got {self.clipnorm}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        self._check_schedule()

    def _check_schedule(self) -> None:
        """The cyclic rate's settings belong to it alone, so a constant run cannot silently ignore them."""
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        cyclic = (self.lr_min, self.lr_max, self.cycle_steps)
        if self.lr_schedule == "constant":
            if any(value is not None for value in cyclic):
                raise ValueError("lr_min, lr_max and cycle_steps apply only to the cyclic lr_schedule")
            return
        if self.lr_min is None or self.lr_max is None:
            raise ValueError("the cyclic lr_schedule needs lr_min and lr_max")
        if not 0 < self.lr_min <= self.lr_max:
            raise ValueError(f"the cyclic rate needs 0 < lr_min <= lr_max, got {self.lr_min} and {self.lr_max}")
        if self.cycle_steps is not None and self.cycle_steps < 1:
            raise ValueError(f"cycle_steps must be at least 1, got {self.cycle_steps}")

    @property
    def half_cycle(self) -> int:
        """Optimizer steps from ``lr_min`` to ``lr_max`` (Smith's step size): ``cycle_steps`` or the default."""
        return DEFAULT_CYCLE_STEPS if self.cycle_steps is None else self.cycle_steps

    def to_json(self) -> dict:
        return asdict(self)

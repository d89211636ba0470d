"""What a ``.keras`` file may hold, checked before Keras deserialises any of it.

Keras' safe mode refuses a ``Lambda`` layer's bytecode, but not a ``Lambda`` that names a
Keras function, nor literal arrays, nor sizes that abort the process: a crafted archive
made only of Keras objects can write files while it loads (``keras.visualization.
plot_image_gallery`` called on a ``__numpy__`` image) or ask XLA for a billion units. So
the archive's ``config.json`` is read first (a bounded size, a bounded nesting depth) and
walked: every serialised object must be one that this project's builders make
(``allowed_objects``: the recurrent cells and optimizers of ``models.builder``, the
objects registered under ``note_matrix>``, the few Keras layers and initializers the
builder uses), every size within ``MAX_SIZE``, and the one input (two with a frame head:
``models.builder.FRAME_HEADS``) as wide as the run's ``config.json`` says. ``tests/test_safety.py`` builds every representation's and head's
model and checks that the allowlist is exactly what they hold.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from models import InputSpec
from note_matrix import runs
from note_matrix.errors import RunError

CONFIG_MEMBER = "config.json"  # the model's architecture and compile settings, in the archive
MAX_CONFIG_BYTES = 1024 * 1024  # the largest model this project builds (note events, every metric) has 10 KB
MAX_SIZE = 8192  # units, embedding width, vocabulary, classes, shape entries (the card's LSTM: 512)
MAX_LAYERS = 64  # a model of this project has its cells plus at most 7 layers

FUNCTIONAL = ("keras.src.models.functional", "Functional", "Functional")  # the model itself, at the top only
TENSOR_REFERENCE = (None, "__keras_tensor__", None)  # a layer's input: another layer's output, by name
# Keras' own objects that models.builder uses besides its cells and optimizers: (module, class, registered name).
KERAS_OBJECTS = frozenset(
    {
        *(
            ("keras.layers", name, None)
            for name in ("InputLayer", "Embedding", "Reshape", "Dropout", "Dense", "Activation")
        ),
        *(("keras.initializers", name, None) for name in ("GlorotUniform", "Orthogonal", "RandomUniform", "Zeros")),
        ("keras", "DTypePolicy", None),
    }
)
ACTIVATIONS = frozenset({"linear", "sigmoid", "tanh"})  # the builder's Dense and Activation, the cells' defaults
ACTIVATION_KEYS = ("activation", "recurrent_activation")
SIZE_KEYS = frozenset(
    {
        "units",
        "keys",  # models.nade, models.biaxial
        "hidden",
        "time_units",
        "key_units",
        "input_dim",
        "output_dim",
        "classes",
        "batch_shape",
        "shape",
        "input_shape",
        "target_shape",
        "noise_shape",
    }
)
# Runs from before the field heads were compiled with these registered functions; models loaded with
# compile=False never resolve them (note_matrix.training.checkpoints computes them on resume).
LEGACY_FUNCTIONS = ("pitch_accuracy", "last_mse", "last_loss", "categorical_loss", "mdn_loss")
LEGACY_FUNCTION = ("builtins", "function", "function")


# The modules whose registered objects the builders put in a model. ``models.nade`` registers
# its layer too, but no builder uses it yet: it joins this list when a flag selects it.
BUILT_FROM = (
    "models.biaxial",
    "models.builder",
    "models.head",
    "models.head_metrics",
    "models.nade",
    "models.reference_lstm",
)


@cache
def allowed_objects() -> frozenset[tuple[str | None, str, str | None]]:
    """Every ``(module, class_name, registered_name)`` a model of this project may hold below its top."""
    import keras

    from models import builder, head_metrics  # noqa: F401  (registers the layers, losses and metrics)

    registered = {
        (kind.__module__, kind.__name__, name)
        for name, kind in keras.saving.get_custom_objects().items()
        if name.startswith("note_matrix>") and isinstance(kind, type) and kind.__module__ in BUILT_FROM
    }
    return frozenset(
        {
            *KERAS_OBJECTS,
            TENSOR_REFERENCE,
            *registered,
            *(
                ("keras.layers", cell.__name__, None)
                for cell in builder.CELLS.values()
                if cell.__module__.startswith("keras.")  # not ReferenceLSTM, registered under note_matrix>
            ),
            *(("keras.optimizers", optimizer.__name__, None) for optimizer in builder.OPTIMIZERS.values()),
        }
    )


def check_model_file(path: Path, inputs: InputSpec) -> None:
    """``RunError`` (one line naming ``path`` and the reason) unless ``path`` is a complete
    ``.keras`` archive whose ``config.json`` holds only what this project builds, within the
    size limits, reading ``inputs`` (the run's ``config.json``) each step."""
    config = read_model_config(path)
    problem = find_problem(config, inputs)
    if problem is not None:
        raise RunError(f"{path}: not a model this project builds ({problem}); not loaded")


def read_model_config(path: Path):
    """The parsed ``config.json`` of the archive ``path``; ``RunError`` "damaged model file" if it cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(CONFIG_MEMBER) as member:
            text = member.read(MAX_CONFIG_BYTES + 1)
        if len(text) > MAX_CONFIG_BYTES:
            raise ValueError(f"{CONFIG_MEMBER} over the {MAX_CONFIG_BYTES:,}-byte limit")
        return runs.parse_json(text.decode("utf-8"))
    except KeyError:
        reason = f"no {CONFIG_MEMBER} in the archive"
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as error:  # RuntimeError: encrypted
        reason = f"not a complete .keras archive: {error}"
    except ValueError as error:
        reason = f"{CONFIG_MEMBER}: {error}"
    raise RunError(f"{path}: damaged model file ({reason})")


def find_problem(config, inputs: InputSpec) -> str | None:
    """What makes ``config`` (a ``.keras`` archive's parsed ``config.json``) other than a model
    this project builds reading ``inputs``, as "where: what"; None when nothing does."""
    if not isinstance(config, dict) or _identity(config) != FUNCTIONAL:
        return f"the top level is {_describe(config)}, not a Functional model"
    body = config.get("config")
    layers = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
        return f"config.layers must be a list of at most {MAX_LAYERS} layers"
    allowed = allowed_objects()
    for key, item in config.items():
        for where, name, value in _walk(item, key, key):
            problem = _value_problem(name, value, allowed)
            if problem is not None:
                return f"{where}: {problem}"
    return _input_problem(layers, inputs)


def _walk(value, where: str, name) -> Iterator[tuple[str, object, object]]:
    """``(where, key, value)`` for ``value`` (under ``key`` in its object) and everything inside it,
    outermost first; the items of a list keep the list's key. The parser bounds the depth."""
    yield where, name, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}", key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{where}[{index}]", name)


def _value_problem(key, value, allowed: frozenset) -> str | None:
    """Why ``value``, found under ``key``, has no place in a model of this project; None if it has."""
    if isinstance(value, dict) and "class_name" in value:
        if _identity(value) == LEGACY_FUNCTION and _is_legacy_function(value.get("config")):
            return None
        if _identity(value) not in allowed:
            return f"{_describe(value)} is not among the objects this project's models hold"
    elif key in SIZE_KEYS and not isinstance(value, (list, type(None))) and not _is_size(value):
        return f"{value!r:.40} is not a size from 1 to {MAX_SIZE:,}"
    elif key in ACTIVATION_KEYS and not (isinstance(value, str) and value in ACTIVATIONS):
        return f"activation {value!r:.40} is not one of {', '.join(sorted(ACTIVATIONS))}"
    return None


def _identity(value: dict) -> tuple:
    """``(module, class_name, registered_name)``, a part that is neither text nor null as its type."""
    return tuple(
        part if part is None or isinstance(part, str) else type(part).__name__
        for part in (value.get("module"), value.get("class_name"), value.get("registered_name"))
    )


def _is_legacy_function(name) -> bool:
    return isinstance(name, str) and name.removeprefix("note_matrix>") in LEGACY_FUNCTIONS


def _is_size(value) -> bool:
    """A layer size or shape entry: a whole number up to ``MAX_SIZE`` (-1: Reshape's "the rest")."""
    return type(value) is int and (1 <= value <= MAX_SIZE or value == -1)


def _describe(value) -> str:
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}"
    module, name, _ = _identity(value)
    if name == "function":
        return f"the function {module}.{value.get('config')!s:.60}"
    return f"{module:.60}.{name!s:.60}" if module else f"{name!r:.60}"


def _input_problem(layers: list, inputs: InputSpec) -> str | None:
    """One input, as wide and of the type the run's ``config.json`` says (``model.inputs``), or
    two where the second is ``next``, the frames a teacher-forced frame head reads (nade,
    biaxial), of that shape too."""
    found = {
        layer["config"].get("name"): layer["config"]
        for layer in layers
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer" and isinstance(layer.get("config"), dict)
    }
    count = sum(isinstance(layer, dict) and layer.get("class_name") == "InputLayer" for layer in layers)
    if count != len(found) or not (count == 1 or (count == 2 and "next" in found)):
        return f"{count} input layers, where this project's models have one (two with a frame head: 'next')"
    for config in found.values():
        shape, dtype = config.get("batch_shape"), config.get("dtype")
        if shape != [None, None, inputs.width] or dtype != inputs.dtype:
            return (
                f"its input is {shape!r:.40} of {dtype!r:.20}, where the run's {runs.CONFIG_FILE} reads "
                f"[None, None, {inputs.width}] of {inputs.dtype!r}"
            )
    return None

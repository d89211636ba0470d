"""The two generation methods: the card's window method and the carried state (the default).

``generate_window`` predicts each new row from the whole window with
``model.predict_on_batch``; ``carried_state_generator`` builds a
``CarriedStateGenerator``, one compiled recurrent step per row. ``generate_rows`` runs
either; both write ``sampling.row_function``'s rows from the same random numbers.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from tqdm import tqdm

from models import reads_targets
from note_matrix.errors import RunError
from note_matrix.generation.biaxial import BiaxialGenerator, biaxial_layer
from note_matrix.generation.carried_state import CarriedStateGenerator
from note_matrix.generation.sampling import Sampling, check_model, row_function, sampling_noise

METHODS = ("carried", "window")


def _as_batch(primers: np.ndarray) -> tuple[np.ndarray, bool]:
    primers = np.asarray(primers)
    if primers.dtype.kind != "i":
        primers = primers.astype(np.float32)
    if primers.ndim == 2:
        return primers[None], True
    if primers.ndim != 3:
        raise ValueError(f"primers must have shape (k, F) or (N, k, F), got {primers.shape}")
    return primers, False


def generate_window(
    model: keras.Model,
    primers: np.ndarray,
    length: int,
    representation,
    head,
    *,
    window_length: int | None = None,
    progress: bool = True,
    sampling: Sampling | None = None,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """The card's method: ``model.predict_on_batch`` on the last ``window_length`` rows, per new row.

    ``primers`` ``(N, k, F)`` (or ``(k, F)``); ``window_length`` defaults to k. A
    primer shorter than the window grows until it fills it. The model's output may be
    ``(N, width)`` (the next row) or ``(N, steps, width)`` (a row per step; the last is
    used). Each row is ``row_function(representation, head, sampling)`` of the prediction,
    the very function the carried loop compiles; ``noise`` ``(N, length, noise_width)``
    (default: drawn from ``sampling.random_seed``). Returns ``(N, length, F)`` float32
    (``(length, F)`` for a 2-D primer), every row valid.
    """
    batch, single = _as_batch(primers)
    check_model(model, head)
    if reads_targets(model):
        raise RunError(f"{model.name}: this head draws its frames key by key in the carried-state loop; "
                       "use --method carried")
    rows_of = row_function(representation, head, sampling)
    if noise is None:
        noise = sampling_noise(head, sampling, batch.shape[0], length)
    if noise is None:
        noise = np.zeros((batch.shape[0], length, head.noise_width), np.float32)
    window_length = window_length or batch.shape[1]
    context = batch[:, -window_length:]
    rows = np.zeros((batch.shape[0], length, batch.shape[2]), dtype=batch.dtype)
    for i in tqdm(range(length), desc="generating", unit="row", disable=not progress):
        prediction = keras.ops.convert_to_numpy(model.predict_on_batch(context))
        if prediction.ndim == 3:
            prediction = prediction[:, -1]
        previous = ops.convert_to_tensor(context[:, -1])
        rows[:, i] = ops.convert_to_numpy(rows_of(ops.convert_to_tensor(prediction), ops.convert_to_tensor(noise[:, i]),
                                                  previous))
        context = np.concatenate([context, rows[:, i : i + 1]], axis=1)[:, -window_length:]
    return rows[0] if single else rows


def carried_state_generator(model: keras.Model, representation, head,
                            sampling: Sampling | None = None) -> CarriedStateGenerator:
    """A compiled carried-state generator for ``model`` writing ``row_function``'s valid steps.

    ``head``: the run's saved head; ``sampling``: None for the point steps. Its
    ``generate`` takes ``noise`` ``(N, length, noise_width)`` (``sampling_noise``).
    """
    check_model(model, head)
    rows_of = row_function(representation, head, sampling)  # also checks the sampling against the head
    if not reads_targets(model):
        return CarriedStateGenerator(model, rows_of, noise_width=head.noise_width)
    # nade, biaxial: the generator draws each frame key by key; it is written as drawn, made valid.
    kind = BiaxialGenerator if biaxial_layer(model) is not None else CarriedStateGenerator
    return kind(model, lambda frame, noise_t, previous: representation.valid_steps(frame),
                noise_width=head.noise_width, temperature=sampling.temperature if sampling else 0.0)


def generate_rows(
    model: keras.Model,
    primers: np.ndarray,
    length: int,
    representation,
    head,
    *,
    method: str = "carried",
    window_length: int | None = None,
    progress: bool = True,
    sampling: Sampling | None = None,
) -> np.ndarray:
    """``length`` new valid rows after each primer, by ``method`` (``"carried"`` or ``"window"``).

    ``primers`` ``(N, k, 3)`` float32 in [0, 1] (N pieces in one batch) or ``(k, 3)``.
    Returns ``(N, length, 3)`` float32, or ``(length, 3)`` for a 2-D primer.
    ``window_length`` only concerns the window method (default: k). ``head``: the
    run's saved head; ``sampling``: None (or
    temperature 0) for the point rows, the card's behaviour, else rows drawn with
    ``sampling``'s temperature, top-k and seed; both methods draw the same random
    numbers. To generate more than once with the same model, build
    ``carried_state_generator`` once and call its ``generate``: it compiles once per set
    of shapes.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    batch, single = _as_batch(primers)
    noise = sampling_noise(head, sampling, batch.shape[0], length)
    if method == "window":
        rows = generate_window(model, batch, length, representation, head, window_length=window_length,
                               progress=progress, sampling=sampling, noise=noise)
    else:
        generator = carried_state_generator(model, representation, head, sampling)
        rows = generator.generate(batch, length, noise=noise, progress=progress)
    return rows[0] if single else rows

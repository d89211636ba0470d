"""What each generated step is: the head's point prediction or a sample from it, made valid.

Both generation methods turn the model's output into a step with the same
``row_function``: the head's point step (``Head.point``), or, with a ``Sampling``
(temperature, top-k, seed), a step drawn from the head's fields (``Head.sample``) with
random numbers drawn beforehand from ``numpy.random.default_rng(seed)``
(``sampling_noise``), so both methods draw the same steps and a seed repeats a piece
exactly. Every step is then made valid by the representation (``valid_steps``, inside
the compiled loop), so the step fed back is the step written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from note_matrix import runs
from note_matrix.errors import RunError


@dataclass(frozen=True)
class Sampling:
    """How steps are drawn from the head's fields.

    ``temperature``: softmax temperature of the categorical fields and the factor on the
    standard deviations of the continuous ones; 0 means the point step (argmax), exactly
    as no sampling. ``top_k``: draw a categorical among its k most likely classes only.
    ``random_seed``: seeds ``numpy.random.default_rng``, from which every random number is
    drawn before the loop. ``residual_std``: standard deviations by column name around a
    regressed prediction (``calibration.json``), for heads with Gaussian fields.
    """

    temperature: float = 1.0
    top_k: int | None = None
    random_seed: int = 0
    residual_std: Mapping[str, float] | None = None

    def __post_init__(self):
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be finite and at least 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.random_seed < 0:
            raise ValueError(f"random_seed must be 0 or more, got {self.random_seed}")

    @property
    def samples(self) -> bool:
        """Whether steps are random (temperature above 0)."""
        return self.temperature > 0


def check_model(model, head) -> None:
    """``RunError`` unless ``model``'s output is as wide as ``head`` (the run's saved head)."""
    width = int(model.outputs[0].shape[-1])
    if width != head.width:
        raise RunError(f"{model.name}: its output of width {width} is not the run's head's ({head.width})")


def row_function(representation, head, sampling: Sampling | None = None):
    """The step function of both generation methods (``keras.ops``, in-graph in the carried loop).

    ``(prediction (N, width), noise_t (N, noise_width), previous (N, columns)) -> step
    (N, columns)``: ``representation.next_step``, the head's point step (``sampling`` None
    or at temperature 0) or a sample, made valid, so that what is written is what is fed back.
    """
    temperature = 0.0 if sampling is None else sampling.temperature
    top_k = spread = None
    if temperature > 0:
        if head.needs_spread and sampling.residual_std is None:
            raise RunError(f"sampling from this head needs the residual standard deviations of the run "
                           f"({runs.CALIBRATION_FILE})")
        if sampling.top_k is not None and (head.top_k_limit is None or sampling.top_k > head.top_k_limit):
            raise RunError(f"top_k must be between 1 and {head.top_k_limit or 0} for this head, "
                           f"got {sampling.top_k}")
        top_k, spread = sampling.top_k, sampling.residual_std

    def step(prediction, noise_t, previous):
        return representation.next_step(head, prediction, noise_t, previous, temperature=temperature, top_k=top_k,
                                        spread=spread)

    return step


def sampling_noise(head, sampling: Sampling | None, pieces: int, length: int) -> np.ndarray | None:
    """``(pieces, length, noise_width)`` random numbers from ``sampling.random_seed``, or None
    without sampling. Both methods take the same numbers, so they sample the same steps."""
    if sampling is None or not sampling.samples:
        return None
    return head.draw_noise(np.random.default_rng(sampling.random_seed), (pieces, length))

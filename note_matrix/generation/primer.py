"""Reading a seed file to prime generation (no Keras here, so bad seeds fail fast)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from note_matrix.errors import SeedError


@dataclass(frozen=True)
class Primer:
    """A seed as steps: ``steps`` ``(seed steps, columns)``, at least a window of them, and
    ``meta``, what decoding needs (its tempo)."""

    steps: np.ndarray
    meta: dict

    @property
    def tempo_us_per_beat(self) -> int:
        return int(self.meta.get("tempo_us_per_beat", 500_000))


def read_primer(path: str | os.PathLike, representation, window_length: int, encoded=None) -> Primer:
    """The seed encoded by ``representation`` (or already ``encoded``: a benchmark piece),
    checked to hold a window of steps.

    ``MidiError`` for a file that is not readable, ``SeedError`` for one with no notes
    or fewer steps than the window.
    """
    encoded = representation.encode(path) if encoded is None else encoded
    if len(encoded.steps) == 0:
        raise SeedError(f"{path}: no notes to prime the model with (empty, or drums only)")
    if len(encoded.steps) < window_length:
        raise SeedError(
            f"{path}: only {len(encoded.steps)} steps; the model needs at least {window_length} "
            f"(its window length) to prime generation"
        )
    return Primer(encoded.steps, encoded.meta)

"""Generating steps with a trained model.

Two methods, one output format (``(N, length, columns)``, every step valid):

- ``"carried"`` (the default, ``carried_state``): the primer builds the recurrent state,
  which is then carried forward one compiled step per new row, so the whole piece is
  context.
- ``"window"``, the card's (``methods.generate_window``): each new row is predicted
  from the last ``window_length`` rows with ``model.predict_on_batch``.

Both write the same rows while the piece fits in the window: ``sampling`` turns a
prediction into a valid row (the head's point row or a seeded sample), ``output``
writes the rows as files, ``primer`` reads the seed, ``tunes`` generates and writes
ABC tunes (``abc_chars`` runs), ``copy_guard`` generates note events that copy at most N
notes of a training file, ``compile`` holds the one backend-specific piece.
Everything else is ``keras.ops`` only, for TensorFlow and JAX.

The public names below are importable from here; each loads its module on first use, so
that reading a seed (``primer``) does not load Keras.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "note_matrix.generation.carried_state": ("CarriedStateGenerator",),
    "note_matrix.generation.copy_guard": ("CopyGuard", "generate_uncopied"),
    "note_matrix.generation.methods": ("METHODS", "carried_state_generator", "generate_rows", "generate_window"),
    "note_matrix.generation.output": ("output_paths", "spread_primers", "write_audio", "write_piano_roll"),
    "note_matrix.generation.primer": ("Primer", "read_primer"),
    "note_matrix.generation.sampling": ("Sampling", "check_model", "row_function", "sampling_noise"),
    "note_matrix.generation.tunes": (
        "draw_tunes", "generate_tunes", "generate_well_formed", "tune_generator", "tune_primer", "unescape", "write_tune",
    ),
    "note_matrix.runs": ("load_model",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""The project's exceptions.

Two layers of error handling (STYLE.md 5): readers raise one of these with a message
that names the file and the reason; the dataset loop catches exactly ``MidiError``,
records the file in the run's skip report and goes on; the command-line scripts catch
``NoteMatrixError``, print its one-line message and exit with status 2.
"""

from __future__ import annotations

from pathlib import Path


class NoteMatrixError(Exception):
    """Base class: a problem the user can fix, reported as one line without a traceback."""


class MidiError(NoteMatrixError):
    """A file that cannot be read as MIDI, or whose content cannot be represented.

    ``str(error)`` is ``"<path>: <reason>"``; ``error.path`` and ``error.reason`` hold
    the two parts, so a skip report can list them separately.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SeedError(NoteMatrixError):
    """A seed file that is valid MIDI but cannot prime the model (too short, no notes)."""


class DatasetError(NoteMatrixError):
    """A dataset that cannot be found, downloaded or used for training."""


class RunError(NoteMatrixError):
    """A run folder (``logs/<run>``) that is missing, incomplete or cannot be written."""


class DistributionError(NoteMatrixError):
    """A ``--distribute`` setting that cannot run here (a TensorFlow strategy under JAX, no usable ``TF_CONFIG``
    or ``JAX_*`` cluster variables, a batch the devices cannot share)."""

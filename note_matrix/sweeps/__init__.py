"""Sweeps: train.py over a grid of settings, one run folder per point, scheduled by Optuna.

``grid`` parses and checks the grid against train.py's parser; ``folder`` is the sweep
folder, its files and each point's train.py command; ``study`` the Optuna study (a
``GridSampler`` in a journal file that the worker processes share); ``worker`` a worker
process (``study.optimize``, one trial per point); ``attempt`` one train.py run and what its
``history.json`` says; ``runner`` the parent (lock, workers, progress, Ctrl-C);
``results``, ``curves``, ``hparams`` and ``outputs`` what the sweep folder shows;
``console`` what sweep.py prints.
"""

from note_matrix.sweeps.folder import Sweep, default_name
from note_matrix.sweeps.grid import Grid, SweepError, check_fixed_flags, parse_grid

__all__ = ["Grid", "Sweep", "SweepError", "check_fixed_flags", "default_name", "parse_grid"]

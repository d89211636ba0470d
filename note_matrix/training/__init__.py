"""Training: windows and batches, the fit with TensorBoard and sampled pieces, checkpoints
and resume, several devices. ``train(config)`` starts a run, ``resume(run_dir, config)``
continues one (``fit.py``)."""

from note_matrix.config import DEFAULT_TARGETS, TrainConfig
from note_matrix.training.fit import (
    RESUMABLE_CHANGES,
    TrainResult,
    calibrate,
    refuse_changed_data,
    resume,
    resume_config,
    run_config,
    train,
    window_batches,
)

__all__ = ["DEFAULT_TARGETS", "RESUMABLE_CHANGES", "TrainConfig", "TrainResult", "calibrate", "refuse_changed_data",
           "resume", "resume_config", "run_config", "train", "window_batches"]

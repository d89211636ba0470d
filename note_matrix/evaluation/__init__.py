"""How good is a run? The two questions ``evaluate.py`` answers, one entry each in ``evaluation.json``.

``"test"`` (``scores.evaluate_test``): the run's model scored on its test split beside
baselines fitted on its training files (``baselines``).

``"frame_nll"`` (``benchmark.evaluate_frames``): a piano-roll run's frame-level NLL, as
the polyphonic benchmarks publish it, beside frame baselines and the published figures.

``"generated"`` (``generated.compare_generated``): the music statistics (``music_stats``)
of a folder of generated MIDI files beside those of the run's training files.

An ``abc_chars`` run's entry (``tunes.evaluate_tunes``): its NLL per character on the
split and the playable rate, statistics and copy check of tunes generated at several temperatures.

``note_matrix.run_data`` opens a run and encodes its files; ``report`` prints and saves the results.
"""

from note_matrix.evaluation.benchmark import evaluate_frames, format_frames
from note_matrix.evaluation.generated import compare_generated, outside_training_range, read_notes
from note_matrix.evaluation.report import (
    PITCH_CLASSES,
    STATISTIC_LABELS,
    format_generated,
    format_test,
    save,
    verdict,
)
from note_matrix.evaluation.scores import (
    PREDICT_BATCH_SIZE,
    SCORE_NAMES,
    best_per_column,
    calibration,
    check_score_from,
    evaluate_test,
    model_label,
    not_beaten,
    predict_outputs,
    require_test_files,
)
from note_matrix.evaluation.tunes import copy_check, evaluate_tunes, format_tunes

__all__ = [
    "PITCH_CLASSES", "PREDICT_BATCH_SIZE", "SCORE_NAMES", "STATISTIC_LABELS", "best_per_column", "calibration",
    "check_score_from", "compare_generated", "copy_check", "evaluate_frames", "evaluate_test", "evaluate_tunes", "format_frames",
    "format_generated", "format_test", "format_tunes",
    "model_label", "not_beaten",
    "outside_training_range", "predict_outputs", "read_notes", "require_test_files", "save", "verdict",
]

"""Everything a sweep folder shows, rewritten from the study and the run folders: results.md,
results.csv, loss_curves.png and the HParams experiment."""

from __future__ import annotations

import optuna

from note_matrix.sweeps import hparams
from note_matrix.sweeps.curves import write_loss_curves
from note_matrix.sweeps.folder import Sweep
from note_matrix.sweeps.results import PointResult, collect, monitors, write_results


def publish(sweep: Sweep, study: optuna.Study) -> list[PointResult]:
    """Write the sweep's outputs; returns its rows."""
    results = collect(sweep, study)
    write_results(sweep, results)
    write_loss_curves(sweep)
    hparams.write_experiment(sweep.folder, sweep.grid, monitors(results))
    return results

"""The sweep's Optuna study: a grid sampler over the points, in a journal file the worker processes share.

Optuna's ``GridSampler`` hands each new trial a point of the grid no trial has had yet. A
point whose trial failed or was interrupted counts as visited for it, so a re-run of the
sweep enqueues such points again (``prepare``), with their parameters fixed; ``GridSampler``
lets those through as they are. The workers decide when the sweep is done (``has_work``),
one trial per ``study.optimize`` call, so the sampler's own stop, which would come before
the retries, is switched off (``SweepSampler``).
"""

from __future__ import annotations

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from note_matrix.sweeps.attempt import CONTINUED, INTERRUPTED
from note_matrix.sweeps.folder import Sweep
from note_matrix.sweeps.grid import Grid

STALE = f"killed while it trained; {CONTINUED}"


class SweepSampler(optuna.samplers.GridSampler):
    """``GridSampler`` that never stops the study itself (the workers do: ``has_work``)."""

    def after_trial(self, study, trial, state, values) -> None:
        """Nothing: the grid is done when every point has completed, retries included, not when each was tried."""


def journal_storage(sweep: Sweep) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(sweep.journal)))


def open_study(sweep: Sweep, storage: JournalStorage | None = None) -> optuna.Study:
    """The sweep's study (created on first use) in ``optuna.journal``, minimising the best validation value.
    Optuna's own log goes quiet below warnings: the sweep reports each point itself."""
    optuna.logging.set_verbosity(max(optuna.logging.get_verbosity(), optuna.logging.WARNING))
    return optuna.create_study(
        study_name=sweep.name,
        storage=storage or journal_storage(sweep),
        direction="minimize",
        load_if_exists=True,
        sampler=SweepSampler(sweep.grid.search_space(), seed=0),
    )


def trial_params(trial: FrozenTrial) -> dict:
    """The point a trial trains: its parameters, or the fixed ones of an enqueued trial not yet started."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def trials_by_point(study: optuna.Study, grid: Grid) -> dict[str, list[FrozenTrial]]:
    """Each point's trials (by point name), in the order they were created."""
    names = {key.name for key in grid.keys}
    found: dict[str, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        params = trial_params(trial)
        if set(params) == names:
            found.setdefault(grid.point(params).name, []).append(trial)
    return found


def unclaimed_grid_points(study: optuna.Study, grid: Grid) -> int:
    """How many grid points the sampler has not given to any trial yet."""
    claimed = {
        trial.system_attrs["grid_id"] for trial in study.get_trials(deepcopy=False) if "grid_id" in trial.system_attrs
    }
    return len(grid.points()) - len(claimed)


def has_work(study: optuna.Study, grid: Grid) -> bool:
    """A trial is waiting, or a grid point has had none: one more ``study.optimize`` trains something."""
    return unclaimed_grid_points(study, grid) > 0 or any(
        trial.state == TrialState.WAITING for trial in study.get_trials(deepcopy=False)
    )


def prepare(sweep: Sweep) -> optuna.Study:
    """The study, made ready for the workers; call it with the sweep's lock held, so that no trial is really
    running: trials left running by a killed sweep are failed, and unfinished points enqueued again."""
    storage = journal_storage(sweep)
    study = open_study(sweep, storage)
    fail_stale_trials(study, storage)
    enqueue_unfinished(study, sweep.grid)
    return study


def fail_stale_trials(study: optuna.Study, storage: JournalStorage) -> None:
    """Fail, as interrupted, every trial still marked running (its worker was killed)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "status", INTERRUPTED)
        storage.set_trial_user_attr(trial_id, "failure", STALE)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)


def enqueue_unfinished(study: optuna.Study, grid: Grid) -> None:
    """Enqueue every point tried without completing (a run stopped midway resumes from its last epoch:
    ``Sweep.command``), and the points of trials lost before they chose one (killed at their very start),
    which the sampler counts as tried."""
    by_point = trials_by_point(study, grid)
    again = [
        point
        for point in grid.points()
        if point.name in by_point
        and not any(trial.state in (TrialState.COMPLETE, TrialState.WAITING) for trial in by_point[point.name])
    ]
    untried = [point for point in grid.points() if point.name not in by_point]
    if len(untried) > unclaimed_grid_points(study, grid):
        again += untried
    for point in again:
        study.enqueue_trial(point.params(), user_attrs={"retry": True})

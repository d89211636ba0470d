"""TensorBoard's HParams dashboard for a sweep, written without TensorFlow.

The HParams plugin reads three summaries: the experiment (every swept key with its values,
and the metrics) in the sweep folder's own run, and in each point's run folder a session
start (the point's values) and a session end (its status), beside scalars it shows as
metrics. ``tensorboard.plugins.hparams.summary`` builds exactly these protos (its v1 API),
but imports TensorFlow to do so; here they are built from the plugin's own proto modules,
byte for byte the same (a test compares them where TensorFlow is installed), and written
with tensorboard's ``RecordWriter``.

Metrics: ``best_validation`` (the value the run kept its best model by, at that epoch),
``best_epoch``, ``epochs`` and ``seconds`` in the point's folder, and the last epoch's
``epoch_loss`` of its ``train`` and ``validation`` runs, which train.py writes.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from google.protobuf import struct_pb2
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from note_matrix import atomic
from note_matrix.sweeps.attempt import DONE, INTERRUPTED, Outcome
from note_matrix.sweeps.grid import Grid, Point

EVENTS_SUFFIX = ".sweep"  # the sweep's own event files, replaced whenever rewritten
FILE_VERSION = "brain.Event:2"  # the first event of every event file
# (group: the run below the session's folder, tag, what the dashboard calls it)
METRICS = (
    ("", "best_validation", "best validation value"),
    ("", "best_epoch", "best epoch"),
    ("", "epochs", "epochs run"),
    ("", "seconds", "train.py seconds"),
    ("validation", "epoch_loss", "validation loss, last epoch"),
    ("train", "epoch_loss", "training loss, last epoch"),
)
_TYPES = {
    "bool": api_pb2.DATA_TYPE_BOOL,
    "int": api_pb2.DATA_TYPE_FLOAT64,
    "float": api_pb2.DATA_TYPE_FLOAT64,
    "str": api_pb2.DATA_TYPE_STRING,
}
_STATUS = {DONE: api_pb2.STATUS_SUCCESS, INTERRUPTED: api_pb2.STATUS_UNKNOWN}  # unfinished, continued later


def experiment_summary(grid: Grid, monitors: list[str], time_created_secs: float) -> Summary:
    """The experiment: each key, typed, with its values; the metrics, the best value's naming ``monitors``."""
    hparams = [
        api_pb2.HParamInfo(
            name=key.name,
            type=_TYPES[key.kind],
            domain_discrete=struct_pb2.ListValue(values=[_value(key.typed(v)) for v in key.values]),
        )
        for key in grid.keys
    ]
    metrics = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(group=group, tag=tag), display_name=name)
        for group, tag, name in METRICS
    ]
    metrics[0].description = f"the run's {' / '.join(monitors) or 'monitored value'} at its best epoch"
    experiment = api_pb2.Experiment(time_created_secs=time_created_secs, hparam_infos=hparams, metric_infos=metrics)
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def session_start_summary(grid: Grid, point: Point, start_time_secs: float) -> Summary:
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=start_time_secs)
    keys = {key.name: key for key in grid.keys}
    for name, value in point.values:
        info.hparams[name].CopyFrom(_value(keys[name].typed(value)))
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end_summary(status: int, end_time_secs: float) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=end_time_secs)
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def write_experiment(folder: Path, grid: Grid, monitors: list[str]) -> None:
    """The experiment summary in ``folder`` (the sweep's), replacing the one written before."""
    _write_events(folder, [(experiment_summary(grid, monitors, time.time()), 0)])


def write_session(run_dir: Path, grid: Grid, point: Point, outcome: Outcome) -> None:
    """The point's session (start, metrics, end) in its run folder, replacing an earlier attempt's."""
    summaries = [(session_start_summary(grid, point, outcome.started), 0)]
    if outcome.best_value is not None:
        for tag, value in (
            ("best_validation", outcome.best_value),
            ("best_epoch", outcome.best_epoch),
            ("epochs", outcome.epochs),
        ):
            summaries.append((_scalar(tag, value), outcome.best_epoch))
    last = outcome.epochs or 0
    status = _STATUS.get(outcome.status, api_pb2.STATUS_FAILURE)
    summaries += [
        (_scalar("seconds", outcome.seconds), last),
        (session_end_summary(status, outcome.started + outcome.seconds), last),
    ]
    _write_events(run_dir, summaries)


def _write_events(folder: Path, summaries: list[tuple[Summary, int]]) -> None:
    """One event file of the sweep's in ``folder`` holding ``(summary, step)``s, written whole, the older
    ones removed (train.py's own event files are in subfolders). Written with tensorboard's
    ``RecordWriter`` on a plain file: its ``EventFileWriter`` would load TensorFlow, where installed,
    for the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = list(folder.glob(f"events.out.tfevents.*{EVENTS_SUFFIX}"))
    now = time.time()
    events = [Event(wall_time=now, file_version=FILE_VERSION)]
    events += [Event(wall_time=now, step=step, summary=summary) for summary, step in summaries]
    name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}{EVENTS_SUFFIX}"
    atomic.write_atomically(folder / name, lambda temporary: _write_records(temporary, events), sync=False)
    for path in old:
        if path.name != name:
            path.unlink(missing_ok=True)


def _write_records(path: Path, events: list[Event]) -> None:
    with open(path, "wb") as handle:
        writer = RecordWriter(handle)
        for event in events:
            writer.write(event.SerializeToString())


def _scalar(tag: str, value: float) -> Summary:
    return Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])


def _summary(tag: str, plugin_data: plugin_data_pb2.HParamsPluginData) -> Summary:
    """What the v1 API's ``_summary`` makes: the plugin data as the value's metadata, with a null tensor."""
    value = Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(plugin_data), tensor=metadata.NULL_TENSOR)
    return Summary(value=[value])


def _value(value: bool | float | str) -> struct_pb2.Value:
    if isinstance(value, bool):  # before numbers: a bool is an int
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=value)
    return struct_pb2.Value(string_value=value)

"""Training on several devices or hosts through ``tf.distribute`` (TensorFlow backend only).

``--distribute mirrored`` trains on every local GPU (every logical CPU device when there
is none) with ``tf.distribute.MirroredStrategy``; ``--distribute multiworker`` on the
hosts named in ``TF_CONFIG`` with ``MultiWorkerMirroredStrategy``. The data then comes
from ``note_matrix.training.tf_data`` (``tf.data``: the same batches in the same order as on one
device, sharded per worker). The batch size is the global batch, split among the
replicas, so a setting trains the same updates whatever the devices.
"""

from __future__ import annotations

import contextlib
import json
import os

import keras

from note_matrix.config import DISTRIBUTE
from note_matrix.errors import DistributionError
from note_matrix.training.windows import WindowBatches

STRATEGY_NAMES = {"mirrored": "MirroredStrategy", "multiworker": "MultiWorkerMirroredStrategy"}


_DISTRIBUTIONS: dict[tuple, Distribution] = {}  # see Distribution.create


class Distribution:
    """Where training runs: one device (``strategy`` None) or a ``tf.distribute`` strategy.

    Build it with ``create`` before TensorFlow runs anything: a multi-worker strategy
    must be set up at program start. ``is_chief``: whether this process writes the run
    folder (always, except on the non-chief workers of a multi-worker cluster).
    """

    def __init__(self, kind: str = "none", strategy=None, *, is_chief: bool = True, task: str = "local"):
        self.kind, self.strategy, self.is_chief, self.task = kind, strategy, is_chief, task

    @property
    def replicas(self) -> int:
        return 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)

    @classmethod
    def create(cls, kind: str) -> Distribution:
        """The distribution of ``--distribute kind``; the same object for the same kind and
        ``TF_CONFIG`` within a process (TensorFlow sets up a multi-worker cluster only once)."""
        cluster = check_distribution(kind)
        if kind == "none":
            return cls()
        key = (kind, os.environ.get("TF_CONFIG") if kind == "multiworker" else None)
        if key not in _DISTRIBUTIONS:
            import tensorflow as tf  # check_distribution made sure this is the TensorFlow backend

            if kind == "mirrored":
                devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
                _DISTRIBUTIONS[key] = cls(kind, tf.distribute.MirroredStrategy([device.name for device in devices]))
            else:
                task = cluster["task"]
                _DISTRIBUTIONS[key] = cls(kind, tf.distribute.MultiWorkerMirroredStrategy(),
                                          is_chief=cluster["is_chief"], task=f"{task['type']}-{task['index']}")
        return _DISTRIBUTIONS[key]

    def scope(self):
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    @property
    def name(self) -> str | None:
        """The strategy's public name (``MultiWorkerMirroredStrategy``'s class is ``CollectiveAllReduceStrategy``)."""
        return None if self.strategy is None else STRATEGY_NAMES[self.kind]

    def describe(self) -> str:
        """`` with MirroredStrategy, 2 replicas`` (and the task of a worker), or ``""`` on one device."""
        if self.strategy is None:
            return ""
        task = "" if self.kind == "mirrored" else f", this is {self.task}{' (chief)' if self.is_chief else ''}"
        return f" with {self.name}, {self.replicas} replica{'s' if self.replicas > 1 else ''}{task}"

    def to_json(self) -> dict:
        if self.strategy is None:
            return {"strategy": None, "replicas": 1}
        devices = list(getattr(self.strategy.extended, "worker_devices", ()))
        return {"strategy": self.name, "replicas": self.replicas, "task": self.task, "chief": self.is_chief,
                "devices": devices}


def check_distribution(kind: str) -> dict | None:
    """Raise ``DistributionError`` (a one-line message) if ``--distribute kind`` cannot run here.

    Needs the TensorFlow backend for anything but ``"none"``; ``"multiworker"`` needs
    ``TF_CONFIG``, a JSON object with ``cluster`` (``worker``: ``["host:port", ...]``,
    optionally ``chief``) and this process's ``task`` (``type``, ``index``). Returns the
    parsed cluster for ``"multiworker"`` (with ``is_chief``), else None.
    """
    if kind not in DISTRIBUTE:
        raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {kind!r}")
    if kind == "none":
        return None
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise DistributionError(f"--distribute {kind} trains through tf.distribute and needs the TensorFlow backend "
                         f"(KERAS_BACKEND=tensorflow); this is {backend}")
    if kind == "mirrored":
        return None
    return parse_tf_config(os.environ.get("TF_CONFIG"))


TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


def parse_tf_config(text: str | None) -> dict:
    """The cluster and task of a ``TF_CONFIG`` value; ``DistributionError`` (one line) if it is not usable.

    The chief is the ``chief`` task if the cluster has one, else worker 0.
    """
    where = "--distribute multiworker reads the cluster from TF_CONFIG"
    if not text:
        raise DistributionError(f"{where}, which is not set (e.g. {TF_CONFIG_EXAMPLE})")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistributionError(f"{where}: not JSON ({error})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker"), list) or not cluster["worker"]:
        raise DistributionError(
            f'{where}: it needs "cluster": {{"worker": ["host:port", ...]}} (e.g. {TF_CONFIG_EXAMPLE})'
        )
    for role, hosts in cluster.items():
        if role not in ("chief", "worker") or not isinstance(hosts, list) or not all(
            isinstance(host, str) and ":" in host for host in hosts
        ):
            raise DistributionError(f'{where}: cluster "{role}" must be a list of "host:port" (roles: chief, worker)')
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int):
        raise DistributionError(f'{where}: "task" must name this process, e.g. {{"type": "worker", "index": 0}}, '
                         f"with a type among {sorted(cluster)}")
    if not 0 <= task["index"] < len(cluster[task["type"]]):
        raise DistributionError(f'{where}: task index {task["index"]} is out of range for the '
                         f'{len(cluster[task["type"]])} {task["type"]} host(s)')
    is_chief = task["type"] == "chief" or ("chief" not in cluster and task["index"] == 0)
    return {"cluster": cluster, "task": task, "is_chief": is_chief}


def build_from_one_window(model: keras.Model, batches: WindowBatches) -> None:
    """Let Keras build the model's metrics from one local window rather than a reduced batch.

    Under a ``tf.distribute`` strategy, Keras 3's ``fit`` and ``evaluate`` first take a
    batch from the distributed dataset and average it across the replicas only to learn
    the shapes of ``(x, y)``. That fails across workers (``MultiWorkerMirroredStrategy``
    cannot reduce the tuple) and for a batch that does not split evenly among the
    replicas. Shapes are all it needs, and one window gives them.
    """
    window = batches.index.gather(batches.index.starts[:1], batches.targets)
    build = model._maybe_symbolic_build  # private: the Keras step that fails, see above
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(data_batch=window)


def log_vectors(model: keras.Model) -> None:
    """Make the training and test steps return their logs as ``(1,)`` vectors, not scalars.

    Under ``MultiWorkerMirroredStrategy`` with several workers, Keras 3 averages each
    step's logs across the workers with ``strategy.reduce("MEAN", value, axis=0)``, which
    fails on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388). The logs are the metrics' results, the same on every
    replica (metric variables are summed across replicas), so the mean of the vectors is
    the value, and Keras hands the callbacks a ``(1,)`` array, which they read as a number.
    """
    import tensorflow as tf

    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {k: tf.reshape(v, (1,)) for k, v in step(data).items()})

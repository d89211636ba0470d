"""Training on several devices or hosts: ``keras.distribution`` under JAX, ``tf.distribute`` under TensorFlow.

``--distribute data-parallel`` trains on every local device, and on every host of a JAX
cluster: under JAX through ``keras.distribution.DataParallel`` (the variables replicated,
each batch split along its first axis over every device of every process), under
TensorFlow as ``mirrored``. A JAX cluster is named by ``JAX_COORDINATOR_ADDRESS``
(``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and this process's ``JAX_PROCESS_ID``,
and set up with ``jax.distributed.initialize``. Every process reads the whole global batch
(the batches depend only on seed and epoch) and hands its devices their share.

``--distribute mirrored`` trains on every local GPU (every logical CPU device when there
is none) with ``tf.distribute.MirroredStrategy``; ``--distribute multiworker`` on the hosts
named in ``TF_CONFIG`` with ``MultiWorkerMirroredStrategy``. The data then comes from
``note_matrix.training.tf_data`` (``tf.data``: the same batches in the same order as on
one device, sharded per worker).

The batch size is always the global batch, split among the devices, so a setting trains
the same updates whatever the devices. Process 0 (JAX) or the chief (TensorFlow) keeps the
run folder; the other processes write theirs to a temporary folder, removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import os

import keras

from note_matrix.config import DISTRIBUTE
from note_matrix.errors import DistributionError
from note_matrix.training.windows import ShuffleEpochs, WindowBatches

STRATEGY_NAMES = {"mirrored": "MirroredStrategy", "multiworker": "MultiWorkerMirroredStrategy",
                  "data-parallel": "MirroredStrategy"}
DATA_PARALLEL_NAME = "DataParallel"  # keras.distribution's, under JAX
JAX_CLUSTER_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
JAX_CLUSTER_EXAMPLE = "JAX_COORDINATOR_ADDRESS=host1:12345 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0"


_DISTRIBUTIONS: dict[tuple, Distribution] = {}  # see Distribution.create


class Distribution:
    """Where training runs: one device, a ``tf.distribute`` ``strategy`` or a ``keras_distribution``.

    Build it with ``create`` before the backend computes anything: a multi-worker strategy
    and a JAX cluster must be set up at program start. ``is_chief``: whether this process
    keeps the run folder (always, except on the other workers or processes of a cluster).
    """

    def __init__(self, kind: str = "none", strategy=None, *,
                 keras_distribution: keras.distribution.Distribution | None = None,
                 is_chief: bool = True, task: str = "local"):
        self.kind, self.strategy, self.keras_distribution = kind, strategy, keras_distribution
        self.is_chief, self.task = is_chief, task

    @property
    def replicas(self) -> int:
        if self.keras_distribution is not None:
            return int(self.keras_distribution.device_mesh.devices.size)
        return 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)

    @classmethod
    def create(cls, kind: str) -> Distribution:
        """The distribution of ``--distribute kind``; the same object for the same kind and
        ``TF_CONFIG`` within a process (TensorFlow sets up a multi-worker cluster, and JAX
        a cluster of processes, only once)."""
        cluster = check_distribution(kind)
        if kind == "none":
            return cls()
        key = (kind, os.environ.get("TF_CONFIG") if kind == "multiworker" else None)
        if key not in _DISTRIBUTIONS:
            _DISTRIBUTIONS[key] = _data_parallel(cluster) if keras.backend.backend() == "jax" else _strategy(kind, cluster)
        return _DISTRIBUTIONS[key]

    def check_batch(self, batch_size: int) -> None:
        """``DistributionError`` (one line) unless every device of ``keras.distribution`` gets
        the same share of a ``batch_size`` batch (``tf.distribute`` splits any batch)."""
        if self.keras_distribution is not None and batch_size % self.replicas:
            raise DistributionError(
                f"--batch-size {batch_size} does not split evenly among the {self.replicas} devices of "
                f"--distribute {self.kind}; give a multiple of {self.replicas}, e.g. "
                f"{math.ceil(batch_size / self.replicas) * self.replicas}"
            )

    def scope(self):
        """Where the model is built and fitted (``keras.distribution`` must be set for both)."""
        if self.keras_distribution is not None:
            return self.keras_distribution.scope()
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    @property
    def name(self) -> str | None:
        """The strategy's public name (``MultiWorkerMirroredStrategy``'s class is ``CollectiveAllReduceStrategy``)."""
        if self.keras_distribution is not None:
            return DATA_PARALLEL_NAME
        return None if self.strategy is None else STRATEGY_NAMES[self.kind]

    def describe(self) -> str:
        """`` with MirroredStrategy, 2 replicas`` (and the task of a worker), or ``""`` on one device."""
        if self.name is None:
            return ""
        task = "" if self.task == "local" else f", this is {self.task}{' (chief)' if self.is_chief else ''}"
        return f" with {self.name}, {self.replicas} replica{'s' if self.replicas > 1 else ''}{task}"

    def to_json(self) -> dict:
        if self.name is None:
            return {"strategy": None, "replicas": 1}
        if self.keras_distribution is not None:
            devices = [str(device) for device in self.keras_distribution.device_mesh.devices.flat]
        else:
            devices = list(getattr(self.strategy.extended, "worker_devices", ()))
        return {"strategy": self.name, "replicas": self.replicas, "task": self.task, "chief": self.is_chief,
                "devices": devices}


def _strategy(kind: str, cluster: dict | None) -> Distribution:
    """``mirrored`` (and ``data-parallel`` under TensorFlow) or ``multiworker``, through ``tf.distribute``."""
    import tensorflow as tf  # check_distribution made sure this is the TensorFlow backend

    if kind != "multiworker":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return Distribution(kind, tf.distribute.MirroredStrategy([device.name for device in devices]))
    task = cluster["task"]
    return Distribution(kind, tf.distribute.MultiWorkerMirroredStrategy(), is_chief=cluster["is_chief"],
                        task=f"{task['type']}-{task['index']}")


def _data_parallel(cluster: dict | None) -> Distribution:
    """``keras.distribution.DataParallel`` over every device of every process (JAX backend).

    With a cluster, ``jax.distributed.initialize`` first: afterwards ``list_devices`` names
    the devices of every process, and process 0 is the chief.
    """
    import jax

    if cluster is not None:
        jax.distributed.initialize(cluster["coordinator"], cluster["processes"], cluster["process"])
    _feed_global_batches()
    data_parallel = keras.distribution.DataParallel(devices=keras.distribution.list_devices(), auto_shard_dataset=False)
    process = jax.process_index()
    task = "local" if cluster is None else f"process-{process}"
    return Distribution("data-parallel", keras_distribution=data_parallel, is_chief=process == 0, task=task)


def _feed_global_batches() -> None:
    """Have Keras place each global batch on the devices from the whole batch, and a batch
    that does not split evenly (the last of an epoch) on every device whole.

    Keras' JAX trainer hands each process's batch to ``distribute_data_input``, which
    takes it as this process's share (``jax.make_array_from_process_local_data``) and
    refuses a batch that does not split among the devices. Here every process reads the
    whole global batch (``WindowBatches`` depend only on seed and epoch), so each device
    takes its rows from it; the short last batch of an epoch runs replicated, so training
    sees exactly the batches of one device. Private: Keras has no hook for either.
    """
    import jax
    from keras.src.backend.jax import distribution_lib  # private, see above

    def distribute_data_input(batch, layout, batch_dim_name):
        sharding = getattr(layout, "backend_layout", layout)
        if batch.shape[0] % sharding.mesh.size:
            sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        return jax.make_array_from_callback(batch.shape, sharding, lambda index: batch[index])

    distribution_lib.distribute_data_input = distribute_data_input


def check_distribution(kind: str) -> dict | None:
    """Raise ``DistributionError`` (a one-line message) if ``--distribute kind`` cannot run here.

    ``"data-parallel"`` needs the JAX or the TensorFlow backend; under JAX, a cluster is
    named by the ``JAX_CLUSTER_VARIABLES`` (see ``parse_jax_cluster``). ``"mirrored"`` and
    ``"multiworker"`` need TensorFlow; ``"multiworker"`` needs ``TF_CONFIG``, a JSON object
    with ``cluster`` (``worker``: ``["host:port", ...]``, optionally ``chief``) and this
    process's ``task`` (``type``, ``index``). Returns the parsed cluster (``parse_tf_config``,
    ``parse_jax_cluster``), None on one machine.
    """
    if kind not in DISTRIBUTE:
        raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {kind!r}")
    if kind == "none":
        return None
    backend = keras.backend.backend()
    if kind == "data-parallel":
        return _data_parallel_cluster(backend)
    if backend != "tensorflow":
        raise DistributionError(f"--distribute {kind} trains through tf.distribute and needs the TensorFlow backend "
                                f"(KERAS_BACKEND=tensorflow); this is {backend}: use --distribute data-parallel")
    if kind == "mirrored":
        return None
    return parse_tf_config(os.environ.get("TF_CONFIG"))


def _data_parallel_cluster(backend: str) -> dict | None:
    """The JAX cluster of ``--distribute data-parallel``, None on one machine and under TensorFlow."""
    if backend == "jax":
        return parse_jax_cluster(os.environ)
    if backend != "tensorflow":
        raise DistributionError(f"--distribute data-parallel needs the JAX or the TensorFlow backend; this is {backend}")
    if any(os.environ.get(name) for name in JAX_CLUSTER_VARIABLES):
        raise DistributionError(f"{', '.join(JAX_CLUSTER_VARIABLES)} name a JAX cluster, and --distribute data-parallel "
                                "under TensorFlow trains on this machine only (MirroredStrategy); on several hosts "
                                "use KERAS_BACKEND=jax, or --distribute multiworker with TF_CONFIG")
    return None


def parse_jax_cluster(environ) -> dict | None:
    """The JAX cluster named by ``JAX_CLUSTER_VARIABLES`` in ``environ``; None when none is set.

    ``DistributionError`` (one line) unless all three are set and usable: the coordinator
    (process 0's ``host:port``, reachable from every host), the number of processes, and
    this process's id in ``0 .. processes - 1``.
    """
    values = {name: environ.get(name) for name in JAX_CLUSTER_VARIABLES}
    if not any(values.values()):
        return None
    where = "--distribute data-parallel on several hosts reads"
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise DistributionError(f"{where} {', '.join(JAX_CLUSTER_VARIABLES)}; {', '.join(missing)} not set "
                                f"(e.g. {JAX_CLUSTER_EXAMPLE})")
    address, processes, process = values.values()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DistributionError(f"{where} JAX_COORDINATOR_ADDRESS as host:port (process 0's), got {address!r}")
    if not processes.isdigit() or int(processes) < 1:
        raise DistributionError(f"{where} JAX_NUM_PROCESSES as a positive whole number, got {processes!r}")
    if not process.isdigit() or int(process) >= int(processes):
        raise DistributionError(f"{where} JAX_PROCESS_ID as a number from 0 to {int(processes) - 1} "
                                f"(JAX_NUM_PROCESSES - 1), got {process!r}")
    return {"coordinator": address, "processes": int(processes), "process": int(process)}


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


def fit_inputs(model: keras.Model, distribution: Distribution, batches: WindowBatches,
               validation: WindowBatches | None, initial_epoch: int, epochs: int) -> tuple[dict, list]:
    """``model.fit``'s data arguments for ``distribution``, and the callbacks they need.

    On one device and under ``keras.distribution`` the batches themselves (Keras places
    each on the devices), their epoch pinned by ``ShuffleEpochs``; under ``tf.distribute``
    a ``tf.data`` pipeline of the same batches (``note_matrix.training.tf_data``), from
    ``initial_epoch`` to ``epochs``.
    """
    if distribution.strategy is None:
        return {"x": batches, "validation_data": validation}, [ShuffleEpochs(batches)]
    from note_matrix.training import tf_data  # TensorFlow backend only

    build_from_one_window(model, batches)
    if distribution.kind == "multiworker":
        log_vectors(model)
    return {
        "x": tf_data.training_dataset(batches, initial_epoch, epochs),
        "steps_per_epoch": len(batches),
        "validation_data": None if validation is None else tf_data.evaluation_dataset(validation),
    }, []


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

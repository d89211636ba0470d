"""--distribute: keras.distribution (JAX) and tf.distribute on CPU agree with one device; refusals are one line.

Devices must be configured before the backend starts, and a cluster once per process, so
the distributed runs are subprocesses: under JAX, two CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``) and two processes on localhost
(``JAX_COORDINATOR_ADDRESS``); under TensorFlow, two logical CPU devices under
``MirroredStrategy`` and two workers on localhost under ``MultiWorkerMirroredStrategy``.

Tolerance: per-epoch losses and validation figures agree with single-device training to
a relative ``LOSS_RTOL`` = 1e-5. With dropout 0 the replicas compute the same function on
their halves of each batch; what can differ is only the order of floating-point sums (the
gradient is the all-reduced mean of each replica's mean, the loss a sum over replicas).
Measured on the development machine: equal to the last bit under MirroredStrategy, within
1e-7 across two workers and under keras.distribution.DataParallel. With dropout, the replicas draw their masks from the same seed
state, so the masks (and the losses) differ from one device's; that is why dropout is 0.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import train
from note_matrix.errors import DistributionError
from note_matrix.training.distribute import parse_jax_cluster, parse_tf_config

REPOSITORY = Path(train.__file__).resolve().parent
LOSS_RTOL = 1e-5
SUBPROCESS_TIMEOUT_SECONDS = 180
TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute needs TensorFlow")

# Shared by the subprocess scripts: tiny runs on the synthetic songs, without dropout (a flag
# given again in ``flags`` wins).
RUN = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import train

    def run(songs, base, name, *flags):
        code = train.main(["--dataset", songs, "--data-dir", base + "/data", "--logdir", base + "/logs",
                           "--run-name", name, "--units", "8", "--dropout", "0", "--epochs", "2",
                           "--batch-size", "8", "--quiet", *flags])
        assert code == 0, code
        history = base + "/logs/" + name + "/history.json"
        return json.load(open(history))["epochs"] if os.path.exists(history) else None  # None: not the chief
""")
# The windows each replica of a tf.distribute strategy gets.
TF_PROBE = textwrap.dedent("""
    from note_matrix.training import tf_data as pipeline
    from note_matrix.training.windows import WindowBatches, WindowIndex

    def local_batches(strategy, batches, count):
        # The first rows of the windows each replica of this process gets, batch by batch.
        distributed = iter(strategy.experimental_distribute_dataset(pipeline.training_dataset(batches, 0, 1)))
        return [[np.asarray(x)[:, 0, 0].tolist() for x, _ in strategy.experimental_local_results(next(distributed))]
                for _ in range(count)]

    # Rows numbered 0, 1, 2, ...: a window's first value is its start.
    songs = [np.repeat(np.arange(a, a + n, dtype=np.float32)[:, None], 3, axis=1) for a, n in ((0, 90), (90, 70))]
    probe = WindowBatches(WindowIndex(songs, 10), 6, shuffle=True, seed=1, targets="all", layout="chunks")
""")


def _run_script(script: str, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(REPOSITORY), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        **popen,
    )


def _output(process: subprocess.Popen) -> tuple[dict, str]:
    """The JSON object the script printed on its last line, and everything it printed."""
    out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), out


def _result(process: subprocess.Popen) -> dict:
    return _output(process)[0]


@pytest.fixture(scope="module")
def one_device(song_folder, tmp_path_factory) -> dict:
    """The per-epoch history of the runs below on one device, without tf.distribute."""
    base = tmp_path_factory.mktemp("one-device")
    assert train.main(["--dataset", str(song_folder), "--data-dir", str(base / "data"), "--logdir", str(base / "logs"),
                       "--run-name", "one", "--units", "8", "--dropout", "0", "--epochs", "2", "--batch-size", "8",
                       "--quiet"]) == 0
    return json.loads((base / "logs" / "one" / "history.json").read_text())["epochs"]


def _assert_same_history(history, expected):
    assert history.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(history[name], expected[name], rtol=LOSS_RTOL, atol=1e-7, err_msg=name)


@TF_ONLY
def test_mirrored_on_two_cpu_devices_agrees_with_one_device(song_folder, tmp_path, one_device):
    script = textwrap.dedent("""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """) + RUN + TF_PROBE + textwrap.dedent("""
        from note_matrix.training.distribute import Distribution
        songs, base = sys.argv[1:]
        strategy = Distribution.create("mirrored").strategy
        out = {"replicas": strategy.num_replicas_in_sync, "split": local_batches(strategy, probe, 2),
               "global": probe.epoch_starts(0)[:12].tolist()}
        out["mirrored"] = run(songs, base, "mirrored", "--distribute", "mirrored")
        # One epoch on two devices (data-parallel: MirroredStrategy under TensorFlow), resumed on one:
        # the batch is global, so nothing changes.
        run(songs, base, "moved", "--epochs", "1", "--distribute", "data-parallel")
        assert train.main(["--resume", base + "/logs/moved", "--epochs", "2", "--distribute", "none", "--quiet"]) == 0
        out["moved"] = json.load(open(base + "/logs/moved/history.json"))["epochs"]
        out["configs"] = [json.load(open(base + "/logs/" + name + "/config.json"))["distribution"]
                          for name in ("mirrored", "moved")]
        print(json.dumps(out))
    """)
    out = _result(_run_script(script, str(song_folder), str(tmp_path)))

    assert out["replicas"] == 2
    for config in out["configs"]:
        assert config["strategy"] == "MirroredStrategy" and len(config["devices"]) == 2
    # Each global batch of 6 windows is split, in order, into two halves of 3.
    assert [half for batch in out["split"] for half in batch] == [out["global"][i : i + 3] for i in range(0, 12, 3)]
    _assert_same_history(out["mirrored"], one_device)
    assert "val_last_mse" in one_device
    _assert_same_history(out["moved"], one_device)


@TF_ONLY
@pytest.mark.parametrize("targets", ["all", "last"])
def test_the_pipeline_yields_the_batches_of_window_batches(targets):
    from note_matrix.training import tf_data as pipeline
    from note_matrix.training.windows import WindowBatches, WindowIndex

    rng = np.random.default_rng(5)
    index = WindowIndex([rng.random((n, 3), dtype=np.float32) for n in (90, 64, 131)], 10)
    layout = "chunks" if targets == "all" else "sliding"
    batches = WindowBatches(index, 7, shuffle=True, seed=2, targets=targets, layout=layout)
    stream = list(pipeline.training_dataset(batches, 1, 3).as_numpy_iterator())  # epochs 1 and 2
    expected = []
    for epoch in (1, 2):
        batches.set_epoch(epoch)
        expected += [batches[i] for i in range(len(batches))]
    assert len(stream) == len(expected) == 2 * len(batches)
    for (x, y), (x_expected, y_expected) in zip(stream, expected):
        np.testing.assert_array_equal(x, x_expected)
        np.testing.assert_array_equal(y, y_expected)
    validation = WindowBatches(index, 7, shuffle=False, targets=targets)
    evaluation = list(pipeline.evaluation_dataset(validation).as_numpy_iterator())
    assert len(evaluation) == len(validation)
    np.testing.assert_array_equal(evaluation[-1][1], validation[len(validation) - 1][1])
    options = pipeline.evaluation_dataset(validation).options()
    assert options.experimental_distribute.auto_shard_policy == tf_data_policy("DATA")


def tf_data_policy(name: str):
    import tensorflow as tf

    return getattr(tf.data.experimental.AutoShardPolicy, name)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@TF_ONLY
def test_two_workers_shard_the_data_and_agree_with_one_device(song_folder, tmp_path, one_device):
    script = RUN + TF_PROBE + textwrap.dedent("""
        from note_matrix.training.distribute import Distribution
        songs, base = sys.argv[1:]
        distribution = Distribution.create("multiworker")
        out = {"chief": distribution.is_chief, "replicas": distribution.replicas,
               "shard": local_batches(distribution.strategy, probe, 2), "global": probe.epoch_starts(0)[:12].tolist()}
        out["history"] = run(songs, base, "workers", "--distribute", "multiworker")
        print(json.dumps(out))
    """)
    hosts = [f"localhost:{port}" for port in _free_ports(2)]
    workers = [
        _run_script(script, str(song_folder), str(tmp_path / f"worker{i}"), env={
            "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    try:
        chief, other = (_result(worker) for worker in workers)
    finally:
        for worker in workers:  # a worker left waiting for a failed one
            if worker.poll() is None:
                worker.kill()
                worker.communicate()

    assert chief["chief"] and not other["chief"] and chief["replicas"] == other["replicas"] == 2
    # Each worker reads its own half of every global batch of 6 windows (auto-sharding by DATA).
    for batch in range(2):
        (mine,), (theirs,) = chief["shard"][batch], other["shard"][batch]
        assert len(mine) == len(theirs) == 3 and not set(mine) & set(theirs)
        assert sorted(mine + theirs) == sorted(chief["global"][6 * batch : 6 * batch + 6])
    _assert_same_history(chief["history"], one_device)
    # Only the chief keeps a run folder; the other worker's was temporary.
    assert other["history"] is None
    assert (tmp_path / "worker0" / "logs" / "workers" / "model.keras").is_file()
    assert not (tmp_path / "worker1" / "logs").exists()


# -- keras.distribution under JAX ------------------------------------------------------------

# Windows of 30 steps, every 2nd validation window, batches of 8: 27 training chunks and 85
# validation windows, so each epoch ends on batches of 3 and 5 windows, which two devices
# cannot split evenly (they run whole on every device).
JAX_TINY = ("--window", "30", "--validation-stride", "2", "--sample-every", "0")
JAX_SHORT_BATCHES = "4 files / 27 chunks of 30 steps, every next step a target; validation 1 files / 85 windows"


@pytest.fixture(scope="module")
def jax_env(tmp_path_factory) -> dict:
    """The JAX backend, one CPU device, and a compilation cache the runs share: a run after the
    first compiles nothing (3 s instead of 20 on a busy 2-core machine)."""
    return {"KERAS_BACKEND": "jax", "XLA_FLAGS": "", "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("xla")),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module")
def jax_two_devices(song_folder, tmp_path_factory, jax_env) -> dict:
    """Runs on two CPU devices under JAX (one process) and their single-device twins.

    ``one``: one device; ``parallel``: data-parallel with a sample at epoch 2; ``to-one`` and
    ``to-two``: one epoch on two devices resumed on one, and the other way round. Also the
    run folder, the refusal of a batch of 7 and the training output.
    """
    base = tmp_path_factory.mktemp("jax-two-devices")
    script = RUN + textwrap.dedent(f"""
        import contextlib, io
        import keras
        songs, base = sys.argv[1:]
        tiny = {JAX_TINY!r}
        out = {{"devices": keras.distribution.list_devices()}}
        out["one"] = run(songs, base, "one", *tiny)
        out["parallel"] = run(songs, base, "parallel", *tiny, "--sample-every", "2", "--distribute", "data-parallel")
        out["config"] = json.load(open(base + "/logs/parallel/config.json"))["distribution"]
        for name, first, then in (("to-one", "data-parallel", "none"), ("to-two", "none", "data-parallel")):
            run(songs, base, name, *tiny, "--epochs", "1", "--distribute", first)
            assert train.main(["--resume", base + "/logs/" + name, "--epochs", "2", "--distribute", then,
                               "--quiet"]) == 0
            out[name] = json.load(open(base + "/logs/" + name + "/history.json"))["epochs"]
        error = io.StringIO()
        with contextlib.redirect_stderr(error):
            code = train.main(["--dataset", songs, "--data-dir", base + "/refused", "--logdir", base + "/refused",
                               "--batch-size", "7", "--distribute", "data-parallel"])
        out["odd_batch"] = [code, error.getvalue()]
        print(json.dumps(out))
    """)
    process = _run_script(script, str(song_folder), str(base),
                          env={**jax_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    out, printed = _output(process)
    return {**out, "base": base, "printed": printed}


def test_data_parallel_on_two_jax_devices_agrees_with_one_device(jax_two_devices):
    assert jax_two_devices["devices"] == ["cpu:0", "cpu:1"]
    config = jax_two_devices["config"]
    assert config["strategy"] == "DataParallel" and config["replicas"] == 2 and config["chief"]
    assert config["devices"] == ["cpu:0", "cpu:1"]
    assert f"with DataParallel, 2 replicas: {JAX_SHORT_BATCHES}" in jax_two_devices["printed"]
    _assert_same_history(jax_two_devices["parallel"], jax_two_devices["one"])
    assert "val_last_mse" in jax_two_devices["one"]


@pytest.mark.parametrize("moved", ["to-one", "to-two"])
def test_a_jax_checkpoint_resumes_on_another_device_count(jax_two_devices, moved):
    _assert_same_history(jax_two_devices[moved], jax_two_devices["one"])
    resumed = json.loads((jax_two_devices["base"] / "logs" / moved / "config.json").read_text())["resumed"]
    assert [entry["distribution"]["replicas"] for entry in resumed] == [1 if moved == "to-one" else 2]


def _event_steps(folder: Path) -> dict[str, list[int]]:
    """Every tag's steps, in every event file of ``folder``, in the order written."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    steps: dict[str, list[int]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(record)
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def test_data_parallel_writes_tensorboard_and_samples_once(jax_two_devices):
    run = jax_two_devices["base"] / "logs" / "parallel"
    train_steps, validation_steps = _event_steps(run / "train"), _event_steps(run / "validation")
    assert len(train_steps["batch_loss"]) == 2 * 4  # 2 epochs of 4 batches (27 windows), each logged once
    assert len(set(train_steps["batch_loss"])) == 8
    for steps in (train_steps["epoch_loss"], validation_steps["epoch_loss"], train_steps["lstm/kernel"]):
        assert len(steps) == len(set(steps)) == 2
    assert len(validation_steps["samples/piano_roll"]) == 1  # after epoch 2


def test_data_parallel_refuses_a_batch_the_devices_cannot_share(jax_two_devices):
    code, error = jax_two_devices["odd_batch"]
    assert code == 2
    assert error == ("train.py: error: --batch-size 7 does not split evenly among the 2 devices of "
                     "--distribute data-parallel; give a multiple of 2, e.g. 8\n")
    assert not (jax_two_devices["base"] / "refused").exists()


def test_two_jax_processes_agree_with_one_device(song_folder, tmp_path, jax_env, jax_two_devices):
    script = RUN + textwrap.dedent(f"""
        songs, base = sys.argv[1:]
        history = run(songs, base, "hosts", *{JAX_TINY!r}, "--epochs", "1", "--sample-every", "1",
                      "--distribute", "data-parallel")
        print(json.dumps({{"history": history}}))
    """)
    coordinator = f"localhost:{_free_ports(1)[0]}"
    processes = [
        _run_script(script, str(song_folder), str(tmp_path / f"process{i}"), env={
            **jax_env, "JAX_COORDINATOR_ADDRESS": coordinator, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
        for i in range(2)
    ]
    try:
        (first, first_printed), (second, second_printed) = (_output(process) for process in processes)
    finally:
        for process in processes:  # a process left waiting for a failed one
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert "with DataParallel, 2 replicas, this is process-0 (chief)" in first_printed
    one_epoch = {name: values[:1] for name, values in jax_two_devices["one"].items()}
    _assert_same_history(first["history"], one_epoch)
    # Only process 0 keeps a run folder; the other's was temporary, and no one is told to resume it.
    assert second["history"] is None and "--resume" not in second_printed
    run = tmp_path / "process0" / "logs" / "hosts"
    assert (run / "model.keras").is_file()
    assert len(_event_steps(run / "train")["epoch_loss"]) == len(_event_steps(run / "validation")["samples/piano_roll"]) == 1
    assert not (tmp_path / "process1" / "logs").exists()


# -- refusals -------------------------------------------------------------------------------


def test_tf_config_is_parsed_and_the_chief_found():
    workers = {"worker": ["a:1", "b:2"]}
    assert parse_tf_config(json.dumps({"cluster": workers, "task": {"type": "worker", "index": 0}}))["is_chief"]
    assert not parse_tf_config(json.dumps({"cluster": workers, "task": {"type": "worker", "index": 1}}))["is_chief"]
    with_chief = {"chief": ["c:3"], **workers}
    assert not parse_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))["is_chief"]
    assert parse_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}}))["is_chief"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "which is not set"),
        ("{cluster", "not JSON"),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', 'it needs "cluster"'),
        ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', 'cluster "ps"'),
        ('{"cluster": {"worker": ["a:1"]}}', '"task" must name this process'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 2}}', "task index 2 is out of range"),
    ],
)
def test_unusable_tf_config_is_refused(value, message):
    with pytest.raises(DistributionError, match=message) as error:
        parse_tf_config(value)
    assert "\n" not in str(error.value)


def test_a_jax_cluster_is_read_from_jax_variables():
    assert parse_jax_cluster({}) is None
    cluster = {"JAX_COORDINATOR_ADDRESS": "host1:12345", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert parse_jax_cluster(cluster) == {"coordinator": "host1:12345", "processes": 2, "process": 1}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES, JAX_PROCESS_ID not set"),
        ({"JAX_PROCESS_ID": "0", "JAX_NUM_PROCESSES": "2"}, "JAX_COORDINATOR_ADDRESS not set"),
        ({"JAX_COORDINATOR_ADDRESS": "host1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
         "JAX_COORDINATOR_ADDRESS as host:port"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
         "JAX_NUM_PROCESSES as a positive whole number, got 'two'"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
         "JAX_PROCESS_ID as a number from 0 to 1"),
    ],
)
def test_an_unusable_jax_cluster_is_refused(variables, message):
    with pytest.raises(DistributionError, match=message) as error:
        parse_jax_cluster(variables)
    assert "\n" not in str(error.value)


def test_distribute_refusals_are_one_line_errors(song_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    flags = ["--dataset", str(song_folder), "--logdir", str(tmp_path / "logs"), "--units", "8", "--quiet"]
    assert train.main([*flags, "--distribute", "multiworker"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("train.py: error: --distribute multiworker ") and error.count("\n") == 1
    if keras.backend.backend() == "tensorflow":
        assert "TF_CONFIG, which is not set" in error
    assert not (tmp_path / "logs").exists()
    with pytest.raises(SystemExit):
        train.parse_args(["--distribute", "everywhere"])


def test_distribute_needs_the_tensorflow_backend(song_folder, tmp_path):
    flags = ["--dataset", str(song_folder), "--logdir", str(tmp_path / "logs"), "--distribute", "mirrored"]
    if keras.backend.backend() == "jax":
        process = None
    else:  # the refusal under JAX, in a process of its own
        process = subprocess.run([sys.executable, "train.py", *flags], cwd=REPOSITORY, capture_output=True, text=True,
                                 env={**os.environ, "KERAS_BACKEND": "jax"}, timeout=SUBPROCESS_TIMEOUT_SECONDS,
                                 check=False)
    if process is None:
        code, err = _main_in_process(flags)
    else:
        code, err = process.returncode, process.stderr.strip().splitlines()[-1] + "\n"
    assert code == 2
    assert err == ("train.py: error: --distribute mirrored trains through tf.distribute and needs the TensorFlow "
                   "backend (KERAS_BACKEND=tensorflow); this is jax: use --distribute data-parallel\n")


def _main_in_process(argv):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = train.main(argv)
    return code, err.getvalue()

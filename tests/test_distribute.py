"""--distribute: tf.distribute strategies on CPU agree with one device; refusals are one line.

Logical devices must be configured before TensorFlow starts, and a multi-worker cluster
once per process, so the strategies run in subprocesses: two logical CPU devices under
``MirroredStrategy``, and two workers on localhost under ``MultiWorkerMirroredStrategy``.

Tolerance: per-epoch losses and validation figures agree with single-device training to
a relative ``LOSS_RTOL`` = 1e-5. With dropout 0 the replicas compute the same function on
their halves of each batch; what can differ is only the order of floating-point sums (the
gradient is the all-reduced mean of each replica's mean, the loss a sum over replicas).
Measured on the development machine: equal to the last bit under MirroredStrategy, within
1e-7 across two workers. With dropout, the replicas draw their masks from the same seed
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
from note_matrix.training.distribute import parse_tf_config
from note_matrix.errors import DistributionError

REPOSITORY = Path(train.__file__).resolve().parent
LOSS_RTOL = 1e-5
SUBPROCESS_TIMEOUT_SECONDS = 180
TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute needs TensorFlow")

# Shared by the subprocess scripts: tiny runs on the synthetic songs, without dropout.
RUN = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import train
    from note_matrix.training import tf_data as pipeline
    from note_matrix.training.windows import WindowBatches, WindowIndex

    def run(songs, base, name, *flags):
        code = train.main(["--dataset", songs, "--data-dir", base + "/data", "--logdir", base + "/logs",
                           "--run-name", name, "--units", "8", "--dropout", "0", "--epochs", "2",
                           "--batch-size", "8", "--quiet", *flags])
        assert code == 0, code
        history = base + "/logs/" + name + "/history.json"
        return json.load(open(history))["epochs"] if os.path.exists(history) else None  # None: not the chief

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


def _result(process: subprocess.Popen) -> dict:
    """The JSON object the script printed on its last line."""
    out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


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
    """) + RUN + textwrap.dedent("""
        from note_matrix.training.distribute import Distribution
        songs, base = sys.argv[1:]
        strategy = Distribution.create("mirrored").strategy
        out = {"replicas": strategy.num_replicas_in_sync, "split": local_batches(strategy, probe, 2),
               "global": probe.epoch_starts(0)[:12].tolist()}
        out["mirrored"] = run(songs, base, "mirrored", "--distribute", "mirrored")
        # One epoch on two devices, resumed on one: the batch is global, so nothing changes.
        run(songs, base, "moved", "--epochs", "1", "--distribute", "mirrored")
        assert train.main(["--resume", base + "/logs/moved", "--epochs", "2", "--distribute", "none", "--quiet"]) == 0
        out["moved"] = json.load(open(base + "/logs/moved/history.json"))["epochs"]
        out["config"] = json.load(open(base + "/logs/mirrored/config.json"))["distribution"]
        print(json.dumps(out))
    """)
    out = _result(_run_script(script, str(song_folder), str(tmp_path)))

    assert out["replicas"] == 2 and out["config"]["strategy"] == "MirroredStrategy"
    assert len(out["config"]["devices"]) == 2
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
    script = RUN + textwrap.dedent("""
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
                   "backend (KERAS_BACKEND=tensorflow); this is jax\n")


def _main_in_process(argv):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = train.main(argv)
    return code, err.getvalue()

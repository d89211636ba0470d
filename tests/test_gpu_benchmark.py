"""benchmarks/gpu.sh, as CI smokes it: a tiny setting on this CPU under JAX prints the documented lines.

Two CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``) stand in for the
GPUs, so the run measures training on one device and under ``--distribute data-parallel``.
Pop's epoch comes from the dataset mirror when it is set (CI), else it reads ``n/a``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import MIRROR_ENV, mirror_path

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "BACKENDS": "jax",
    "UNITS": "8",
    "WINDOWS": "64",
    "EPOCHS": "2",
    "ROWS": "20",
    "REPEATS": "1",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
}
# The line format of benchmarks/gpu.py's docstring, for this setting.
SETUP = re.compile(r'setup backend=jax keras=\S+ devices=2 units=8 window=50 pop=(?P<pop>\S+) device="CPU [^"]+"')
TRAIN = re.compile(
    r"train backend=jax devices=(?P<devices>[12]) targets=(?P<targets>all|last) batch=64 "
    r"windows_per_s=(?P<rate>\d+\.\d) pop_epoch_s=(?P<epoch>\d+\.\d\d|n/a)"
)
GENERATE = re.compile(r"generate backend=jax devices=1 batch=(?P<batch>1|32) rows_per_s=(?P<rate>\d+)")


def test_the_gpu_benchmark_prints_its_lines_on_a_cpu(tmp_path):
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # gpu.sh runs `python`
    env = {**os.environ, **TINY, "DATA_DIR": str(tmp_path / "data"), "PATH": path}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 7, done.stdout

    setup = SETUP.fullmatch(lines[0])
    assert setup, lines[0]
    mirror = mirror_path()
    assert setup["pop"] == (str(mirror) if mirror else "none"), f"{MIRROR_ENV}={mirror}"

    trains = [TRAIN.fullmatch(line) for line in lines[1:5]]
    assert all(trains), lines[1:5]
    assert [(train["targets"], train["devices"]) for train in trains] == [
        ("all", "1"),
        ("all", "2"),
        ("last", "1"),
        ("last", "2"),
    ]
    assert all(float(train["rate"]) > 0 for train in trains)
    if mirror:  # pop's epoch: its windows at the measured rate
        assert all(float(train["epoch"]) > 0 for train in trains)
    else:
        assert {train["epoch"] for train in trains} == {"n/a"}

    generates = [GENERATE.fullmatch(line) for line in lines[5:]]
    assert all(generates), lines[5:]
    assert [generate["batch"] for generate in generates] == ["1", "32"]
    assert all(int(generate["rate"]) > 0 for generate in generates)

#!/usr/bin/env python
"""Peak memory of training the card's model on the Nottingham mirror.

    NOTE_MATRIX_MIRROR=/work/shared/datasets python benchmarks/train_memory.py

Runs, each in a fresh process and measured in this one run:

1. ``baseline``: the same imports, the 512-unit model built, compiled and stepped once on
   one batch, and no dataset: what the framework and the model cost on their own;
2. ``train``: ``train.py --dataset nottingham --epochs 1`` (the Nottingham MIDI folder,
   1,034 files, cache warmed beforehand so parsing is not measured), in the default
   ``--targets all`` mode (``--targets all last`` adds the card's mode, about 25 minutes
   an epoch on a 2-core CPU).

For each: peak resident set size of the child (``wait4``), wall
time, and for training the encoded data's size (rows x 3 float32), so the part of the
peak that the data adds can be read off. Use ``KERAS_BACKEND=jax`` for JAX.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BASELINE = """
import numpy as np, keras
from models import ModelConfig, build_model, compile_model
from note_matrix.representations import NoteMatrix
config, representation = ModelConfig(targets="all"), NoteMatrix()
head = representation.head(config.head, config.mixtures)
model = compile_model(build_model(config, representation.inputs(), head), config, head,
                      representation.metrics(config.head, head))
x = np.zeros((64, 50, 3), np.float32)
model.train_on_batch(x, x)
"""


def run(command: list[str], env: dict) -> dict:
    """Run ``command``; its own peak RSS (MB, from ``wait4``) and wall time (s)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            err.seek(0)
            raise SystemExit(f"failed: {' '.join(command)}\n{err.read().decode()[-3000:]}")
    return {"peak_mb": usage.ru_maxrss / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1, help="(default: %(default)s)")
    parser.add_argument("--targets", nargs="+", default=["all"], choices=["all", "last"],
                        help="modes to measure (default: %(default)s; 'last' takes about 25 min an epoch here)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if not os.environ.get("NOTE_MATRIX_MIRROR"):
        raise SystemExit("set NOTE_MATRIX_MIRROR to the dataset mirror (e.g. ../shared/datasets)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"backend {backend}; load average {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory() as scratch:
        data_dir, logdir = Path(scratch) / "data", Path(scratch) / "logs"
        warm = [sys.executable, "-c", (
            "from pathlib import Path; from note_matrix.datasets import resolve_dataset, encode_dataset; "
            "from note_matrix.representations import NoteMatrix; "
            f"d = Path({str(data_dir)!r}); f = resolve_dataset('nottingham', d); "
            "e = encode_dataset(f, NoteMatrix(), d, progress=False, workers=2); "
            "print(sum(len(a) for a in e.arrays.values()), len(e.arrays))")]
        rows, files = map(int, subprocess.run(warm, cwd=ROOT, env=env, capture_output=True, text=True,
                                              check=True).stdout.split())
        print(f"Nottingham: {files} files, {rows:,} rows = {rows * 12 / 2**20:.1f} MB as float32 (cache warmed)")
        figures = {"backend": backend, "rows": rows, "files": files}
        baseline = run([sys.executable, "-c", BASELINE], env)
        figures["baseline"] = baseline
        print(f"baseline (imports + 512-unit model + one step): peak {baseline['peak_mb']:.0f} MB, "
              f"{baseline['seconds']:.1f} s")
        for targets in args.targets:
            command = [sys.executable, "train.py", "--dataset", "nottingham", "--data-dir", str(data_dir),
                       "--logdir", str(logdir), "--run-name", targets, "--epochs", str(args.epochs),
                       "--targets", targets, "--quiet"]
            measured = run(command, env)
            figures[targets] = measured
            print(f"train --targets {targets}, {args.epochs} epoch(s): peak {measured['peak_mb']:.0f} MB "
                  f"({measured['peak_mb'] - baseline['peak_mb']:+.0f} MB over the baseline), "
                  f"{measured['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Training speed of the hand-written LSTM (``--cell lstm-reference``) against ``keras.layers.LSTM``.

    KERAS_BACKEND=jax python benchmarks/reference_lstm.py

Both cells in one process, each in the builder's model (512 units by default, the note
matrix's input and regression head, RMSprop) trained on random windows of 50 rows,
batch 64: a few untimed steps first (compilation), then ``--steps`` timed
``train_on_batch`` calls (each returns the loss, so each step has finished). Prints
steps/s and windows/s per cell and the reference cell's speed as a fraction of the
built-in one's, with the load average, since a shared machine slows both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

from models import TARGETS, ModelConfig, build_model, compile_model
from note_matrix.representations import NoteMatrix

CELLS = ("lstm", "lstm-reference")
WARMUP_STEPS = 3


def steps_per_second(cell: str, args: argparse.Namespace) -> float:
    """Timed training steps per second of ``cell``'s model on one fixed random batch."""
    keras.utils.set_random_seed(0)
    representation = NoteMatrix()
    config = ModelConfig(cell=cell, units=args.units, targets=args.targets)
    head = representation.head(config.head, config.mixtures)
    model = compile_model(
        build_model(config, representation.inputs(), head), config, head, representation.metrics(config.head, head)
    )
    rng = np.random.default_rng(0)
    windows = representation.valid_row(rng.random((args.batch, args.window + 1, 3))).astype(np.float32)
    x = windows[:, :-1]
    y = windows[:, 1:] if args.targets == "all" else windows[:, -1]  # the next row at every step, or the last
    for _ in range(WARMUP_STEPS):
        model.train_on_batch(x, y)
    started = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    return args.steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=512, help="(default: %(default)s)")
    parser.add_argument("--window", type=int, default=50, help="rows per window (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per cell (default: %(default)s)")
    parser.add_argument("--targets", choices=TARGETS, default="all", help="(default: %(default)s)")
    args = parser.parse_args()
    print(
        f"backend {keras.backend.backend()}; {args.units} units, window {args.window}, batch {args.batch}, "
        f"targets {args.targets}, {args.steps} timed steps; load average {os.getloadavg()[0]:.2f}"
    )
    speeds = {cell: steps_per_second(cell, args) for cell in CELLS}
    for cell, speed in speeds.items():
        print(f"{cell:>15}: {speed:6.2f} steps/s, {speed * args.batch:8.1f} windows/s")
    print(
        f"lstm-reference runs at {speeds['lstm-reference'] / speeds['lstm']:.2f}x the built-in LSTM's speed; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()

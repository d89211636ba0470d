#!/usr/bin/env python
"""Training and generation speed on one and on every local device, under one backend.

    benchmarks/gpu.sh                                  # every installed backend, the card's model
    KERAS_BACKEND=jax python benchmarks/gpu.py         # one backend
    KERAS_BACKEND=jax python benchmarks/gpu.py --units 8 --windows 64 --rows 20 --repeats 1   # a tiny smoke run

Prints one line per figure on standard output, fields ``name=value`` in this order
(the backends' own chatter goes to standard error)::

    setup backend=jax keras=3.15.1 devices=8 units=512 window=50 pop=data/pop device="GPU cuda:0, ... (JAX)"
    train backend=jax devices=1 targets=all batch=64 windows_per_s=4210.5 pop_epoch_s=0.42
    train backend=jax devices=8 targets=all batch=64 windows_per_s=15873.0 pop_epoch_s=0.11
    train backend=jax devices=1 targets=last batch=64 windows_per_s=...
    generate backend=jax devices=1 batch=1 rows_per_s=18475
    generate backend=jax devices=1 batch=32 rows_per_s=68493

- ``train``: training windows per second of the card's network (``--units``, dropout
  0.75, RMSprop) on windows of 50 rows at the global batch ``--batch-size`` (rounded up to
  a multiple of the devices), for each ``--targets`` mode: ``all`` (the default, the next
  row at every step of non-overlapping chunks) and ``last`` (the row after each sliding
  window, the card's). Measured with ``model.fit`` over ``--epochs`` epochs of
  ``--windows`` windows of random valid rows (speed does not depend on the values), the
  first epoch (compiling) not counted, through the same inputs as ``train.py``: on one
  device, then on every local device with ``--distribute data-parallel``
  (``keras.distribution.DataParallel`` under JAX, ``MirroredStrategy`` under TensorFlow),
  when there is more than one.
- ``pop_epoch_s``: the windows of one epoch of pop's training split in that mode, divided
  by ``windows_per_s``: seconds of training steps per pop epoch, validation not counted
  (the seed reports 16 s an epoch of ``last`` on a Colab GPU). ``n/a`` when pop is not
  there: neither ``NOTE_MATRIX_MIRROR`` nor ``<data-dir>/pop``.
- ``generate``: carried-state generation (``generate.py``'s default method) of the card's
  model, untrained, rows per second at batch 1 and 32, best of ``--repeats`` calls
  (``benchmarks/generation.py``). On one device: a piece's steps follow one another, and
  ``--distribute`` applies to training only.

"Every local device": under JAX ``keras.distribution.list_devices()`` (the GPUs, else the
CPU; ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` makes N CPU devices), under
TensorFlow the GPUs, else the logical CPUs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

# benchmarks/generation.py, beside this file
from generation import carried_state_rates, untrained_card_model

from models import build_model, compile_model
from note_matrix.config import TrainConfig
from note_matrix.datasets import MIRROR_ENV
from note_matrix.generation import carried_state_generator
from note_matrix.representations import NoteMatrix
from note_matrix.run_data import prepare
from note_matrix.training import window_batches
from note_matrix.training.devices import describe_device
from note_matrix.training.distribute import Distribution, fit_inputs
from note_matrix.training.windows import WindowBatches, WindowIndex

TARGETS = ("all", "last")
POP = "pop"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=512, help="LSTM units (default: the card's %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (default: %(default)s)")
    parser.add_argument(
        "--windows",
        type=int,
        default=4096,
        help="training windows per epoch, rounded up to whole batches (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="training epochs per figure, the first not counted (default: %(default)s)"
    )
    parser.add_argument("--rows", type=int, default=1000, help="generated rows per timed call (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed generation calls (default: %(default)s)")
    parser.add_argument("--data-dir", default="data", help="where pop is, without the mirror (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first one compiles and is not counted")
    return args


def pop_source(data_dir: str) -> str | None:
    """Where pop's files come from (the mirror or ``<data_dir>/pop``), None when neither is there."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return mirror
    folder = Path(data_dir) / POP
    return str(folder) if folder.is_dir() else None


def pop_epoch_windows(data_dir: str) -> dict[str, int]:
    """Windows of one epoch of pop's training split, by targets mode (train.py's defaults otherwise)."""
    config = TrainConfig(dataset=POP, data_dir=data_dir)
    data = prepare(config, NoteMatrix(), progress=False)
    return {mode: window_batches(config.with_changes({"model.targets": mode}), data)[0].windows for mode in TARGETS}


def synthetic_songs(windows: int, window_length: int, targets: str) -> list[np.ndarray]:
    """One song of random valid rows with exactly ``windows`` training windows in mode ``targets``."""
    rows = windows * window_length + 1 if targets == "all" else windows + window_length
    return [NoteMatrix().valid_row(np.random.default_rng(0).random((rows, 3))).astype(np.float32)]


class EpochSeconds(keras.callbacks.Callback):
    """The wall-clock seconds of every epoch, until its loss is known (the steps have finished)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        float(np.asarray(logs["loss"]).mean())  # waits for the epoch's last step
        self.seconds.append(time.perf_counter() - self._start)


def training_rate(config: TrainConfig, distribution: Distribution, windows: int, epochs: int) -> float:
    """Training windows per second of ``config``'s model under ``distribution``, the first epoch not counted."""
    representation, targets = NoteMatrix(), config.model.targets
    head = representation.head(config.model.head, config.model.mixtures)
    songs = synthetic_songs(windows, config.window_length, targets)
    batches = WindowBatches(
        WindowIndex(songs, config.window_length),
        config.batch_size,
        shuffle=True,
        targets=targets,
        layout="chunks" if targets == "all" else "sliding",
    )
    keras.utils.set_random_seed(0)
    timer = EpochSeconds()
    with distribution.scope():
        model = build_model(config.model, representation.inputs(), head)
        compile_model(model, config.model, head, representation.metrics(config.model.head, head))
        inputs, callbacks = fit_inputs(model, distribution, batches, None, 0, epochs)
        model.fit(**inputs, shuffle=False, epochs=epochs, callbacks=[*callbacks, timer], verbose=0)
    return batches.windows * (epochs - 1) / sum(timer.seconds[1:])


def main(argv=None) -> int:
    args = parse_args(argv)
    backend = keras.backend.backend()
    every_device = Distribution.create("data-parallel")
    source = pop_source(args.data_dir)
    pop_windows = pop_epoch_windows(args.data_dir) if source else None
    print(
        f"setup backend={backend} keras={keras.__version__} devices={every_device.replicas} units={args.units} "
        f'window={TrainConfig().window_length} pop={source or "none"} device="{describe_device()}"',
        flush=True,
    )
    for targets in TARGETS:
        for distribution in (Distribution(), every_device)[: 1 + (every_device.replicas > 1)]:
            devices = distribution.replicas
            batch = math.ceil(args.batch_size / devices) * devices
            config = TrainConfig(batch_size=batch).with_changes({"model.units": args.units, "model.targets": targets})
            rate = training_rate(config, distribution, math.ceil(args.windows / batch) * batch, args.epochs)
            epoch = f"{pop_windows[targets] / rate:.2f}" if pop_windows else "n/a"
            print(
                f"train backend={backend} devices={devices} targets={targets} batch={batch} "
                f"windows_per_s={rate:.1f} pop_epoch_s={epoch}",
                flush=True,
            )
    model, primers = untrained_card_model(args.units)
    representation = NoteMatrix()
    generator = carried_state_generator(model, representation, representation.head("regression", 5))
    for batch, (rate, _) in carried_state_rates(generator, primers, args.rows, args.repeats).items():
        print(f"generate backend={backend} devices=1 batch={batch} rows_per_s={rate:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

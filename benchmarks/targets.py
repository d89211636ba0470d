#!/usr/bin/env python
"""Training on every position against the card's last-row training, at equal wall-clock time.

    NOTE_MATRIX_MIRROR=../shared/datasets python benchmarks/targets.py           # 300 s a mode
    NOTE_MATRIX_MIRROR=../shared/datasets python benchmarks/targets.py --quick   # targets/s only, < 1 min

For each mode (``--targets last``: the row after each sliding window of 50 rows;
``--targets all``: the next row at every step of non-overlapping chunks of 50 rows) it
trains the card's network (512 units, dropout 0.75, RMSprop 1e-4, batches of 64) on the
training split for the same budget of seconds, counting only training steps (batch
gathering included), and reports:

- targets/s: rows the loss was computed on, per second (windows/s x 1 or x 50);
- windows/s: sequences of 50 rows through the network, per second;
- the validation MSE of the last position of every 50-row validation window (the card's
  task, the same figure in both modes) at the start and every ``--eval-every`` seconds;
  evaluations are not counted in the budget.

Both modes use the same split, seed and initial weights, in one process, and take turns
(``--eval-every`` seconds each) so that other load on the machine slows both alike. Use
``KERAS_BACKEND=jax`` for the JAX backend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from models import build_model, compile_model  # noqa: E402
from note_matrix.training.devices import describe_device  # noqa: E402
from note_matrix.representations import NoteMatrix  # noqa: E402
from note_matrix.config import TrainConfig  # noqa: E402
from note_matrix.run_data import prepare  # noqa: E402
from note_matrix.training import window_batches  # noqa: E402
from note_matrix.training.windows import WindowBatches  # noqa: E402

EVALUATION_BATCH_SIZE = 256


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="pop", help="(default: %(default)s)")
    parser.add_argument("--data-dir", default="data", help="(default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=300.0, help="training budget per mode (default: %(default)s)")
    parser.add_argument("--eval-every", type=float, default=60.0,
                        help="seconds of training between validation MSE measurements (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="targets/s only: 15 s per mode, no validation (overrides --seconds)")
    parser.add_argument("--modes", default="last,all", help="comma-separated, run in this order (default: %(default)s)")
    parser.add_argument("--units", type=int, default=512, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    return parser.parse_args(argv)


def validation_last_mse(model: keras.Model, validation: WindowBatches) -> float:
    """MSE of the prediction after each whole window, over every validation window."""
    index = validation.index
    errors = []
    for first in range(0, len(index), EVALUATION_BATCH_SIZE):
        x, y = index.batch(np.arange(first, min(first + EVALUATION_BATCH_SIZE, len(index))))
        prediction = keras.ops.convert_to_numpy(model.predict_on_batch(x))
        if prediction.ndim == 3:
            prediction = prediction[:, -1]
        errors.append(np.mean((prediction - y) ** 2, axis=-1))
    return float(np.mean(np.concatenate(errors)))


class ModeRun:
    """One mode's model and batches, trained in slices of seconds (only training steps counted)."""

    def __init__(self, config: TrainConfig, data):
        keras.utils.set_random_seed(config.seed)  # the same initial weights in both modes
        self.targets = config.model.targets
        self.batches, self.validation = window_batches(config, data)
        representation = data.representation
        head = representation.head(config.model.head, config.model.mixtures)
        self.model = build_model(config.model, representation.inputs(), head)
        compile_model(self.model, config.model, head, representation.metrics(config.model.head, head))
        for warm_up in (0, len(self.batches) - 1):  # traces the step for full and short batches: not counted
            self.model.train_on_batch(*self.batches[warm_up])
        self.seconds, self.windows, self.steps, self.epoch, self.position = 0.0, 0, 0, 0, 0
        self.loss = float("nan")
        self.curve: list[tuple[float, float]] = []

    def train_for(self, seconds: float) -> None:
        until = self.seconds + seconds
        while self.seconds < until:
            started = time.perf_counter()
            x, y = self.batches[self.position]
            logs = self.model.train_on_batch(x, y, return_dict=True)
            self.loss = float(logs["loss"])  # waits for the step to finish
            self.seconds += time.perf_counter() - started
            self.windows, self.steps, self.position = self.windows + len(x), self.steps + 1, self.position + 1
            if self.position == len(self.batches):
                self.epoch, self.position = self.epoch + 1, 0
                self.batches.set_epoch(self.epoch)

    def evaluate(self) -> float:
        self.curve.append((round(self.seconds, 1), validation_last_mse(self.model, self.validation)))
        return self.curve[-1][1]

    def result(self) -> dict:
        return {
            "targets": self.targets,
            "seconds": round(self.seconds, 2),
            "steps": self.steps,
            "epochs": round(self.epoch + self.position / len(self.batches), 2),
            "windows_per_second": self.windows / self.seconds,
            "targets_per_second": self.windows * self.batches.targets_per_window() / self.seconds,
            "final_train_loss": self.loss,
            "validation_last_mse": self.curve,
        }


def main(argv=None) -> int:
    args = parse_args(argv)
    seconds, eval_every = (15.0, None) if args.quick else (args.seconds, args.eval_every)
    base = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, batch_size=args.batch_size, seed=args.seed)
    base = base.with_changes({"model.units": args.units})
    data = prepare(base, NoteMatrix(), progress=False)
    print(f"{args.dataset}: {len(data.split['train'])} training files, {len(data.split['validation'])} validation "
          f"files; {args.units} units, batch {args.batch_size}; Keras {keras.__version__}, "
          f"backend {keras.backend.backend()}, {describe_device()}; {seconds:g} s of training per mode", flush=True)
    runs = [ModeRun(base.with_changes({"model.targets": mode}), data) for mode in args.modes.split(",")]
    slice_seconds = eval_every or seconds
    if eval_every:
        for run in runs:
            run.evaluate()
    # The modes take turns, a slice each, so that a change in the machine's load hits both alike.
    while any(run.seconds < seconds for run in runs):
        for run in runs:
            run.train_for(min(slice_seconds, seconds - run.seconds))
            if eval_every:
                print(f"  {run.targets:>4}: {run.seconds:6.1f} s, {run.steps} steps, "
                      f"validation last-position MSE {run.evaluate():.5f}", flush=True)
    results = [run.result() for run in runs]
    for result in results:
        line = (f"{result['targets']:>4}: {result['targets_per_second']:9.0f} targets/s, "
                f"{result['windows_per_second']:6.1f} windows/s, {result['steps']} steps ({result['epochs']} epochs) "
                f"in {result['seconds']} s")
        if eval_every:
            line += f", validation last-position MSE {result['validation_last_mse'][-1][1]:.5f}"
        print(line, flush=True)
    by_mode = {result["targets"]: result for result in results}
    if {"all", "last"} <= by_mode.keys():
        ratio = by_mode["all"]["targets_per_second"] / by_mode["last"]["targets_per_second"]
        line = f"all / last: {ratio:.1f}x the targets per second"
        if eval_every:
            final = {mode: by_mode[mode]["validation_last_mse"][-1][1] for mode in ("all", "last")}
            line += f"; validation last-position MSE after {seconds:g} s: all {final['all']:.5f}, " \
                    f"last {final['last']:.5f}"
        print(line)
    if args.json:
        summary = {"backend": keras.backend.backend(), "device": describe_device(), "results": results}
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Generation speed of the card's 512-unit model: python benchmarks/generation.py

Prints rows per second, all measured in this one run, for

- the naive loop of our peers (Classical-Piano-Composer and the like): ``model.predict``
  on the 50-row window for every new row (``--predict-rows`` rows only, it is slow);
- the card's window method as ``generate.py --method window`` runs it:
  ``model.predict_on_batch`` on the window per new row (``generation.generate_window``),
  which skips ``predict``'s per-call set-up (a few hundred rows only);
- carried-state generation (``engine.CarriedStateGenerator``), at batch 1 and 32;
- a plain NumPy loop of the same LSTM step, head and validity rule (the model's weights,
  ``NoteMatrix.valid_row``), at batch 1 and 32, timed in a fresh process: what an uncompiled stepper
  reaches;

their ratios, and how the carried-state time grows with length. Untrained weights (speed
does not depend on them, as long as the state stays clear of denormal floats: see
``main``). Rates are the best of ``--repeats`` timed calls after one
warm-up call (which compiles); the compile time is printed separately. The machine's
load average is printed too: other processes on a 2-core machine move these figures.

NumPy's BLAS runs single-threaded here (``--blas-threads``, default 1): a 512 x 2048
matrix-vector product is too small to gain from a second thread, and on a busy 2-core
machine OpenBLAS' spinning threads slow the loop down up to 20x, which would flatter
the compiled engine. The BLAS thread variables must be set before NumPy loads, so the
arguments are parsed first and everything else is imported in ``main``.

    KERAS_BACKEND=jax python benchmarks/generation.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WINDOW_LENGTH = 50
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=512, help="LSTM units (default: the card's %(default)s)")
    parser.add_argument("--predict-rows", type=int, default=50,
                        help="rows for the model.predict loop (default: %(default)s)")
    parser.add_argument("--window-rows", type=int, default=200, help="rows for the window method (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=1000, help="rows per timed call otherwise (default: %(default)s)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 1000, 4000],
                        help="lengths for the growth table (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure (default: %(default)s)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="threads of NumPy's BLAS, for the NumPy loop (default: %(default)s)")
    parser.add_argument("--numpy-child", help=argparse.SUPPRESS)  # internal: time the NumPy loop, print JSON
    return parser.parse_args(argv)


def best_rate(function, rows: int, repeats: int) -> tuple[float, float]:
    """``(best rows/s, best seconds)`` over ``repeats`` calls of ``function()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return rows / best, best


def predict_loop(model, primer, length: int, representation):
    """The peers' loop: ``model.predict`` on the last 50 rows for every new row, batch 1."""
    import numpy as np

    
    window = primer[:, -WINDOW_LENGTH:]
    for _ in range(length):
        prediction = model.predict(window, verbose=0)
        row = representation.valid_row(prediction[:, -1] if prediction.ndim == 3 else prediction)
        window = np.concatenate([window[:, 1:], row[:, None]], axis=1)
    return window


WEIGHT_NAMES = ("kernel", "recurrent_kernel", "bias", "dense_kernel", "dense_bias")


def model_weights(model) -> dict:
    """The card model's LSTM and Dense weights as NumPy arrays, by ``WEIGHT_NAMES``."""
    return dict(zip(WEIGHT_NAMES, model.get_layer("lstm").get_weights() + model.get_layer("dense").get_weights()))


def numpy_lstm_loop(weights: dict, primers, length: int, representation):
    """The card model's step in plain NumPy: prime on ``primers`` ``(N, k, 3)``, then ``length`` valid rows."""
    import numpy as np

    
    kernel, recurrent_kernel, bias, dense_kernel, dense_bias = (weights[name] for name in WEIGHT_NAMES)
    batch, units = primers.shape[0], recurrent_kernel.shape[0]
    h = np.zeros((batch, units), np.float32)
    c = np.zeros((batch, units), np.float32)

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    def step(x, h, c):
        z = x @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c

    for t in range(primers.shape[1]):
        h, c = step(primers[:, t], h, c)
    rows = np.empty((batch, length, 3), np.float32)
    for t in range(length):
        row = representation.valid_row(h @ dense_kernel + dense_bias)
        rows[:, t] = row
        h, c = step(row, h, c)
    return rows


def numpy_rates(weights: dict, primers, rows: int, repeats: int, blas_threads: int) -> dict[int, float]:
    """Rows/s of the NumPy loop at batch 1 and 32, timed in a fresh process (see ``numpy_child``)."""
    import json
    import subprocess
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.npz"
        np.savez(path, primers=primers, **weights)
        output = subprocess.run([sys.executable, __file__, "--numpy-child", str(path), "--rows", str(rows),
                                 "--repeats", str(repeats), "--blas-threads", str(blas_threads)],
                                check=True, capture_output=True, text=True).stdout
    return {int(batch): rate for batch, rate in json.loads(output.splitlines()[-1]).items()}


def numpy_child(args) -> int:
    """Time the NumPy loop in a process where no compiled Keras code has run, so that the
    backend's thread pools cannot compete with it for the cores of a small machine."""
    import json

    import numpy as np

    from note_matrix.representations import NoteMatrix

    arrays = np.load(args.numpy_child, allow_pickle=False)
    weights = {name: arrays[name] for name in WEIGHT_NAMES}
    primers, representation = arrays["primers"], NoteMatrix()
    rates = {}
    for batch in (1, 32):
        rows = args.rows if batch == 1 else max(args.rows // 4, 100)
        numpy_lstm_loop(weights, primers[:batch], 10, representation)  # warm-up
        rates[batch] = best_rate(lambda: numpy_lstm_loop(weights, primers[:batch], rows, representation),  # noqa: B023
                                 batch * rows, args.repeats)[0]
    print(json.dumps(rates))
    return 0


def untrained_card_model(units: int):
    """The card's model (``units`` LSTM units) with untrained weights, and 32 random valid primers ``(32, 50, 3)``.

    The output bias is set to 0.5: with a zero bias the untrained model predicts rows
    that clip to all zeros, its state then decays into denormal floats, and NumPy (no
    flush-to-zero) computes on those 40x slower, while XLA flushes them.
    """
    import keras
    import numpy as np

    from models import ModelConfig, build_model
    from note_matrix.representations import NoteMatrix

    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(units=units))
    dense = model.get_layer("dense")
    dense_kernel, dense_bias = dense.get_weights()
    dense.set_weights([dense_kernel, np.full_like(dense_bias, 0.5)])
    rng = np.random.default_rng(0)
    return model, NoteMatrix().valid_row(rng.random((32, WINDOW_LENGTH, 3)))


def carried_state_rates(generator, primers, rows: int, repeats: int) -> dict[int, tuple[float, float]]:
    """``{batch: (best rows/s, seconds of the first call, which compiles)}`` of carried-state
    generation of ``rows`` rows after the first 1 and 32 ``primers``."""
    results = {}
    for batch in (1, 32):
        batch_primers = primers[:batch]
        start = time.perf_counter()
        generator.generate(batch_primers, rows)
        compile_seconds = time.perf_counter() - start
        carried, _ = best_rate(lambda: generator.generate(batch_primers, rows), batch * rows, repeats)  # noqa: B023
        results[batch] = carried, compile_seconds
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = str(args.blas_threads)
    if args.numpy_child:
        return numpy_child(args)
    import keras
    import numpy as np

    from note_matrix.generation import carried_state_generator, generate_window
    from note_matrix.representations import NoteMatrix
    from note_matrix.training.devices import describe_device

    representation = NoteMatrix()
    head = representation.head("regression", 5)
    model, primers = untrained_card_model(args.units)
    one = primers[:1]

    print(f"backend {keras.backend.backend()} (Keras {keras.__version__}), {describe_device()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, NumPy BLAS threads {args.blas_threads}")
    print(f"model: LSTM({args.units}) -> Dropout -> Dense(3), window {WINDOW_LENGTH}, untrained weights")

    # The peers' loop: one model.predict per row.
    predict_loop(model, one, 2, representation)  # warm-up (builds the predict function)
    peers, _ = best_rate(lambda: predict_loop(model, one, args.predict_rows, representation), args.predict_rows, 2)

    # The card's window method: one predict_on_batch per row.
    generate_window(model, one, 2, representation, head, progress=False)  # warm-up (builds the predict function)
    window_rate, _ = best_rate(lambda: generate_window(model, one, args.window_rows, representation, head, progress=False),
                               args.window_rows, 2)

    # Where the window method's time goes: one predict_on_batch on a 1-row and on a 50-row window.
    calls = {}
    for steps in (1, WINDOW_LENGTH):
        window = one[:, :steps]
        model.predict_on_batch(window)  # warm-up (a new shape traces again)
        calls[steps] = best_rate(lambda: model.predict_on_batch(window), 1, args.repeats)[1]  # noqa: B023
    step_seconds = (calls[WINDOW_LENGTH] - calls[1]) / (WINDOW_LENGTH - 1)
    overhead_seconds = calls[1] - step_seconds

    generator = carried_state_generator(model, representation, head)
    results = carried_state_rates(generator, primers, args.rows, args.repeats)
    weights = model_weights(model)
    plain_rates = numpy_rates(weights, primers, args.rows, args.repeats, args.blas_threads)
    results = {batch: (carried, plain_rates[batch], compile_seconds)
               for batch, (carried, compile_seconds) in results.items()}

    # The engine and the NumPy loop compute the same rows (the first ones, before rounding can part them).
    check = 50
    difference = np.abs(generator.generate(primers[:4], check)
                        - numpy_lstm_loop(weights, primers[:4], check, representation)).max()

    print()
    print(f"{'method':44s} {'rows/s':>10s}")
    print(f"{'naive loop, model.predict per row, batch 1':44s} {peers:10,.0f}   ({args.predict_rows} rows)")
    print(f"{'window method, predict_on_batch per row':44s} {window_rate:10,.0f}   ({args.window_rows} rows)")
    for batch, (carried, plain, compile_seconds) in results.items():
        print(f"{f'carried state, batch {batch}':44s} {carried:10,.0f}   "
              f"(first call, compiling: {compile_seconds:.2f} s)")
        print(f"{f'NumPy loop of the same step, batch {batch}':44s} {plain:10,.0f}   (in a fresh process)")
    print()
    carried_1, plain_1, _ = results[1]
    carried_32, plain_32, _ = results[32]
    print(f"carried state / naive model.predict loop:   {carried_1 / peers:8.1f}x   (goal >= 100x)")
    print(f"carried state / window method, batch 1:     {carried_1 / window_rate:8.1f}x")
    print(f"carried state / NumPy loop, batch 1:        {carried_1 / plain_1:8.2f}x   (goal >= 0.5x)")
    print(f"carried state / NumPy loop, batch 32:       {carried_32 / plain_32:8.2f}x   (goal >= 0.5x)")
    print(f"carried state vs NumPy loop, first {check} rows of 4 pieces: max difference {difference:.1e}")
    print()
    print(f"window method, one row = one predict_on_batch of {WINDOW_LENGTH} rows, {calls[WINDOW_LENGTH] * 1e3:.2f} ms"
          f" = Keras call overhead {overhead_seconds * 1e3:.2f} ms + {WINDOW_LENGTH} LSTM steps"
          f" x {step_seconds * 1e6:.0f} us")
    print(f"carried state, one row = one LSTM step + head + validity, {1e6 / carried_1:.0f} us: the ratio is about"
          f" {WINDOW_LENGTH} x {step_seconds * carried_1:.2f} (steps) + {overhead_seconds * carried_1:.0f} (overhead)")

    print()
    print(f"{'length':>8s} {'seconds':>9s} {'rows/s':>10s}   carried state, batch 1 (prime 50 rows + length)")
    for length in args.lengths:
        generator.generate(one, length)  # compiles for this length's chunk size
        rate, seconds = best_rate(lambda: generator.generate(one, length), length, args.repeats)  # noqa: B023
        print(f"{length:8,d} {seconds:9.3f} {rate:10,.0f}")
    print(f"\nload average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Train the card's LSTM on a MIDI dataset: python train.py --dataset pop

Writes logs/<run>/ (config.json, model.keras, split.json, skipped.txt, history.json and
TensorBoard events); watch it with: tensorboard --logdir logs
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter

from models import CELLS, ModelConfig  # noqa: E402
from note_matrix.errors import NoteMatrixError  # noqa: E402
from note_matrix.training import TrainConfig, train  # noqa: E402

MODEL_DEFAULTS = ModelConfig()
TRAIN_DEFAULTS = TrainConfig()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=TRAIN_DEFAULTS.dataset,
                      help="pop, nottingham, or a folder of .mid/.midi files (default: %(default)s)")
    data.add_argument("--data-dir", default=TRAIN_DEFAULTS.data_dir,
                      help="downloads and the encoding cache (default: %(default)s)")
    data.add_argument("--window", type=int, default=TRAIN_DEFAULTS.window_length,
                      help="rows the model sees to predict the next one (default: %(default)s)")
    data.add_argument("--validation-fraction", type=float, default=TRAIN_DEFAULTS.validation_fraction,
                      help="share of files held out for validation (default: %(default)s)")
    data.add_argument("--test-fraction", type=float, default=TRAIN_DEFAULTS.test_fraction,
                      help="share of files held out for testing (default: %(default)s)")
    data.add_argument("--max-files", type=int, default=None, help="use only the first N files, for a quick try")
    model = parser.add_argument_group("model")
    model.add_argument("--cell", choices=sorted(CELLS), default=MODEL_DEFAULTS.cell, help="(default: %(default)s)")
    model.add_argument("--units", type=int, default=MODEL_DEFAULTS.units, help="(default: %(default)s)")
    model.add_argument("--layers", type=int, default=MODEL_DEFAULTS.layers, help="(default: %(default)s)")
    model.add_argument("--dropout", type=float, default=MODEL_DEFAULTS.dropout_rate, help="(default: %(default)s)")
    fit = parser.add_argument_group("training")
    fit.add_argument("--learning-rate", type=float, default=MODEL_DEFAULTS.learning_rate,
                     help="RMSprop learning rate (default: %(default)s)")
    fit.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS.batch_size, help="(default: %(default)s)")
    fit.add_argument("--epochs", type=int, default=TRAIN_DEFAULTS.epochs, help="(default: %(default)s)")
    fit.add_argument("--patience", type=int, default=None,
                     help="stop after N epochs without a better validation loss (default: never)")
    fit.add_argument("--seed", type=int, default=TRAIN_DEFAULTS.seed,
                     help="random seed of the split, initialisation and shuffling (default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--logdir", default=TRAIN_DEFAULTS.logdir, help="(default: %(default)s)")
    out.add_argument("--run-name", default=None, help="run folder name (default: a UTC timestamp)")
    out.add_argument("--histogram-freq", type=int, default=TRAIN_DEFAULTS.histogram_freq,
                     help="write TensorBoard histograms every N epochs (default: %(default)s)")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    model = ModelConfig(cell=args.cell, units=args.units, layers=args.layers,
                        dropout_rate=args.dropout, learning_rate=args.learning_rate)
    return TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, logdir=args.logdir, run_name=args.run_name,
        window_length=args.window, batch_size=args.batch_size, epochs=args.epochs, patience=args.patience,
        validation_fraction=args.validation_fraction, test_fraction=args.test_fraction, seed=args.seed,
        max_files=args.max_files, histogram_freq=args.histogram_freq, model=model,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    try:
        result = train(config, verbose=0 if args.quiet else 1)
    except NoteMatrixError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    print(f"TensorBoard: tensorboard --logdir {config.logdir}")
    print(f"Generate:    python generate.py --model {result.run_dir} --seed <song.mid>")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Train the card's LSTM on a MIDI dataset: python train.py --dataset pop

Writes logs/<run>/ (config.json, model.keras, split.json, skipped.txt, history.json, a
checkpoint every epoch and TensorBoard events); watch it with: tensorboard --logdir logs

Stopped (Ctrl-C, killed, crashed)? Continue where it stopped: python train.py --resume logs/<run>
(--epochs N with --resume trains longer, --distribute may change; other settings are the run's own.)

--targets all (the default) learns the next row at every step of each window; --targets last
only the row after the window, as the card. --head regression (the default) is the card's
mean squared error on the row; --head categorical predicts the pitch as one of 128 notes
(cross-entropy) and regresses velocity and time; --head mdn adds a mixture density over
velocity and time (--mixtures components). --distribute data-parallel trains on every local
device under JAX or TensorFlow (under JAX also on several hosts: JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID); --distribute mirrored on every local GPU, --distribute
multiworker on the hosts named in TF_CONFIG (both TensorFlow backend only).

The music is best with --representation note_events (every field categorical, its own
recipe: Adam, 256 units, window 100; any flag given overrides the recipe).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter

from models import CELL_NAMES, OPTIMIZERS, TARGETS  # noqa: E402
from models.config import LR_SCHEDULES  # noqa: E402
from note_matrix import representations  # noqa: E402
from note_matrix.config import BATCHES, DISTRIBUTE, TrainConfig  # noqa: E402
from note_matrix.errors import NoteMatrixError  # noqa: E402
from note_matrix.startup import import_keras  # noqa: E402

TRAIN_DEFAULTS = TrainConfig()
MODEL_DEFAULTS = TRAIN_DEFAULTS.model

# argparse destination -> TrainConfig field ("model.<field>" for the ModelConfig's)
CONFIG_FIELDS = {
    "dataset": "dataset", "data_dir": "data_dir", "representation": "representation", "window": "window_length",
    "frame": "frame", "chord_symbols": "chord_symbols", "validation_fraction": "validation_fraction",
    "validation_stride": "validation_stride", "test_fraction": "test_fraction", "max_files": "max_files",
    "split_from": "split_from", "transpose": "transpose", "workers": "workers",
    "cell": "model.cell", "units": "model.units", "layers": "model.layers", "dropout": "model.dropout_rate",
    "targets": "model.targets", "head": "model.head", "mixtures": "model.mixtures",
    "output_units": "model.output_units", "learning_rate": "model.learning_rate",
    "optimizer": "model.optimizer", "clipnorm": "model.clipnorm", "lr_schedule": "model.lr_schedule",
    "lr_min": "model.lr_min", "lr_max": "model.lr_max", "cycle_steps": "model.cycle_steps", "batches": "batches",
    "batch_size": "batch_size",
    "epochs": "epochs", "patience": "patience", "seed": "seed", "distribute": "distribute",
    "logdir": "logdir", "run_name": "run_name", "histogram_freq": "histogram_freq",
    "sample_every": "sample_every",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=TRAIN_DEFAULTS.dataset,
                      help="pop, nottingham, a folder of .mid/.midi files, or a polyphonic benchmark with "
                           "--representation piano_roll or roll_tokens: jsb, nottingham-poly, musedata, "
                           "piano-midi; with "
                           "--representation abc_chars, nottingham-abc or a folder of .abc files, split into tunes "
                           "(default: %(default)s)")
    data.add_argument("--data-dir", default=TRAIN_DEFAULTS.data_dir,
                      help="downloads and the encoding cache (default: %(default)s)")
    data.add_argument("--representation", choices=representations.names(), default=TRAIN_DEFAULTS.representation,
                      help="how a file becomes steps: note_matrix, the card's [note, velocity, time] rows; "
                           "note_events, the rows as categorical fields, with its own training recipe (the "
                           "README's Note events); pitch_sequence, the melody's pitches as tokens; piano_roll, "
                           "frames of 88 keys; roll_tokens, each frame's keys as tokens, ascending, then an end; "
                           "abc_chars, "
                           "ABC tunes character by character, with its own recipe (default: %(default)s)")
    data.add_argument("--frame", type=float, default=None,
                      help="piano_roll, roll_tokens and chord_tokens: beats per frame of a MIDI file (default: "
                           "0.5, an eighth note, for piano_roll and roll_tokens; 0.25 for chord_tokens; a "
                           "benchmark's frame is its own)")
    data.add_argument("--chord-symbols", action="store_true",
                      help="chord_tokens only: one symbol per note or chord, the training files' 500 most frequent "
                           "chords and <unk> for the rest (default: each pitch a token, then <next>)")
    data.add_argument("--window", type=int, default=TRAIN_DEFAULTS.window_length,
                      help="rows the model sees to predict the next one (default: %(default)s)")
    data.add_argument("--validation-fraction", type=float, default=TRAIN_DEFAULTS.validation_fraction,
                      help="share of files held out for validation (default: %(default)s)")
    data.add_argument("--validation-stride", type=int, default=TRAIN_DEFAULTS.validation_stride,
                      help="validate on every N-th window of each file (default: %(default)s, every window)")
    data.add_argument("--test-fraction", type=float, default=TRAIN_DEFAULTS.test_fraction,
                      help="share of files held out for testing (default: %(default)s)")
    data.add_argument("--max-files", type=int, default=None,
                      help="use only the first N files (a benchmark: the first N pieces of each split; ABC: the "
                           "first N tunes), for a quick try")
    data.add_argument("--split-from", default=None, metavar="RUN",
                      help="train, validate and test on the files of RUN's split (its split.json), those too short "
                           "for this --window left out, so runs of different windows are compared on the same "
                           "files (default: split this run's usable files by --seed)")
    data.add_argument("--transpose", type=int, default=TRAIN_DEFAULTS.transpose, metavar="N",
                      help="piano_roll, roll_tokens: shift each training window by up to N semitones either "
                           "way, drawn per window (never a sounding key off the keyboard; validation as it is; "
                           "default: %(default)s, none)")
    data.add_argument("--workers", type=int, default=TRAIN_DEFAULTS.workers,
                      help="processes that encode the MIDI files (0: one per CPU core; pays off for "
                           "thousands of new files; default: %(default)s)")
    model = parser.add_argument_group("model")
    model.add_argument("--cell", choices=sorted(CELL_NAMES), default=MODEL_DEFAULTS.cell, help="(default: %(default)s)")
    model.add_argument("--units", type=int, default=MODEL_DEFAULTS.units, help="(default: %(default)s)")
    model.add_argument("--layers", type=int, default=MODEL_DEFAULTS.layers, help="(default: %(default)s)")
    model.add_argument("--dropout", type=float, default=MODEL_DEFAULTS.dropout_rate, help="(default: %(default)s)")
    model.add_argument("--head", default=None,
                       help="the representation's output fields. note_matrix: regression (its default), the card's "
                            "MSE on [note, velocity, time]; categorical, the pitch as one of 128 notes "
                            "(cross-entropy), velocity and time regressed; mdn, categorical pitch and a mixture "
                            "density over velocity and time. pitch_sequence, roll_tokens: categorical. piano_roll: "
                            "bernoulli, each key on or off independently; nade, RNN-NADE's output, the keys drawn one "
                            "after another; biaxial, Johnson's biaxial LSTM in place of the LSTM (--units along "
                            "time per key, --output-units across keys; --cell, --layers and --dropout unused) "
                            "(default: the representation's first)")
    model.add_argument("--mixtures", type=int, default=MODEL_DEFAULTS.mixtures,
                       help="mixture components of the mdn head (default: %(default)s)")
    model.add_argument("--output-units", type=int, default=MODEL_DEFAULTS.output_units,
                       help="units of a piano roll's frame output: the nade head's NADE hidden layer, the biaxial "
                            "head's LSTM across keys (default: %(default)s)")
    fit = parser.add_argument_group("training")
    fit.add_argument("--targets", choices=TARGETS, default=MODEL_DEFAULTS.targets,
                     help="all: the next row at every step of non-overlapping windows; last: only the row after "
                          "each sliding window, as the card (default: %(default)s)")
    fit.add_argument("--optimizer", choices=OPTIMIZERS, default=MODEL_DEFAULTS.optimizer,
                     help="(default: %(default)s, the card's)")
    fit.add_argument("--learning-rate", type=float, default=MODEL_DEFAULTS.learning_rate,
                     help="the constant rate (default: %(default)s)")
    fit.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=MODEL_DEFAULTS.lr_schedule,
                     help="constant: --learning-rate throughout; cyclic: Smith 2017's triangle, --lr-min up to "
                          "--lr-max and back every 2 x --cycle-steps updates (default: %(default)s)")
    fit.add_argument("--lr-min", type=float, default=None, help="cyclic only: the lowest rate (needed)")
    fit.add_argument("--lr-max", type=float, default=None, help="cyclic only: the highest rate (needed)")
    fit.add_argument("--cycle-steps", type=int, default=None,
                     help="cyclic only: updates from --lr-min to --lr-max, half a cycle (Smith's step size; "
                          "default: 2000)")
    fit.add_argument("--batches", choices=BATCHES, default=TRAIN_DEFAULTS.batches,
                     help="shuffled: every training window once per epoch, in an order drawn per (seed, epoch); "
                          "random: as many windows at random positions, with replacement, as seed 004; "
                          "stream: truncated back-propagation, the training files (tunes) joined in an order drawn "
                          "per (seed, epoch) and cut into --batch-size parallel streams, read --window steps at a "
                          "time with the recurrent state carried from window to window and reset each epoch; "
                          "validation reads the validation files the same way (token representations, --targets "
                          "all, one device; abc_chars' recipe) (default: %(default)s)")
    fit.add_argument("--clipnorm", type=float, default=MODEL_DEFAULTS.clipnorm,
                     help="clip each gradient to this norm (default: never, the card)")
    fit.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS.batch_size,
                     help="windows per update, split among the devices when distributed (under JAX a "
                          "multiple of their number; default: %(default)s)")
    fit.add_argument("--epochs", type=int, default=TRAIN_DEFAULTS.epochs, help="(default: %(default)s)")
    fit.add_argument("--patience", type=int, default=None,
                     help="stop after N epochs without a lower monitored validation value: the last position's "
                          "MSE (regression head) or loss (other heads); with --batches stream, the loss over the "
                          "whole validation stream; the best epoch's model is the one kept (default: never)")
    fit.add_argument("--seed", type=int, default=TRAIN_DEFAULTS.seed,
                     help="random seed of the split, initialisation and shuffling (default: %(default)s)")
    fit.add_argument("--distribute", choices=DISTRIBUTE, default=TRAIN_DEFAULTS.distribute,
                     help="none: one device; data-parallel: every local device (JAX: keras.distribution, "
                          "several hosts with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID; "
                          "TensorFlow: as mirrored); mirrored: every local GPU; multiworker: the hosts of "
                          "TF_CONFIG (both TensorFlow; default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--logdir", default=TRAIN_DEFAULTS.logdir, help="(default: %(default)s)")
    out.add_argument("--run-name", default=None, help="run folder name (default: a UTC timestamp)")
    out.add_argument("--sample-every", type=int, default=TRAIN_DEFAULTS.sample_every,
                     help="generate a short piece from a validation seed every N epochs and after the last, "
                          "to TensorBoard as a piano roll and audio (0: never; default: %(default)s)")
    out.add_argument("--histogram-freq", type=int, default=TRAIN_DEFAULTS.histogram_freq,
                     help="write TensorBoard histograms every N epochs (default: %(default)s)")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    out.add_argument("--resume", metavar="RUN", default=None,
                     help="continue the stopped run in folder RUN (e.g. logs/<run>) with its own settings; "
                          "--epochs may be raised to train longer")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = given_flags(argv).keys()
    if args.resume is not None and {"logdir", "run_name"} & given:
        parser.error("--resume continues the run in its own folder; --logdir and --run-name do not apply")
    if args.lr_schedule == "cyclic" and "learning_rate" in given:
        parser.error("--learning-rate is the constant schedule's rate; --lr-schedule cyclic goes from --lr-min "
                     "to --lr-max")
    return args


def given_flags(argv=None) -> dict:
    """Only the settings written on the command line: a second parse with defaults suppressed."""
    parser = build_parser()
    for action in parser._actions:  # argparse has no public list of its arguments
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def config_from_args(args: argparse.Namespace, argv=None) -> TrainConfig:
    """The card's settings, then the representation's own training recipe (``recipe``: none
    for the card's note matrix), then the flags given on the command line."""
    given = given_flags(argv)
    chosen = representations.representation_class(args.representation)
    changes = {field: getattr(args, dest) for dest, field in CONFIG_FIELDS.items()}
    changes.update({field: value for field, value in chosen.recipe.items()
                    if not any(CONFIG_FIELDS.get(dest) == field for dest in given)})
    if args.head is None:
        changes["model.head"] = chosen.heads[0]
    return TrainConfig().with_changes(changes)


def changes_from_flags(argv=None) -> dict:
    """The settings written next to --resume, as ``TrainConfig.with_changes`` takes them."""
    return {CONFIG_FIELDS[dest]: value for dest, value in given_flags(argv).items() if dest in CONFIG_FIELDS}


def main(argv=None) -> int:
    args = parse_args(argv)
    verbose = 0 if args.quiet else 1
    import_keras()  # after the flags: a mistyped flag answers at once, and nothing comes before an error line
    from note_matrix.training import resume, resume_config, train
    from note_matrix.training.distribute import check_distribution

    try:
        if args.resume is None:
            config = config_from_args(args, argv)
        else:
            config = resume_config(args.resume, changes_from_flags(argv))
        check_distribution(config.distribute)
    except (ValueError, NoteMatrixError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    try:
        result = train(config, verbose=verbose) if args.resume is None else resume(args.resume, config, verbose=verbose)
    except NoteMatrixError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntrain.py: interrupted; every finished epoch is saved, "
              "continue with: python train.py --resume <the run folder above>", file=sys.stderr)
        return 130
    if result.kept:  # not on a non-chief worker, whose folder was temporary
        print(f"TensorBoard: tensorboard --logdir {result.run_dir.parent}")
        seed = " --seed <song.mid>" if representations.primed_by_seed(config.representation) else ""
        print(f"Generate:    python generate.py --model {result.run_dir}{seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""How good is a trained run? python evaluate.py --model logs/<run>

Scores the run's model on its test split (the files split.json holds out) beside three
baselines fitted on its training files (repeat the previous row, the training mean, a
first-order Markov chain over pitches): MSE per column and overall, pitch accuracy and
negative log-likelihood per row. Prints a table and saves it in logs/<run>/evaluation.json.

--split validation scores the validation files instead (where settings are chosen; saved
under "validation"). --score-from N scores only the rows at index N or later of each file
longer than N: runs of different --window, trained with train.py --split-from on the same
files, are then compared on the same rows (N: the largest window). A piano-roll run (the polyphonic benchmarks: --dataset jsb, ...) is
scored as the benchmarks are, by its frame-level NLL on every frame of its validation and
test pieces beside the frame baselines and the published figures (saved under "frame_nll");
with no test split (the mirror's copies withhold it), on validation only, and said so. --generated DIR compares the music statistics of the MIDI files in DIR (e.g. the output of
generate.py) with the run's training files instead, and saves them in the same file under
"generated". --json PATH saves to PATH instead of the run folder.

An abc_chars run (folk tunes in ABC) is scored by its NLL in nats per character on the
split (as training's val_loss measures it), then --tunes tunes are generated at each of
--temperatures (seeded by --random-seed): the playable rate, the music statistics of the
playable tunes as MIDI beside the split's real tunes, MIDI files mido or pretty_midi
cannot open, and the copy check (the longest run of bars copied verbatim from one
training tune, flagged above 2). Saved under the split's name. --well-formed draws the
tunes as generate.py --well-formed does (each header line and bar checked as it is drawn;
saved under "<split>_well_formed").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter

from note_matrix import runs  # noqa: E402
from note_matrix.arguments import add_run_arguments, bounded_int, temperatures  # noqa: E402
from note_matrix.errors import NoteMatrixError, RunError  # noqa: E402

DEFAULT_TEMPERATURES = "0.5,0.7,1.0"  # an abc_chars run's (note_matrix.evaluation.tunes)
MAX_TUNES = 10_000


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--generated", metavar="DIR", default=None,
                        help="compare the .mid/.midi files in DIR (searched recursively) with the training files")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the results to PATH (default: evaluation.json in the run folder, "
                             "keeping its other entries)")
    parser.add_argument("--dataset", default=None,
                        help="where the run's dataset is now, if its folder moved (default: the run's own)")
    parser.add_argument("--data-dir", default=None,
                        help="downloads and the encoding cache (default: the run's own)")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="score on the test files, or on the validation files where settings are chosen "
                             "(default: %(default)s)")
    parser.add_argument("--score-from", type=bounded_int(1, 10**9), default=None, metavar="N",
                        help="score only the rows at index N or later of each file longer than N, each read after "
                             "the run's window before it: give the largest window to compare runs of different "
                             "windows on the same rows (default: every row after the run's window; runs scored "
                             "row by row only)")
    tunes = parser.add_argument_group("abc_chars runs")
    tunes.add_argument("--temperatures", type=temperatures, default=temperatures(DEFAULT_TEMPERATURES), metavar="T,T",
                       help=f"the sampling temperatures to generate tunes at (default: {DEFAULT_TEMPERATURES})")
    tunes.add_argument("--tunes", type=bounded_int(1, MAX_TUNES), default=100, metavar="N",
                       help="tunes generated per temperature, in one batch (default: %(default)s)")
    tunes.add_argument("--random-seed", type=bounded_int(0, 2**32 - 1), default=0, metavar="N",
                       help="seed of the tunes' random numbers (default: %(default)s)")
    tunes.add_argument("--length", type=bounded_int(1, 100_000), default=None, metavar="N",
                       help="characters per tune at most, if <end> does not come first (default: 1000)")
    tunes.add_argument("--well-formed", action="store_true",
                       help="draw the tunes as generate.py --well-formed does (each header line and bar checked as "
                            "it is drawn, and drawn again when refused); saved under '<split>_well_formed'")
    parser.add_argument("--quiet", action="store_true", help="no progress bar while encoding")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run_dir = runs.find_run(args.model, args.logdir)

        from note_matrix import evaluation, run_data

        data = run_data.open_run(run_dir, dataset=args.dataset, data_dir=args.data_dir)
        if args.score_from is not None and (args.generated is not None or data.representation.reads_rolls
                                            or data.representation.decodes_to == ".abc"):
            raise RunError(f"--score-from: {run_dir} is not scored row by row after a window (a piano roll is "
                           "scored on every frame, ABC by tunes; --generated compares files)")
        evaluation.check_score_from(data.window_length, args.score_from)
        if args.generated is not None:
            key, result = "generated", evaluation.compare_generated(data, args.generated)
            table = evaluation.format_generated(result, run_dir)
        elif data.representation.reads_rolls:  # piano_roll, roll_tokens: the benchmarks' frame-level NLL
            run_data.encode(data, progress=not args.quiet)
            key, result = "frame_nll", evaluation.evaluate_frames(data, runs.load_model(run_dir), split=args.split)
            table = evaluation.format_frames(result, run_dir)
        elif data.representation.decodes_to == ".abc":  # tunes: scored by NLL per character and playability
            evaluation.require_test_files(data, args.split)  # before Keras loads the model
            model = runs.load_model(run_dir)
            run_data.encode(data, progress=not args.quiet)
            key = f"{args.split}_well_formed" if args.well_formed else args.split
            result = evaluation.evaluate_tunes(data, model, split=args.split, temperatures=args.temperatures,
                                               tunes=args.tunes, random_seed=args.random_seed, length=args.length,
                                               well_formed=args.well_formed, progress=not args.quiet)
            table = evaluation.format_tunes(result, run_dir)
        else:
            evaluation.require_test_files(data, args.split)  # before Keras loads the model
            model = runs.load_model(run_dir)
            run_data.encode(data, progress=not args.quiet)
            key, result = args.split, evaluation.evaluate_test(data, model, split=args.split,
                                                                   score_from=args.score_from)
            table = evaluation.format_test(result, run_dir)
        path = Path(args.json) if args.json else run_dir / runs.EVALUATION_FILE
        evaluation.save(path, key, result, merge=args.json is None)
    except NoteMatrixError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"evaluate.py: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(table)
    print(f"\nsaved to {path} ({key!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

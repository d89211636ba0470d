#!/usr/bin/env python
"""Generate music with a trained run: python generate.py --seed song.mid

Primes the model with the seed's first rows (its window length), generates --length
rows and writes a playable MIDI file with the seed's tempo. By default the recurrent
state is carried forward, one compiled step per row (--method carried); --method window
is the card's method, the whole window recomputed for every row. --num-outputs N
generates N pieces in one batch, primed at N evenly spaced places of the seed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter

from note_matrix import runs  # noqa: E402
from note_matrix.errors import NoteMatrixError  # noqa: E402
from note_matrix.primer import read_primer  # noqa: E402
from note_matrix.representation import representation_from_json  # noqa: E402

MAX_LENGTH = 100_000  # rows per piece
MAX_NUM_OUTPUTS = 256  # pieces per run
MAX_TOTAL_ROWS = 1_000_000  # --num-outputs x --length: 12 MB of rows, a few minutes at batch 32
METHODS = ("carried", "window")


def bounded_int(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high:,}")
        return value

    return parse


positive_length = bounded_int(1, MAX_LENGTH)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", required=True, help="MIDI file whose rows prime the model")
    parser.add_argument("--model", default=None, help="run folder (default: the newest run in --logdir)")
    parser.add_argument("--logdir", default="logs", help="where runs are (default: %(default)s)")
    parser.add_argument("--length", type=positive_length, default=500,
                        help=f"rows (note events) to generate per piece, at most {MAX_LENGTH:,} (default: %(default)s)")
    parser.add_argument("--method", choices=METHODS, default="carried",
                        help="carried: one recurrent step per row, state carried forward; window: the card's "
                             "method, the whole window recomputed per row (default: %(default)s)")
    parser.add_argument("--num-outputs", type=bounded_int(1, MAX_NUM_OUTPUTS), default=1, metavar="N",
                        help="pieces to generate in one batch, each primed at another place of the seed "
                             "(default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="output .mid (default: generated.mid in the run folder); with --num-outputs N > 1, "
                             "'{n}' in it is replaced by 1..N, else -1 .. -N go before the suffix")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.num_outputs * args.length > MAX_TOTAL_ROWS:
        parser.error(f"--num-outputs x --length must be at most {MAX_TOTAL_ROWS:,} rows, "
                     f"got {args.num_outputs} x {args.length:,}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run_dir = Path(args.model) if args.model else runs.newest_run(args.logdir)
        config = runs.read_config(run_dir)
        representation = representation_from_json(config["representation"])
        window_length = config["train"]["window_length"]
        primer = read_primer(args.seed, representation, window_length)
        # The whole seed, for N different primers (read_primer keeps the first window only).
        seed = representation.encode(args.seed) if args.num_outputs > 1 else primer.matrix

        from note_matrix import generation  # Keras loads here

        primers, starts = generation.spread_primers(seed, window_length, args.num_outputs)
        distinct = len(set(starts.tolist()))
        if distinct < args.num_outputs:
            print(f"note: {args.seed} has {len(seed)} rows, room for {distinct} different primers of "
                  f"{window_length} rows; {args.num_outputs - distinct} of the {args.num_outputs} pieces repeat "
                  f"a primer (and, without sampling, its piece)")
        model = generation.load_model(run_dir)
        rows = generation.generate_rows(model, primers, args.length, representation, method=args.method,
                                        progress=not args.quiet)
        paths = generation.output_paths(args.out or run_dir / "generated.mid", args.num_outputs)
        written = []
        for path, piece, start in zip(paths, rows, starts):
            notes = generation.write_playable(piece, path, representation, tempo_us_per_beat=primer.tempo_us_per_beat)
            written.append((path, notes, start))
    except NoteMatrixError as error:
        print(f"generate.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"generate.py: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    for path, notes, start in written:
        where = f", primer at row {start}" if args.num_outputs > 1 else ""
        print(f"wrote {path}: {notes} notes from {args.length} generated rows ({run_dir.name}, seed {args.seed}"
              f"{where}, {args.method})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

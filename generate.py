#!/usr/bin/env python
"""Generate music with a trained run: python generate.py --seed song.mid

Primes the model with the seed's first rows (its window length), generates --length
rows and writes a playable MIDI file with the seed's tempo.
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

MAX_LENGTH = 100_000


def positive_length(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_LENGTH:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LENGTH:,}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", required=True, help="MIDI file whose first rows prime the model")
    parser.add_argument("--model", default=None, help="run folder (default: the newest run in --logdir)")
    parser.add_argument("--logdir", default="logs", help="where runs are (default: %(default)s)")
    parser.add_argument("--length", type=positive_length, default=500,
                        help="rows (note events) to generate (default: %(default)s)")
    parser.add_argument("--out", default=None, help="output .mid (default: generated.mid in the run folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run_dir = Path(args.model) if args.model else runs.newest_run(args.logdir)
        config = runs.read_config(run_dir)
        representation = representation_from_json(config["representation"])
        primer = read_primer(args.seed, representation, config["train"]["window_length"])

        from note_matrix.generation import generate_rows, load_model, write_playable  # Keras loads here

        model = load_model(run_dir)
        rows = generate_rows(model, primer.matrix, args.length, representation, progress=not args.quiet)
        out = Path(args.out) if args.out else run_dir / "generated.mid"
        notes = write_playable(rows, out, representation, tempo_us_per_beat=primer.tempo_us_per_beat)
    except NoteMatrixError as error:
        print(f"generate.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"generate.py: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {notes} notes from {args.length} generated rows ({run_dir.name}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

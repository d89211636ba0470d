#!/usr/bin/env python
"""Generate music with a trained run: python generate.py --seed song.mid

Primes the model with the seed's first rows (its window length), generates --length
rows and writes a playable MIDI file with the seed's tempo. By default the recurrent
state is carried forward, one compiled step per row (--method carried); --method window
is the card's method, the whole window recomputed for every row. --num-outputs N
generates N pieces in one batch, primed at N evenly spaced places of the seed.

Sampling: heads with a categorical or mixture field sample every step at --temperature 1.0
by default; the card's regression head writes its prediction as it is (deterministic)
unless --temperature is given, then adds Gaussian noise of the run's residual spread
(calibration.json) times T. --argmax (or --temperature 0) takes the most likely row,
--top-k K draws the pitch among the K most likely notes, --random-seed N repeats a
sampled output exactly (the seed used is printed). --plot writes a piano-roll PNG and
--audio a WAV beside each MIDI file. --max-copied N (a note_events run) keeps every piece
from copying more than N consecutive notes of one training file: a note that would is
drawn again (note_matrix.generation.copy_guard); --max-held SECONDS releases any note still
sounding that long after its onset.

An abc_chars run (folk tunes as ABC text) needs no seed: python generate.py --model RUN
writes a tune after <start> (a warm-up tune before it, as training showed tunes back to
back), or after the opening given by --prime "X:1\\nT:...\\nK:G\\n",
one character per step (state carried) until <end> or --length characters (default 1000),
as generated.abc and, when the tune is playable, generated.mid; an unplayable tune is
written as text only, with the reason printed. Each header line and bar is checked as it
is drawn (note_matrix.abc.checker) and a refused one drawn again from the state where it
began, so that nearly every tune plays (README, "Folk tunes in ABC"); --no-well-formed
draws every character as the network gives it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter

from note_matrix import representations, runs  # noqa: E402
from note_matrix.arguments import add_run_arguments, bounded_int, positive_seconds, temperature  # noqa: E402
from note_matrix.config import RunConfig  # noqa: E402
from note_matrix.errors import NoteMatrixError, RunError  # noqa: E402
from note_matrix.generation.primer import read_primer  # noqa: E402
from note_matrix.run_data import benchmark_piece  # noqa: E402
from note_matrix.startup import import_keras  # noqa: E402

MAX_LENGTH = 100_000  # rows per piece
DEFAULT_LENGTH = 500  # rows per piece of a MIDI run (an abc_chars run: generation.tunes.DEFAULT_LENGTH characters)
MAX_NUM_OUTPUTS = 256  # pieces per run
MAX_TOTAL_ROWS = 1_000_000  # --num-outputs x --length: 12 MB of rows, a few minutes at batch 32
METHODS = ("carried", "window")
MAX_COPIED = 32  # --max-copied: notes


positive_length = bounded_int(1, MAX_LENGTH)
MIDI_NOTES = 128


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", default=None,
                        help="MIDI file whose rows prime the model (required, except for an abc_chars run); a "
                             "benchmark run also takes a piece of its dataset by key, e.g. jsb:valid:3")
    parser.add_argument("--prime", default=None, metavar="TEXT",
                        help="an abc_chars run: the opening of the tune after <start>, \\n a newline "
                             "(default: <start> alone)")
    parser.add_argument("--well-formed", action=argparse.BooleanOptionalAction, default=None,
                        help="an abc_chars run: check each header line and bar as it is drawn and draw it again "
                             "when it is refused (a field music21 cannot read, a bar longer than its time "
                             "signature, too many short bars), so that nearly every tune plays (default: on; "
                             "--no-well-formed: every character as the network draws it)")
    add_run_arguments(parser)
    parser.add_argument("--length", type=positive_length, default=None,
                        help=f"rows (note events; characters for an abc_chars run, which stops earlier at <end>) "
                             f"to generate per piece, at most {MAX_LENGTH:,} (default: {DEFAULT_LENGTH}; 1000 "
                             f"characters for an abc_chars run)")
    parser.add_argument("--method", choices=METHODS, default="carried",
                        help="carried: one recurrent step per row, state carried forward; window: the card's "
                             "method, the whole window recomputed per row (default: %(default)s)")
    parser.add_argument("--num-outputs", type=bounded_int(1, MAX_NUM_OUTPUTS), default=1, metavar="N",
                        help="pieces to generate in one batch, each primed at another place of the seed "
                             "(default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="output .mid (default: generated.mid in the run folder); with --num-outputs N > 1, "
                             "'{n}' in it is replaced by 1..N, else -1 .. -N go before the suffix")
    sampling = parser.add_argument_group("sampling")
    how = sampling.add_mutually_exclusive_group()
    how.add_argument("--temperature", type=temperature, default=None, metavar="T",
                     help="sample each row: softmax temperature of the pitch (and mixture) probabilities, and T "
                          "times the spread of the regressed columns; 0 is --argmax (default: 1.0 for the "
                          "categorical and mdn heads; none, the deterministic prediction, for the regression head)")
    how.add_argument("--argmax", action="store_true",
                     help="no sampling: the most likely pitch (and mixture component), the predicted values")
    sampling.add_argument("--top-k", type=bounded_int(1, MIDI_NOTES), default=None, metavar="K",
                          help="draw the pitch among the K most likely notes only (categorical and mdn heads)")
    sampling.add_argument("--random-seed", type=bounded_int(0, 2**32 - 1), default=None, metavar="N",
                          help="seed of the random numbers: the same seed and flags give the same file "
                               "(default: a new one each time, printed)")
    sampling.add_argument("--max-copied", type=bounded_int(1, MAX_COPIED), default=None, metavar="N",
                          help="a note_events run: copy no more than N consecutive notes (in onset order) of any "
                               "training file; a note that would is drawn again, avoiding that pitch "
                               "(default: no limit)")
    sampling.add_argument("--max-held", type=positive_seconds, default=None, metavar="SECONDS",
                          help="a note_events run: release any note still sounding SECONDS after its onset (the "
                               "network can lose track of a note it struck long before; pop's longest training "
                               "note lasts 3.96 s) (default: no limit)")
    render = parser.add_argument_group("pictures and sound")
    render.add_argument("--plot", action="store_true", help="also write a piano-roll PNG beside each MIDI file")
    render.add_argument("--audio", action="store_true", help="also write a WAV beside each MIDI file")
    render.add_argument("--soundfont", default=None, metavar="PATH",
                        help="General MIDI .sf2 for --audio (default: $NOTE_MATRIX_SOUNDFONT or a usual place; "
                             "without one, or without pyfluidsynth, pretty_midi's sine waves)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.soundfont is not None and not args.audio:
        parser.error("--soundfont is for --audio")
    if args.length is not None and args.num_outputs * args.length > MAX_TOTAL_ROWS:
        parser.error(f"--num-outputs x --length must be at most {MAX_TOTAL_ROWS:,} rows, "
                     f"got {args.num_outputs} x {args.length:,}")
    if args.seed is None and args.prime is None and seed_required(args):
        parser.error("the following arguments are required: --seed")
    return args


def seed_required(args: argparse.Namespace) -> bool:
    """Whether the run needs --seed (``representations.primed_by_seed``). With no run to read and no
    --model named, argparse's usage error says --seed is missing, as always; a named run that cannot be
    read is main's one-line error."""
    try:
        config = RunConfig.read(runs.find_run(args.model, args.logdir))
        return representations.primed_by_seed(config.train.representation)
    except NoteMatrixError:
        return args.model is None


def sampling_temperature(args: argparse.Namespace, head) -> float:
    """--argmax: 0; --temperature T: T; neither: 1.0, or 0 for a head of Gaussian fields only (the card's)."""
    if args.argmax:
        return 0.0
    if args.temperature is not None:
        return args.temperature
    return 1.0 if head.samples_by_default else 0.0


def build_sampling(args: argparse.Namespace, head, run_dir: Path):
    """The ``generation.Sampling`` of the flags for ``head``, or None for the deterministic steps."""
    from note_matrix import generation
    from note_matrix.calibration import read_calibration

    if args.top_k is not None and head.top_k_limit is None:
        raise RunError(f"--top-k draws among the most likely classes, and {run_dir.name}'s head has no "
                       "categorical field")
    temperature = sampling_temperature(args, head)
    if temperature == 0:
        return None
    residual_std = None
    if head.needs_spread:
        calibration = read_calibration(run_dir, head.spread_names)
        if calibration is None:
            print(f"note: {run_dir} has no {runs.CALIBRATION_FILE}; computing it from the validation split")
            from note_matrix.training import calibrate

            calibration = calibrate(run_dir, verbose=0)
        residual_std = calibration["residual_std"]
    seed = args.random_seed if args.random_seed is not None else secrets.randbelow(2**32)
    return generation.Sampling(temperature, args.top_k, seed, residual_std)


def describe_sampling(sampling, head) -> str:
    if sampling is None:
        return "argmax" if head.samples_by_default else "deterministic"
    top_k = f", top-k {sampling.top_k}" if sampling.top_k is not None else ""
    return f"temperature {sampling.temperature:g}{top_k}, random seed {sampling.random_seed}"


def generate_tunes(args: argparse.Namespace, run_dir: Path, config: RunConfig, representation) -> list[str]:
    """An abc_chars run's --num-outputs tunes after --prime, in one batch, each written as .abc and, when
    playable, .mid (with --plot's .png and --audio's .wav); returns the lines to print."""
    if args.seed is not None:
        raise RunError(f"{run_dir.name} is an {representation.name} run: it needs no --seed (a MIDI file); give "
                       "the tune's opening with --prime TEXT, or nothing")
    if args.method != "carried":
        raise RunError(f"{run_dir.name} is an {representation.name} run: its tunes are generated with the carried "
                       "state only (leave out --method)")
    from note_matrix.generation.tunes import DEFAULT_LENGTH as TUNE_LENGTH
    from note_matrix.generation.tunes import tune_primer, unescape

    primer = tune_primer(representation, unescape(args.prime or ""))
    if primer.unknown:
        print(f"note: --prime holds {len(primer.unknown)} character(s) the run never saw in training "
              f"({primer.unknown!r}): each goes in as <unk> and is left out of the tune")
    import_keras()  # Keras loads here, its backend's start-up lines held back
    from note_matrix import generation
    from note_matrix.evaluation.music_stats import Notes, describe, summary_line
    from note_matrix.midi import read_midi

    head = config.head()
    sampling = build_sampling(args, head, run_dir)
    how = describe_sampling(sampling, head)
    if sampling is not None:
        print(f"sampling at {how} (--random-seed {sampling.random_seed} repeats this output)")
    model = runs.load_model(run_dir)
    length = args.length or TUNE_LENGTH
    generator = generation.tune_generator(model, representation, head, sampling)
    well_formed = args.well_formed is not False  # on unless --no-well-formed
    tunes = generation.draw_tunes(generator, representation, head, primer, args.num_outputs, length,
                                  sampling=sampling, well_formed=well_formed, progress=not args.quiet)
    lines = []
    for path, tune in zip(generation.output_paths(args.out or run_dir / "generated.abc", args.num_outputs), tunes):
        written = generation.write_tune(tune.text, path)
        end = "ended at <end>" if tune.ended else f"cut at --length {length}, no <end>"
        if well_formed:
            end += f", {tune.refused} piece(s) refused and drawn again"
        lines.append(f"wrote {written.abc_path}: {len(tune.text)} characters ({run_dir.name}, primer "
                     f"{primer.describe()}, {how}, {end})")
        if written.midi_path is None:
            lines.append(f"  {written.why_not}; no .mid written")
            continue
        lines.append(f"wrote {written.midi_path}: {written.notes} notes")
        lines.append(f"  {summary_line(describe(Notes.from_events(read_midi(written.midi_path))))}")
        lines += plot_and_audio(args, written.midi_path, f"{written.midi_path.name}: {run_dir.name}, {how}")
    return lines


def plot_and_audio(args: argparse.Namespace, midi_path: Path, title: str) -> list[str]:
    """--plot's piano roll (.png) and --audio's sound (.wav) beside ``midi_path``; the lines saying so."""
    from note_matrix import generation

    lines = []
    if args.plot:
        lines.append(f"wrote {generation.write_piano_roll(midi_path, midi_path.with_suffix('.png'), title)}")
    if args.audio:
        wav, synthesiser = generation.write_audio(midi_path, midi_path.with_suffix(".wav"), soundfont=args.soundfont)
        lines.append(f"wrote {wav} ({synthesiser})")
    return lines


def check_max_copied(args: argparse.Namespace, run_dir: Path, representation) -> None:
    """``RunError`` unless --max-copied can guard this run: note events, generated with the carried state."""
    from note_matrix.generation.copy_guard import guards

    if not guards(representation):
        raise RunError(f"--max-copied is for note_events runs; {run_dir.name} is a {representation.name} run")
    if args.method != "carried":
        raise RunError("--max-copied generates with the carried state only (leave out --method window)")


def read_copy_guard(run_dir: Path, max_copied: int):
    """--max-copied's ``CopyGuard`` from the run's training files (read before Keras loads)."""
    from note_matrix.generation import CopyGuard

    guard = CopyGuard.from_run(run_dir, max_copied)
    if guard.skipped:
        name, reason = next(iter(guard.skipped.items()))
        print(f"note: {len(guard.skipped)} of the run's training files cannot be read (first: {name}: {reason}); "
              "--max-copied leaves them out, as evaluate.py --generated does")
    return guard


def generate_pieces(args: argparse.Namespace, model, primers, representation, head, sampling, guard,
                    tempo_us_per_beat: int):
    """``(rows (N, length, F), per piece the clause its printed line ends with)``: --max-copied's
    redraws and kept copies with a ``guard``, else nothing."""
    from note_matrix import generation

    if guard is None:
        rows = generation.generate_rows(model, primers, args.length, representation, head, method=args.method,
                                        progress=not args.quiet, sampling=sampling)
        return rows, [""] * len(rows)
    guarded = generation.generate_uncopied(model, primers, args.length, representation, head, guard,
                                           tempo_us_per_beat=tempo_us_per_beat, sampling=sampling,
                                           progress=not args.quiet)
    return guarded.rows, [f", --max-copied {guard.max_copied}: {redrawn} row(s) drawn again, {copies} kept as "
                          f"copies" for redrawn, copies in zip(guarded.redrawn, guarded.copies)]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.soundfont is not None and not Path(args.soundfont).is_file():
            raise RunError(f"--soundfont {args.soundfont}: no such file")
        run_dir = runs.find_run(args.model, args.logdir)
        config = RunConfig.read(run_dir)
        representation = config.build_representation()
        if args.max_copied is not None:
            check_max_copied(args, run_dir, representation)
        if args.max_held is not None and representation.name != "note_events":
            raise RunError(f"--max-held is for note_events runs; {run_dir.name} is a {representation.name} run")
        if not representations.primed_by_seed(representation.name):
            lines = generate_tunes(args, run_dir, config, representation)
            print("\n".join(lines))
            return 0
        if args.seed is None or args.prime is not None or args.well_formed is not None:
            raise RunError(f"{run_dir.name} is a {representation.name} run: prime it with --seed (a MIDI file); "
                           "--prime and --(no-)well-formed are for abc_chars runs")
        window_length = config.train.window_length
        primer = read_primer(args.seed, representation, window_length, benchmark_piece(args.seed, config))
        guard = None if args.max_copied is None else read_copy_guard(run_dir, args.max_copied)

        import_keras()  # Keras loads here, its backend's start-up lines held back
        from note_matrix import generation
        from note_matrix.evaluation.music_stats import Notes, describe, summary_line
        from note_matrix.midi import read_midi

        head = config.head()

        sampling = build_sampling(args, head, run_dir)
        how = describe_sampling(sampling, head)
        seed = primer.steps if args.num_outputs > 1 else primer.steps[:window_length]
        primers, starts = generation.spread_primers(seed, window_length, args.num_outputs)
        distinct = len(set(starts.tolist()))
        if distinct < args.num_outputs:
            print(f"note: {args.seed} has {len(seed)} steps, room for {distinct} different primers of "
                  f"{window_length} steps; {args.num_outputs - distinct} of the {args.num_outputs} pieces repeat "
                  f"a primer (and, without sampling, its piece)")
        if sampling is not None:
            print(f"sampling at {how} (--random-seed {sampling.random_seed} repeats this output)")
        model = runs.load_model(run_dir)
        args.length = args.length or DEFAULT_LENGTH
        rows, guarded = generate_pieces(args, model, primers, representation, head, sampling, guard,
                                        primer.tempo_us_per_beat)
        paths = generation.output_paths(args.out or run_dir / "generated.mid", args.num_outputs)
        written, extras = [], []
        for path, piece, start, guard_line in zip(paths, rows, starts, guarded):
            notes = representation.decode(piece, {**primer.meta, "max_held_seconds": args.max_held}, path)
            written.append((path, notes, start, guard_line,
                            summary_line(describe(Notes.from_events(read_midi(path))))))
            extras += plot_and_audio(args, path, f"{path.name}: {run_dir.name}, {config.train.model.head} head, {how}")
    except NoteMatrixError as error:
        print(f"generate.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"generate.py: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    for path, notes, start, guard_line, statistics in written:
        where = f", primer at row {start}" if args.num_outputs > 1 else ""
        print(f"wrote {path}: {notes} notes from {args.length} generated steps ({run_dir.name}, seed {args.seed}"
              f"{where}, {how}, {args.method}{guard_line})")
        print(f"  {statistics}")
    for line in extras:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""An ``abc_chars`` run's evaluation: NLL per character, and how often its tunes play.

``evaluate_tunes`` scores the run's model on a split by ``stream_loss`` (the NLL in nats
per character that training monitors as ``val_loss``), then draws ``tunes`` tunes at each
temperature (one batch, seeded, ``generation.tunes``) and, per temperature, reports:

- the playable rate (``abc.playable``) and the commonest reasons a tune is not playable;
- the music statistics (``music_stats.compare``) of the playable tunes written as MIDI
  (``abc.to_midi``) beside the split's real tunes written the same way;
- how many of those MIDI files mido or pretty_midi cannot open;
- the copy check (``copy_check``): the longest run of consecutive bars of a tune found
  verbatim in one training tune (``abc.BarIndex``), flagged above ``MAX_COPIED_BARS``.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from note_matrix import runs
from note_matrix.abc import BarIndex, Parsed, parse, playable, to_midi
from note_matrix.errors import MidiError
from note_matrix.evaluation.music_stats import Notes, compare
from note_matrix.run_data import RunData

DEFAULT_TEMPERATURES = (0.5, 0.7, 1.0)
DEFAULT_TUNES = 100
MAX_COPIED_BARS = 2  # a longer run of bars copied verbatim from one training tune is flagged
TOP_REASONS = 3  # the commonest reasons a tune is not playable, per temperature


def tune_texts(data: RunData, part: str) -> list[str]:
    """The text of every tune of split ``part`` (each tune is a file of its own, ``datasets.tunes``)."""
    return [data.files.path(key).read_text(encoding="utf-8") for key in data.split[part]]


def copy_check(tunes: list[str], index: BarIndex) -> dict:
    """The longest run of consecutive bars that ``tunes`` copy verbatim from one training tune (``index``).

    ``{"max_bars", "mean_bars", "tunes_over", "flagged"}``: ``tunes_over`` counts the tunes whose
    run is longer than ``MAX_COPIED_BARS``, and ``flagged`` says whether any is.
    """
    copied = [index.longest_copy(tune) for tune in tunes]
    longest = max(copied, default=0)
    return {
        "max_bars": longest,
        "mean_bars": float(np.mean(copied)) if copied else 0.0,
        "tunes_over": sum(bars > MAX_COPIED_BARS for bars in copied),
        "flagged": longest > MAX_COPIED_BARS,
    }


def midi_notes(tunes: list[str], folder: Path, parses: list[Parsed] | None = None) -> tuple[list[Notes], dict]:
    """The notes of each tune written as MIDI in ``folder`` (``abc.to_midi``), and the failures:
    ``{"not_written": n, "mido": n, "pretty_midi": n, "first_error": str}`` (tunes music21 cannot
    write; files mido or pretty_midi cannot open). ``parses``: each tune's ``abc.parse`` where the
    caller has them, so music21 does not parse a tune again."""
    import mido
    import pretty_midi

    from note_matrix.midi import read_midi

    notes, failures = [], {"not_written": 0, "mido": 0, "pretty_midi": 0, "first_error": ""}
    for number, (tune, parsed) in enumerate(zip(tunes, parses or [None] * len(tunes))):
        path = folder / f"{number}.mid"
        try:
            to_midi(tune, path, parsed)
            notes.append(Notes.from_events(read_midi(path)))
        except MidiError as error:
            failures["not_written"] += 1
            failures["first_error"] = failures["first_error"] or error.reason
            continue
        for reader in ("mido", "pretty_midi"):
            try:
                mido.MidiFile(path) if reader == "mido" else pretty_midi.PrettyMIDI(str(path))
            except Exception as error:  # noqa: BLE001 (either reader's refusal, any kind, is what is counted)
                failures[reader] += 1
                failures["first_error"] = failures["first_error"] or f"{reader}: {error}"
    return notes, failures


def tunes_at(texts: list[str], real: list[Notes], index: BarIndex, folder: Path) -> dict:
    """One temperature's entry: playable rate, reasons, MIDI checks, statistics, copy check."""
    reasons, playable_texts, parses = Counter(), [], []
    for text in texts:
        parsed = parse(text)  # once, for playable and to_midi both
        verdict = playable(text, parsed)
        if verdict.ok:
            playable_texts.append(text)
            parses.append(parsed)
        else:
            reasons[_reason_kind(verdict.reason)] += 1
    notes, failures = midi_notes(playable_texts, folder, parses)
    return {
        "tunes": len(texts),
        "playable": len(playable_texts),
        "playable_rate": len(playable_texts) / len(texts) if texts else 0.0,
        "not_playable_reasons": dict(reasons.most_common(TOP_REASONS)),
        "midi_failures": failures,
        "statistics": compare(notes, real) if notes else None,
        "copies": copy_check(texts, index),
        "mean_characters": float(np.mean([len(text) for text in texts])) if texts else 0.0,
    }


def _reason_kind(reason: str) -> str:
    """A reason without its particulars (music21's message, the counts), so that reasons can be counted."""
    kind = reason.split(" (", 1)[0]
    return "too few inner bars last what the time signature says" if "inner bars" in kind else kind


def evaluate_tunes(
    data: RunData,
    model,
    *,
    split: str = "test",
    temperatures=DEFAULT_TEMPERATURES,
    tunes: int = DEFAULT_TUNES,
    random_seed: int = 0,
    length: int | None = None,
    well_formed: bool = False,
    progress: bool = False,
) -> dict:
    """The entry for ``evaluation.json``: ``split``'s NLL per character and, per temperature, the
    tunes' entry (``tunes_at``). ``data`` must be encoded (``run_data.encode``). ``well_formed``:
    draw the tunes with ``generation.tunes.generate_well_formed`` (each header line and bar checked)."""
    from note_matrix.generation.sampling import Sampling
    from note_matrix.generation.tunes import DEFAULT_LENGTH, draw_tunes, tune_generator, tune_primer
    from note_matrix.training.windows import stream_loss

    train = data.config.train
    head = data.config.head()
    representation = data.representation
    length = length or DEFAULT_LENGTH
    nll = stream_loss(model, head, data.part(split), train.batch_size, train.window_length)
    index = BarIndex(tune_texts(data, "train"))
    primer = tune_primer(representation)
    result = {
        "created": runs.utc_now(),
        "split": split,
        "tunes_in_split": len(data.split[split]),
        "characters_in_split": int(sum(len(steps) for steps in data.part(split))),
        "nll_per_character": nll,
        "random_seed": random_seed,
        "length": length,
        "well_formed": well_formed,
        "temperatures": {},
        "notes": list(data.notes),
    }
    with tempfile.TemporaryDirectory(prefix="note-matrix-tunes-") as folder:
        real, real_failures = midi_notes(tune_texts(data, split), Path(folder))
        result["real_midi_failures"] = real_failures
        for temperature in temperatures:
            sampling = Sampling(float(temperature), None, random_seed)
            started = time.perf_counter()
            generator = tune_generator(model, representation, head, sampling)
            drawn = draw_tunes(generator, representation, head, primer, tunes, length, sampling=sampling,
                               well_formed=well_formed, progress=progress)
            seconds = time.perf_counter() - started
            entry = tunes_at([tune.text for tune in drawn], real, index, Path(folder))
            entry["generation_seconds"] = seconds
            entry["mean_refused"] = float(np.mean([tune.refused for tune in drawn])) if drawn else 0.0
            result["temperatures"][f"{temperature:g}"] = entry
    return result


def format_tunes(result: dict, run_dir: str | Path = "") -> str:
    """The result as a readable report: NLL, a table per temperature, statistics beside the real tunes'."""
    from note_matrix.evaluation.music_stats import FILE_STATISTICS
    from note_matrix.evaluation.report import STATISTIC_LABELS

    entries = result["temperatures"]
    per_temperature = next(iter(entries.values()))["tunes"] if entries else 0
    lines = [
        (
            f"{result['split'].capitalize()} split of {run_dir or 'the run'}: {result['tunes_in_split']} tunes, "
            f"{result['characters_in_split']:,} symbols"
        ),
        f"NLL {result['nll_per_character']:.4f} nats per character (as training's val_loss measures it)",
        "",
        (
            f"{per_temperature} tunes per temperature (--random-seed {result['random_seed']}, at most "
            f"{result['length']} characters each"
            + (", well-formed sampling: header lines and bars checked as drawn" if result.get("well_formed") else "")
            + "):"
        ),
        "",
        "temperature  playable  rate    mean chars  longest copy (bars)    MIDI failures  seconds"
        + ("  refused/tune" if result.get("well_formed") else ""),
    ]
    for name, entry in entries.items():
        copies, failures = entry["copies"], entry["midi_failures"]
        unreadable = failures["not_written"] + failures["mido"] + failures["pretty_midi"]
        flag = " !" if copies["flagged"] else "  "
        lines.append(
            f"{name:>11}  {entry['playable']:>4}/{entry['tunes']:<4}{entry['playable_rate']:>5.0%}  "
            f"{entry['mean_characters']:>10.0f}  {copies['max_bars']:>19}{flag}  {unreadable:>15}  "
            f"{entry['generation_seconds']:>7.1f}"
            + (f"  {entry.get('mean_refused', 0.0):>12.1f}" if result.get("well_formed") else "")
        )
    lines.append("")
    for name, entry in entries.items():
        reasons = "; ".join(f"{count} {reason}" for reason, count in entry["not_playable_reasons"].items())
        lines.append(f"T={name} not playable: {reasons or 'none'}")
        failures = entry["midi_failures"]
        if failures["first_error"]:
            lines.append(
                f"T={name} MIDI: {failures['not_written']} playable tunes music21 cannot write, "
                f"{failures['mido']} files mido and {failures['pretty_midi']} pretty_midi cannot open "
                f"(first: {failures['first_error']})"
            )
    flagged = [name for name, entry in entries.items() if entry["copies"]["flagged"]]
    if flagged:
        lines.append(
            f"! copy check: at T={', '.join(flagged)} a tune repeats more than {MAX_COPIED_BARS} consecutive "
            "bars of one training tune verbatim"
        )
    lines += ["", "music statistics of the playable tunes as MIDI (mean), beside the split's real tunes:", ""]
    names = list(entries)
    label_width = max(len(label) for label, _, _ in STATISTIC_LABELS.values()) + 2
    lines.append("statistic".ljust(label_width) + "".join(f"T={name}".rjust(10) for name in names) + "real".rjust(10))
    real = next((entry["statistics"]["training"] for entry in entries.values() if entry["statistics"]), None)
    for statistic in FILE_STATISTICS:
        label, form, _ = STATISTIC_LABELS[statistic]
        cells = [
            _mean(entry["statistics"] and entry["statistics"]["generated"], statistic, form)
            for entry in entries.values()
        ]
        lines.append(
            label.ljust(label_width)
            + "".join(cell.rjust(10) for cell in cells)
            + _mean(real, statistic, form).rjust(10)
        )
    real_failures = result["real_midi_failures"]
    if real_failures["not_written"] or real_failures["mido"] or real_failures["pretty_midi"]:
        lines.append(
            f"note: {real_failures['not_written']} real tunes could not be written as MIDI "
            f"(first: {real_failures['first_error']})"
        )
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def _mean(statistics: dict | None, name: str, form: str) -> str:
    value = statistics.get(name) if statistics else None
    return "-" if not value else form.format(value["mean"])

"""The evaluation entries as printed tables (``format_test``, ``format_generated``) and as JSON (``save``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from note_matrix import runs
from note_matrix.evaluation.music_stats import FILE_STATISTICS
from note_matrix.evaluation.scores import SCORE_NAMES, model_label


def format_test(result: dict, run_dir: str | Path = "") -> str:
    """The test scores as a table, the best value of each column marked ``*``, and a verdict."""
    scores, best, columns = result["scores"], result["best"], result["columns"]
    name_width = max(len(name) for name in scores) + 2
    widths = [max(len(header), 9) + 3 for _, header, _, _ in columns]
    lines = [
        (f"{result.get('split', 'test').capitalize()} split of {run_dir or 'the run'}: {len(result['files'])} files, {result['rows']:,} rows scored "
         f"(every row after the first {result.get('score_from', result['window_length'])} of each file)"),
        "",
        " " * name_width + "".join((header + " ").rjust(w) for (_, header, _, _), w in zip(columns, widths)),
    ]
    for name, row in scores.items():
        cells = []
        for (key, _, _, form), width in zip(columns, widths):
            value = row.get(key)
            text = "-" if value is None or not np.isfinite(value) else form.format(value)
            mark = "*" if name in best.get(key, ()) else " "
            cells.append((text + mark).rjust(width))
        lines.append(name.ljust(name_width) + "".join(cells))
    lines += ["", *result["legend"]]
    std, where = result.get("residual_std"), result.get("residual_std_source", "")
    if std is not None or result["head"] == "regression":  # a head with Gaussian fields
        spread = ", ".join(f"{k} {v:.4f}" for k, v in std.items()) if std else "none"
        what = ("Gaussians around its prediction (the pitch: the mass over the note's bin)"
                if result["head"] == "regression" else "its softmax for the pitch, Gaussians around its prediction "
                "for velocity and time")
        lines += [f"The model's distribution: {what}, with the residual std per column",
                  f"({spread}), {where}."]
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("")
    lines += verdict(result)
    return "\n".join(lines)


def verdict(result: dict) -> list[str]:
    """One line per baseline the model does not beat on some score, or one line that it beats them all."""
    model = model_label(result["head"])
    by_baseline: dict[str, list[str]] = {}
    for item in result["not_beaten"]:
        if item["model"] is None and item["score"] == "nll":
            continue  # the model has no NLL: not a loss, nothing to compare
        by_baseline.setdefault(item["baseline"], []).append(SCORE_NAMES.get(item["score"], item["score"]))
    if not by_baseline:
        return [f"The {model} beats every baseline on every score."]
    return [f"The {model} does not beat the {name} on {_join(keys)}." for name, keys in by_baseline.items()]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# label, format of a mean, format of a file's value (counts are whole numbers)
STATISTIC_LABELS = {
    "pitch_range": ("pitch range (semitones)", "{:.1f}", "{:.0f}"),
    "pitches_used": ("pitches used", "{:.1f}", "{:.0f}"),
    "pitch_classes_used": ("pitch classes used", "{:.1f}", "{:.0f}"),
    "average_pitch_interval": ("average pitch interval (semitones)", "{:.2f}", "{:.2f}"),
    "note_density": ("note density (notes/s)", "{:.2f}", "{:.2f}"),
    "average_inter_onset_interval": ("average inter-onset interval (s)", "{:.3f}", "{:.3f}"),
    "polyphony": ("polyphony (notes sounding)", "{:.2f}", "{:.2f}"),
    "in_scale_rate": ("in-scale rate", "{:.3f}", "{:.3f}"),
    "longest_repeated_pitch": ("longest run of one pitch (notes)", "{:.1f}", "{:.0f}"),
    "repeated_4gram_fraction": ("repeated 4-gram fraction (collapse)", "{:.3f}", "{:.3f}"),
}
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def format_generated(result: dict, run_dir: str | Path = "") -> str:
    """The statistics as a table: statistic | generated mean [min-max] | training mean [min-max]."""
    generated, training = result["generated"], result["training"]
    flagged = set(result["outside_training_range"])

    def cell(stats, name):
        if not stats:
            return "-"
        _, mean, bound = STATISTIC_LABELS[name]
        return f"{mean.format(stats['mean'])} [{bound.format(stats['min'])}-{bound.format(stats['max'])}]"

    label_width = max(len(label) for label, _, _ in STATISTIC_LABELS.values()) + 2
    lines = [
        (f"{generated['files']} generated files in {result['directory']} vs the {training['files']} training files "
         f"of {run_dir or 'the run'}"),
        "",
        "statistic".ljust(label_width) + "generated mean [min-max]".ljust(30) + "training mean [min-max]",
    ]
    for name in FILE_STATISTICS:
        mark = "! " if name in flagged else "  "
        lines.append(STATISTIC_LABELS[name][0].ljust(label_width) + (cell(generated[name], name) + " " + mark)
                     .ljust(30) + cell(training[name], name))
    lines += [
        "",
        "pitch-class histogram".ljust(label_width) + "".join(pc.rjust(6) for pc in PITCH_CLASSES),
        "  generated".ljust(label_width) + "".join(f"{v:6.3f}" for v in generated["pitch_class_histogram"]),
        "  training".ljust(label_width) + "".join(f"{v:6.3f}" for v in training["pitch_class_histogram"]),
        "",
    ]
    distance = generated["pitch_class_distance"]
    lines.append("pitch-class distance to the training set (Jensen-Shannon, 0 same .. 1 disjoint): "
                 + ("-" if distance is None else f"{distance:.3f}"))
    copied = generated["longest_copied_notes"]
    lines.append(f"longest run of notes copied from one training file (memorisation): max {copied['max']}, "
                 f"mean {copied['mean']:.1f} per generated file")
    if flagged:
        lines.append("! the generated files' mean lies outside the training files' range: "
                     + ", ".join(STATISTIC_LABELS[name][0] for name in FILE_STATISTICS if name in flagged))
    for name, reason in result["skipped"].items():
        lines.append(f"skipped {name}: {reason}")
    for name, reason in result.get("training_files_skipped", {}).items():
        lines.append(f"skipped training file {name}: {reason}")
    return "\n".join(lines)


def save(path: str | Path, key: str, entry: dict, *, merge: bool = True) -> Path:
    """Write ``{key: entry}`` to ``path`` atomically, keeping the file's other entries when ``merge``."""
    path = Path(path)
    existing = runs.read_json(path) if merge else None
    data = existing if isinstance(existing, dict) else {}
    data[key] = entry
    runs.write_json(path, _plain(data))
    return path


def _plain(value):
    """``value`` with NumPy numbers made Python numbers and non-finite floats made None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value

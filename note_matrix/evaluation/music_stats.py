"""Music statistics of MIDI files: is generated music like the training music?

Definitions follow mgeval (Yang & Lerch, "On the evaluation of generative models in
music", 2018) and MusPy (Dong et al., 2020), adapted to notes timed in seconds:

================================  =========================================================
``pitch_range``                   highest minus lowest pitch, semitones (MusPy)
``pitches_used``                  distinct pitches (MusPy ``n_pitches_used``)
``pitch_classes_used``            distinct pitch classes (MusPy ``n_pitch_classes_used``)
``pitch_class_histogram``         12 shares of notes per pitch class, C first (mgeval)
``pitch_class_distance``          Jensen-Shannon divergence (base 2, 0 to 1) between this
                                  histogram and the training set's (``compare``)
``average_pitch_interval``        mean absolute pitch step between consecutive notes in
                                  onset order, semitones (mgeval ``avg_pitch_shift``)
``note_density``                  notes per second, first onset to last note-off
``average_inter_onset_interval``  mean gap between consecutive distinct onsets, seconds
                                  (mgeval ``avg_IOI``)
``polyphony``                     mean number of sounding notes over the time at least one
                                  sounds (MusPy ``polyphony``)
``in_scale_rate``                 share of notes in the best-fitting major or minor scale
                                  (MusPy ``scale_consistency``)
``longest_repeated_pitch``        longest run of consecutive notes of one pitch
``repeated_4gram_fraction``       share of pitch 4-grams that repeat an earlier one:
                                  1 - distinct / all (collapse shows as values near 1)
``longest_copied_notes``          longest run of consecutive pitches found verbatim in one
                                  training file (memorisation; ``compare``)
================================  =========================================================

"Consecutive notes in onset order": notes sorted by onset, then pitch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from note_matrix.midi import NoteEvents

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor
FILE_STATISTICS = (
    "pitch_range",
    "pitches_used",
    "pitch_classes_used",
    "average_pitch_interval",
    "note_density",
    "average_inter_onset_interval",
    "polyphony",
    "in_scale_rate",
    "longest_repeated_pitch",
    "repeated_4gram_fraction",
)


@dataclass(frozen=True)
class Notes:
    """Notes with durations, sorted by onset then pitch. Arrays of one length:
    ``start_seconds``, ``end_seconds`` (float64, end >= start), ``pitch`` (int)."""

    start_seconds: np.ndarray
    end_seconds: np.ndarray
    pitch: np.ndarray

    def __post_init__(self):
        if not len(self.start_seconds) == len(self.end_seconds) == len(self.pitch):
            raise ValueError("start_seconds, end_seconds and pitch must have one length")
        if np.any(self.end_seconds < self.start_seconds):
            raise ValueError("a note ends before it starts")

    def __len__(self) -> int:
        return len(self.pitch)

    @classmethod
    def build(cls, notes: list[tuple[float, float, int]]) -> Notes:
        """From ``(start_seconds, end_seconds, pitch)`` tuples, in any order."""
        ordered = sorted(notes, key=lambda note: (note[0], note[2]))
        columns = list(zip(*ordered)) if ordered else [(), (), ()]
        return cls(np.array(columns[0], float), np.array(columns[1], float), np.array(columns[2], int))

    @classmethod
    def from_events(cls, events: NoteEvents) -> Notes:
        """Pair note-ons with note-offs of the same pitch (first on, first off); a note
        never released ends at the last event."""
        open_notes: dict[int, list[float]] = {}
        notes = []
        for time, pitch, velocity in zip(events.time_seconds.tolist(), events.pitch.tolist(),
                                         events.velocity.tolist()):
            if velocity > 0:
                open_notes.setdefault(pitch, []).append(time)
            elif open_notes.get(pitch):
                notes.append((open_notes[pitch].pop(0), time, pitch))
        end = float(events.time_seconds[-1]) if len(events) else 0.0
        notes += [(start, end, pitch) for pitch, starts in open_notes.items() for start in starts]
        return cls.build(notes)


def pitch_class_histogram(notes: Notes) -> np.ndarray:
    """(12,) shares of notes per pitch class (all zero without notes)."""
    counts = np.bincount(notes.pitch % 12, minlength=12).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0: same distribution, 1: disjoint)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    m = (p + q) / 2

    def kl(a, b):
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return (kl(p, m) + kl(q, m)) / 2


def longest_run(values: np.ndarray) -> int:
    """Length of the longest run of equal consecutive values (0 for none)."""
    if len(values) == 0:
        return 0
    changes = np.flatnonzero(np.diff(values) != 0)
    bounds = np.concatenate(([-1], changes, [len(values) - 1]))
    return int(np.max(np.diff(bounds)))


def repeated_ngram_fraction(values: np.ndarray, n: int = 4) -> float:
    """1 - distinct n-grams / all n-grams (0 when there is no n-gram)."""
    grams = [tuple(values[i : i + n]) for i in range(len(values) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def polyphony(notes: Notes) -> float:
    """Mean count of sounding notes over the time at least one note sounds."""
    if len(notes) == 0:
        return 0.0
    times = np.concatenate([notes.start_seconds, notes.end_seconds])
    steps = np.concatenate([np.ones(len(notes)), -np.ones(len(notes))])
    order = np.lexsort((steps, times))  # at equal times, note-offs first
    times, sounding = times[order], np.cumsum(steps[order])
    spans = np.diff(times)
    active = sounding[:-1] > 0
    covered = spans[active].sum()
    return float((sounding[:-1][active] * spans[active]).sum() / covered) if covered > 0 else 0.0


def in_scale_rate(notes: Notes) -> float:
    """Share of notes in the best-fitting of the 24 major and natural minor scales."""
    if len(notes) == 0:
        return 0.0
    counts = np.bincount(notes.pitch % 12, minlength=12)
    best = 0
    for root in range(12):
        for scale in (MAJOR_SCALE, MINOR_SCALE):
            best = max(best, int(counts[[(root + degree) % 12 for degree in scale]].sum()))
    return best / len(notes)


def describe(notes: Notes) -> dict[str, float]:
    """Every per-file statistic of the module docstring."""
    pitch = notes.pitch
    onsets = np.unique(notes.start_seconds)
    span = float(notes.end_seconds.max() - notes.start_seconds.min()) if len(notes) else 0.0
    return {
        "notes": len(notes),
        "pitch_range": int(pitch.max() - pitch.min()) if len(pitch) else 0,
        "pitches_used": len(set(pitch.tolist())),
        "pitch_classes_used": len(set((pitch % 12).tolist())),
        "average_pitch_interval": float(np.mean(np.abs(np.diff(pitch)))) if len(pitch) > 1 else 0.0,
        "note_density": len(notes) / span if span > 0 else 0.0,
        "average_inter_onset_interval": float(np.mean(np.diff(onsets))) if len(onsets) > 1 else 0.0,
        "polyphony": polyphony(notes),
        "in_scale_rate": in_scale_rate(notes),
        "longest_repeated_pitch": longest_run(pitch),
        "repeated_4gram_fraction": repeated_ngram_fraction(pitch, 4),
        "pitch_class_histogram": pitch_class_histogram(notes).round(6).tolist(),
    }


SUMMARY = (("notes", "{:d} notes"), ("polyphony", "polyphony {:.1f}"), ("note_density", "{:.1f} notes/s"),
           ("average_inter_onset_interval", "IOI {:.3f} s"), ("pitch_range", "pitch range {:d}"),
           ("longest_repeated_pitch", "longest repeated pitch {:d}"), ("in_scale_rate", "in scale {:.2f}"),
           ("repeated_4gram_fraction", "repeated 4-grams {:.2f}"))


def summary_line(statistics: dict) -> str:
    """The main statistics of ``describe`` in one line."""
    return ", ".join(form.format(statistics[key]) for key, form in SUMMARY)


class CopiedRuns:
    """Finds the longest run of a sequence's consecutive values found verbatim in one source.

    Binary search on the length: a run of length L exists if some L-gram of the sequence
    is an L-gram of a source (a run of L implies runs of every shorter length). The
    sources' L-grams are pooled into one set per length and kept, so checking many
    generated files against the same training files builds each set once.
    """

    def __init__(self, sources: list[np.ndarray]):
        self.sources = [np.ascontiguousarray(source, dtype=np.int16) for source in sources]
        self._grams: dict[int, set[bytes]] = {}

    @staticmethod
    def grams(values: np.ndarray, length: int) -> set[bytes]:
        data = values.tobytes()
        width = length * values.itemsize
        return {data[i : i + width] for i in range(0, len(data) - width + 1, values.itemsize)}

    def source_grams(self, length: int) -> set[bytes]:
        if length not in self._grams:
            pooled: set[bytes] = set()
            for source in self.sources:
                if len(source) >= length:
                    pooled |= self.grams(source, length)
            self._grams[length] = pooled
        return self._grams[length]

    def longest(self, generated: np.ndarray) -> int:
        generated = np.ascontiguousarray(generated, dtype=np.int16)
        low, high = 0, min(len(generated), max((len(source) for source in self.sources), default=0))
        while low < high:
            length = (low + high + 1) // 2
            if self.grams(generated, length) & self.source_grams(length):
                low = length
            else:
                high = length - 1
        return low


def longest_copied_run(generated: np.ndarray, sources: list[np.ndarray]) -> int:
    """Longest run of consecutive values of ``generated`` found verbatim in one source (``CopiedRuns``)."""
    return CopiedRuns(sources).longest(generated)


def compare(generated: list[Notes], training: list[Notes]) -> dict:
    """Statistics of generated files beside the training files'.

    Returns ``{"generated": {...}, "training": {...}}``: for each statistic its mean, min
    and max over the files of the set, plus each set's pooled pitch-class histogram, the
    generated set's ``pitch_class_distance`` to the training set (None when either set has
    no notes), and its mean and max ``longest_copied_notes`` (each generated file against
    every training file).
    """

    def summary(files: list[Notes]) -> dict:
        rows = [describe(notes) for notes in files if len(notes)]
        out = {"files": len(files)}
        for name in FILE_STATISTICS:
            values = np.array([row[name] for row in rows], float)
            out[name] = {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())} if len(
                values) else None
        pooled = np.concatenate([notes.pitch for notes in files]) if files else np.zeros(0, int)
        out["pitch_class_histogram"] = pitch_class_histogram(Notes(pooled * 0.0, pooled * 0.0, pooled)).round(
            6).tolist()
        return out

    result = {"generated": summary(generated), "training": summary(training)}
    histograms = result["generated"]["pitch_class_histogram"], result["training"]["pitch_class_histogram"]
    # No notes on one side: no distribution to compare.
    result["generated"]["pitch_class_distance"] = jensen_shannon(*histograms) if all(map(any, histograms)) else None
    finder = CopiedRuns([t.pitch for t in training])
    copied = [finder.longest(notes.pitch) for notes in generated]
    result["generated"]["longest_copied_notes"] = {
        "mean": float(np.mean(copied)) if copied else 0.0,
        "max": int(max(copied)) if copied else 0,
    }
    return result

"""Around generation: one primer per piece, file names, and pictures and sound of written files.

(The representation writes the generated steps themselves: ``Representation.decode``.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from note_matrix import atomic


# -- several pieces from one seed ---------------------------------------------------------------

def spread_primers(seed: np.ndarray, window_length: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` primers of ``window_length`` rows from evenly spaced places in ``seed``.

    ``seed`` ``(rows, F)`` with rows >= window_length. The first primer is the seed's
    first rows, the last ends at its last row. Returns ``(primers (count, window, F),
    starts (count,) int)``; a seed with fewer than ``window_length + count - 1`` rows
    has fewer distinct starts than ``count``, so some primers repeat (and, without
    sampling, their pieces too).
    """
    seed = np.asarray(seed)
    if len(seed) < window_length:
        raise ValueError(f"the seed has {len(seed)} rows, fewer than the window ({window_length})")
    starts = np.rint(np.linspace(0, len(seed) - window_length, count)).astype(np.int64)
    return np.stack([seed[s : s + window_length] for s in starts]), starts


def output_paths(out: str | os.PathLike, count: int) -> list[Path]:
    """Where ``count`` pieces go: ``out`` itself for one piece; else ``out`` with ``{n}``
    replaced by 1..count, or, without ``{n}``, ``<stem>-<n><suffix>`` (``generated.mid``
    -> ``generated-1.mid``, ...)."""
    text = str(out)
    if "{n}" in text:
        return [Path(text.replace("{n}", str(n))) for n in range(1, count + 1)]
    path = Path(text)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{n}{path.suffix}") for n in range(1, count + 1)]


# -- pictures and sound of a written file -----------------------------------------------------

def _notes_of(midi_path: str | os.PathLike):
    from note_matrix.evaluation.music_stats import Notes
    from note_matrix.midi import read_midi

    return Notes.from_events(read_midi(midi_path))


def write_piano_roll(midi_path: str | os.PathLike, png_path: str | os.PathLike, title: str = "") -> Path:
    """A piano roll of the MIDI file at ``midi_path`` (as it plays) written to ``png_path``."""
    from note_matrix.render import piano_roll_png  # matplotlib: only when asked for

    piano_roll_png(_notes_of(midi_path), title, png_path)
    return Path(png_path)


def write_audio(midi_path: str | os.PathLike, wav_path: str | os.PathLike, *,
                soundfont: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The MIDI file at ``midi_path`` synthesised offline to a 16-bit mono WAV at ``wav_path``.

    With a General MIDI soundfont (``soundfont``, else ``$NOTE_MATRIX_SOUNDFONT``, else a
    usual place) through FluidSynth when pyfluidsynth is installed, else pretty_midi's
    sine waves (``note_matrix.render.synthesize``). Returns ``(wav_path, which synthesiser)``.
    """
    from note_matrix.render import SAMPLE_RATE, synthesize, wav_bytes

    audio, how = synthesize(_notes_of(midi_path), soundfont=soundfont)
    wav_path = Path(wav_path)
    atomic.write_bytes(wav_path, wav_bytes(audio, SAMPLE_RATE), sync=False)
    return wav_path, how

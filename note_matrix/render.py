"""Pictures and sound: piano-roll and loss-curve PNGs, and WAV audio, all offline.

Audio is synthesised with pretty_midi: with a General MIDI soundfont through FluidSynth
when both are installed (``pyfluidsynth`` and a ``.sf2`` file, given or found in the
usual places), otherwise with pretty_midi's own sine-wave synthesis, which needs nothing.
"""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pretty_midi  # noqa: E402

from note_matrix.evaluation.music_stats import Notes  # noqa: E402

SAMPLE_RATE = 22_050
SOUNDFONT_PLACES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
SOUNDFONT_ENV = "NOTE_MATRIX_SOUNDFONT"


def piano_roll_png(notes: Notes, title: str = "", path: str | os.PathLike | None = None,
                   primer: Notes | None = None) -> bytes:
    """A piano roll (time in seconds across, MIDI pitch up) as PNG bytes; written to
    ``path`` too when given. ``primer``: notes drawn in grey before ``notes`` (which
    then start where the primer ends), with a line between them."""
    figure, axes = plt.subplots(figsize=(10, 4), dpi=100)
    try:
        every = notes
        if primer is not None and len(primer):
            for start, end, pitch in zip(primer.start_seconds, primer.end_seconds, primer.pitch):
                axes.add_patch(plt.Rectangle((start, pitch - 0.4), max(end - start, 0.01), 0.8, color="0.6"))
            axes.axvline(float(primer.end_seconds.max()), color="tab:red", linewidth=1)
            every = Notes(np.concatenate([primer.start_seconds, notes.start_seconds]),
                          np.concatenate([primer.end_seconds, notes.end_seconds]),
                          np.concatenate([primer.pitch, notes.pitch]))
        for start, end, pitch in zip(notes.start_seconds, notes.end_seconds, notes.pitch):
            axes.add_patch(plt.Rectangle((start, pitch - 0.4), max(end - start, 0.01), 0.8, color="tab:blue"))
        notes = every
        end = float(notes.end_seconds.max()) if len(notes) else 1.0
        low, high = (int(notes.pitch.min()), int(notes.pitch.max())) if len(notes) else (60, 72)
        axes.set_xlim(0, max(end, 1e-3))
        axes.set_ylim(low - 2, high + 2)
        axes.set_xlabel("time (s)")
        axes.set_ylabel("MIDI pitch")
        axes.set_title(title or f"{len(notes)} notes")
        axes.grid(alpha=0.3)
        return _png(figure, path)
    finally:
        plt.close(figure)


def loss_curve_png(history: dict[str, list[float]], path: str | os.PathLike | None = None, title: str = "") -> bytes:
    """Training and validation loss per epoch (log scale) as PNG bytes; written to ``path``
    too when given. ``history``: Keras-style, e.g. ``{"loss": [...], "val_loss": [...]}``."""
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        for name, values in sorted(history.items()):
            if name.endswith("loss") and values:
                axes.plot(range(1, len(values) + 1), values, marker="." if len(values) < 50 else None, label=name)
        axes.set_xlabel("epoch")
        axes.set_ylabel("loss")
        if any(v > 0 for name, values in history.items() if name.endswith("loss") for v in values):
            axes.set_yscale("log")
        axes.set_title(title or "loss per epoch")
        if axes.get_legend_handles_labels()[0]:  # nothing drawn (no epoch yet): no legend, no warning
            axes.legend()
        axes.grid(alpha=0.3)
        return _png(figure, path)
    finally:
        plt.close(figure)


def _png(figure, path) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path | None:
    """The soundfont to use: ``soundfont``, else ``$NOTE_MATRIX_SOUNDFONT``, else a usual place."""
    for candidate in (soundfont, os.environ.get(SOUNDFONT_ENV), *SOUNDFONT_PLACES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def synthesize(notes: Notes, *, sample_rate: int = SAMPLE_RATE, soundfont: str | os.PathLike | None = None,
               velocity: int = 90) -> tuple[np.ndarray, str]:
    """``(audio, how)``: mono float32 in [-1, 1], and which synthesiser made it."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity, int(p), float(s), float(e))
                   for s, e, p in zip(notes.start_seconds, notes.end_seconds, notes.pitch)]
    midi.instruments.append(piano)
    font = find_soundfont(soundfont)
    audio, how = None, "sine waves (pretty_midi)"
    if font is not None and len(notes):
        try:
            audio, how = midi.fluidsynth(fs=sample_rate, sf2_path=str(font)), f"FluidSynth with {font.name}"
        except ImportError:  # pyfluidsynth is not installed
            audio = None
    if audio is None:
        audio = midi.synthesize(fs=sample_rate) if len(notes) else np.zeros(sample_rate // 10)
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio / peak if peak > 1 else audio), how


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit mono PCM WAV of ``audio`` (float in [-1, 1])."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()

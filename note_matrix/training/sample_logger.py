"""Hearing the model improve: generated samples in TensorBoard, and the loss curve as a PNG.

``SampleLogger`` is a Keras callback: every ``every`` epochs (and after the last one) it
generates a short piece from one fixed primer with the weights of the moment, and writes
to the run's TensorBoard ``validation`` folder

- ``samples/piano_roll``: the primer (grey) and the piece after it (blue) as a piano-roll
  image (``render.piano_roll_png``);
- ``samples/audio``: the piece as sound (``render.synthesize``: FluidSynth with a General
  MIDI soundfont when one is installed, else pretty_midi's sine waves), at 16 kHz and
  at most ``max_audio_seconds``, to keep event files small;

with the epoch's number as the step (1 for the first epoch, as the ``epoch_*`` scalars), and the piece
as ``samples/epoch-NNNN.mid`` (NNNN: epochs done) in the run folder (the primer as
``samples/primer.mid``). Generation uses the carried-state method with the head's own
default: a sample at temperature 1 where the head samples by default and needs no
calibration (``SAMPLE_SEED``, from its own NumPy generator), else its point steps. It
changes nothing the training uses: the weights are read, never written; the model is
neither compiled nor called by Keras; the generator is compiled once, at the first sample.

``write_loss_curve`` draws the training and validation loss per epoch to
``logs/<run>/loss.png``.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import keras
import numpy as np

from note_matrix import atomic
from note_matrix.errors import NoteMatrixError, RunError
from note_matrix.evaluation.music_stats import Notes
from note_matrix.midi import read_midi
from note_matrix.render import loss_curve_png, piano_roll_png, synthesize, wav_bytes
from note_matrix.training.tensorboard import SummaryWriter

SAMPLE_LENGTH = 200  # rows: about 100 notes
SAMPLE_SEED = 0  # the random numbers of every sample: epochs differ by their weights only
SAMPLE_RATE = 16_000  # Hz: a 30 s clip is under 1 MB in the event file
MAX_AUDIO_SECONDS = 30.0
LOSS_CURVE_FILE = "loss.png"
SAMPLES_FOLDER = "samples"
PIANO_ROLL_TAG = "samples/piano_roll"
AUDIO_TAG = "samples/audio"


def png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels of PNG bytes (from the IHDR chunk)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def first_seconds(notes: Notes, seconds: float) -> Notes:
    """The notes that start within the first ``seconds``, cut at ``seconds``."""
    keep = notes.start_seconds < seconds
    return Notes(notes.start_seconds[keep], np.minimum(notes.end_seconds[keep], seconds), notes.pitch[keep])


class SampleLogger(keras.callbacks.Callback):
    """Logs a piece generated from ``primer`` every ``every`` epochs and after the last one.

    ``run_dir``: the run folder (events go to ``run_dir/<writer>``, MIDI files to
    ``run_dir/samples/`` when ``keep_midi``); ``primer``: ``(k, 3)`` float32 note-matrix
    rows, e.g. the first window of the first validation file; ``length``: rows generated
    after it; ``tempo_us_per_beat``: the tempo of the MIDI files (the primer's file's);
    ``soundfont``: a ``.sf2`` for FluidSynth (default: ``$NOTE_MATRIX_SOUNDFONT`` or a usual
    place, else sine waves). ``seconds``: how long each sample took, by epoch.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        primer: np.ndarray,
        representation,
        head,
        meta: dict,
        *,
        every: int = 1,
        length: int = SAMPLE_LENGTH,
        sample_rate: int = SAMPLE_RATE,
        max_audio_seconds: float = MAX_AUDIO_SECONDS,
        soundfont: str | os.PathLike | None = None,
        writer: str = "validation",
        keep_midi: bool = True,
    ):
        super().__init__()
        primer = np.asarray(primer)
        if primer.ndim != 2 or primer.shape[0] < 1 or primer.shape[1] != len(representation.columns):
            raise ValueError(f"primer must be steps (k >= 1, {len(representation.columns)}), got shape {primer.shape}")
        if every < 1 or length < 1 or sample_rate < 1 or max_audio_seconds <= 0:
            raise ValueError("every, length, sample_rate and max_audio_seconds must be positive")
        self.run_dir = Path(run_dir)
        self.primer = primer
        self.representation = representation
        self.head = head
        self.meta = dict(meta)
        self.every = int(every)
        self.length = int(length)
        self.sample_rate = int(sample_rate)
        self.max_audio_seconds = float(max_audio_seconds)
        self.soundfont = soundfont
        self.writer_name = writer
        self.keep_midi = keep_midi
        self.seconds: dict[int, float] = {}
        self._writer: SummaryWriter | None = None  # opened at the first sample: after a resume has trimmed the events
        self._generator = None
        self._last_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        if (epoch + 1) % self.every == 0:
            self._try_sample(epoch)

    def on_train_end(self, logs=None):
        if self._last_epoch is not None and self._last_epoch not in self.seconds:
            self._try_sample(self._last_epoch)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _try_sample(self, epoch: int) -> None:
        """``log_sample``; a sample that fails is reported, and training goes on."""
        try:
            self.log_sample(epoch)
        except (NoteMatrixError, ValueError, OSError) as error:
            self.seconds[epoch] = float("nan")
            print(f"\nno sample after epoch {epoch + 1}: {error}")

    @property
    def sampling(self):
        """The head's default: temperature 1 where it samples by default without calibration, else None."""
        from note_matrix.generation import Sampling

        if self.head.samples_by_default and not self.head.needs_spread:
            return Sampling(temperature=1.0, random_seed=SAMPLE_SEED)
        return None

    def generate(self) -> np.ndarray:
        """``(length, columns)`` valid steps after the primer, with the model's current weights."""
        from note_matrix import generation

        sampling = self.sampling
        if self._generator is None:
            try:
                self._generator = generation.carried_state_generator(self.model, self.representation, self.head,
                                                                     sampling)
            except RunError:  # a model the carried loop cannot run: the card's window method
                self._generator = False
        if self._generator is False:
            return generation.generate_rows(self.model, self.primer, self.length, self.representation, self.head,
                                            method="window", progress=False, sampling=sampling)
        noise = generation.sampling_noise(self.head, sampling, 1, self.length)
        return self._generator.generate(self.primer[None], self.length, noise=noise)[0]

    def _primer_notes(self, folder: Path) -> Notes:
        path = folder / "primer.mid"
        if not path.is_file():
            self.representation.decode(self.primer, self.meta, path)
        return Notes.from_events(read_midi(path))

    def log_sample(self, epoch: int) -> None:
        """Generate, draw, synthesise and write the sample of ``epoch`` (0-based)."""
        started = time.perf_counter()
        rows = self.generate()
        folder = self.run_dir / SAMPLES_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch-{epoch + 1:04d}.mid"
        self.representation.decode(rows, self.meta, path)
        notes = Notes.from_events(read_midi(path))
        primer = self._primer_notes(folder)
        if not self.keep_midi:
            path.unlink()
            (folder / "primer.mid").unlink()
        how = "sampled at T=1" if self.sampling is not None else "point steps"
        title = (f"epoch {epoch + 1}: {len(notes)} notes from {self.length} steps ({how}) after the validation "
                 f"primer (grey)")
        start = float(primer.end_seconds.max()) if len(primer) else 0.0
        shifted = Notes(notes.start_seconds + start, notes.end_seconds + start, notes.pitch)
        png = piano_roll_png(shifted, title, primer=primer)
        width, height = png_size(png)
        audio, _ = synthesize(first_seconds(notes, self.max_audio_seconds), sample_rate=self.sample_rate,
                              soundfont=self.soundfont)
        audio = audio[: int(self.max_audio_seconds * self.sample_rate)]
        if self._writer is None:
            self._writer = SummaryWriter(self.run_dir / self.writer_name)
        self._writer.image(PIANO_ROLL_TAG, png, epoch + 1, height=height, width=width)
        self._writer.audio(AUDIO_TAG, wav_bytes(audio, self.sample_rate), epoch + 1, sample_rate=self.sample_rate,
                           frames=len(audio))
        self._writer.flush()
        self.seconds[epoch] = time.perf_counter() - started


def write_loss_curve(run_dir: str | os.PathLike, history: dict[str, list[float]] | None = None) -> Path:
    """Draw the loss per epoch to ``run_dir/loss.png`` (atomically) and return its path.

    ``history``: Keras-style, ``{"loss": [...], "val_loss": [...], ...}`` (every entry
    ending in ``loss`` is drawn); default: the ``epochs`` of the run's ``history.json``.
    """
    run_dir = Path(run_dir)
    if history is None:
        from note_matrix import runs

        saved = runs.read_json(run_dir / runs.HISTORY_FILE) or {}
        history = saved.get("epochs", {})
    path = run_dir / LOSS_CURVE_FILE
    png = loss_curve_png(history, title=f"{run_dir.name}: loss per epoch")
    return atomic.write_bytes(path, png, sync=False)

"""Piano rolls, loss curves and audio, and their TensorBoard summaries."""

from __future__ import annotations

import io
import wave

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from note_matrix.evaluation.music_stats import Notes
from note_matrix.render import loss_curve_png, piano_roll_png, synthesize, wav_bytes
from note_matrix.training.tensorboard import SummaryWriter

SCALE = Notes.build([(i * 0.25, i * 0.25 + 0.2, p) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])])


def test_piano_roll_and_loss_curve_are_pngs(tmp_path):
    png = piano_roll_png(SCALE, "C major", tmp_path / "roll.png")
    assert (tmp_path / "roll.png").read_bytes() == png
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1000, 400)
    pixels = np.asarray(image.convert("RGB"), dtype=int)
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 100)
    assert blue.sum() > 500  # the notes are drawn
    curve = loss_curve_png({"loss": [0.3, 0.2, 0.1], "val_loss": [0.35, 0.25, 0.2]}, tmp_path / "loss.png")
    assert Image.open(io.BytesIO(curve)).format == "PNG"
    assert Image.open(io.BytesIO(piano_roll_png(Notes.build([])))).format == "PNG"  # empty is fine


def test_synthesised_audio_plays_the_right_pitch():
    a4 = Notes.build([(0.0, 1.0, 69)])  # 440 Hz
    audio, how = synthesize(a4, sample_rate=8000, soundfont="/no/such/font.sf2")
    assert "sine" in how and audio.dtype == np.float32 and np.abs(audio).max() <= 1
    spectrum = np.abs(np.fft.rfft(audio[:8000]))
    assert abs(np.argmax(spectrum) * 8000 / 8000 - 440) <= 2  # 1 Hz bins over one second
    with wave.open(io.BytesIO(wav_bytes(audio, 8000))) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, 8000)
        assert clip.getnframes() == len(audio)


def test_images_and_audio_reach_tensorboard(tmp_path):
    writer = SummaryWriter(tmp_path)
    png = piano_roll_png(SCALE)
    width, height = Image.open(io.BytesIO(png)).size
    writer.image("samples/piano_roll", png, 3, height=height, width=width)
    audio, _ = synthesize(SCALE, sample_rate=8000)
    writer.audio("samples/audio", wav_bytes(audio, 8000), 3, sample_rate=8000, frames=len(audio))
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    assert events.Tags()["images"] == ["samples/piano_roll"] and events.Tags()["audio"] == ["samples/audio"]
    stored = events.Images("samples/piano_roll")[0]
    assert (stored.step, stored.width, stored.height) == (3, width, height)
    assert events.Audio("samples/audio")[0].content_type == "audio/wav"

"""Samples in TensorBoard during training, and the loss-curve PNG."""

from __future__ import annotations

import io
import json
import wave

import keras
import mido
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from models import ModelConfig, build_model, compile_model
from note_matrix import NoteMatrix
from note_matrix.training.sample_logger import AUDIO_TAG, PIANO_ROLL_TAG, SampleLogger, png_size, write_loss_curve

WINDOW = 10


def windows(song_folder, count=3):
    """Sliding windows of ``WINDOW`` rows and the row after each, from the first songs."""
    representation = NoteMatrix()
    arrays = [representation.encode(song_folder / f"song{i}.mid").steps for i in range(count)]
    x = np.stack([a[i : i + WINDOW] for a in arrays for i in range(len(a) - WINDOW)])
    y = np.stack([a[i + WINDOW] for a in arrays for i in range(len(a) - WINDOW)])
    return x, y, arrays[0][:WINDOW]


def tiny_model():
    config = ModelConfig(units=8, targets="last", dropout_rate=0.5)
    rep = NoteMatrix()
    head = rep.head(config.head, config.mixtures)
    return compile_model(build_model(config, rep.inputs(), head), config, head, rep.metrics(config.head, head))


def sample_logger(run_dir, primer, tempo_us_per_beat=500_000, **options):
    """A ``SampleLogger`` for the card's regression head and note matrix."""
    rep = NoteMatrix()
    return SampleLogger(run_dir, primer, rep, rep.head("regression", 1), {"tempo_us_per_beat": tempo_us_per_beat},
                        **options)


def fit(x, y, epochs, callbacks=()):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.fit(x, y, batch_size=64, epochs=epochs, shuffle=False, verbose=0, callbacks=list(callbacks))
    return model


def read_events(folder):
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    return events


def test_samples_reach_tensorboard_at_the_right_epochs(song_folder, tmp_path):
    x, y, primer = windows(song_folder)
    logger = sample_logger(tmp_path, primer, every=2, length=40, tempo_us_per_beat=600_000)
    fit(x, y, epochs=5, callbacks=[logger])
    events = read_events(tmp_path / "validation")
    # every 2 epochs: after epochs 2 and 4, and after the last one; the step is the epoch
    assert [image.step for image in events.Images(PIANO_ROLL_TAG)] == [2, 4, 5]
    assert [clip.step for clip in events.Audio(AUDIO_TAG)] == [2, 4, 5]
    image = events.Images(PIANO_ROLL_TAG)[0]
    assert image.encoded_image_string[:4] == b"\x89PNG"
    assert (image.width, image.height) == png_size(image.encoded_image_string)
    clip = events.Audio(AUDIO_TAG)[-1]
    assert clip.content_type == "audio/wav" and clip.sample_rate == 16_000
    with wave.open(io.BytesIO(clip.encoded_audio_string)) as audio:
        assert (audio.getnchannels(), audio.getframerate()) == (1, 16_000)
        assert 0 < audio.getnframes() <= 30 * 16_000
    midi_files = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert midi_files == ["epoch-0002.mid", "epoch-0004.mid", "epoch-0005.mid", "primer.mid"]
    tempo = [m.tempo for m in mido.MidiFile(tmp_path / "samples" / "epoch-0005.mid").tracks[0] if m.type == "set_tempo"]
    assert tempo == [600_000]
    assert sorted(logger.seconds) == [1, 3, 4] and all(s > 0 for s in logger.seconds.values())


def test_the_last_epoch_is_not_logged_twice(song_folder, tmp_path):
    x, y, primer = windows(song_folder, count=1)
    fit(x, y, epochs=2, callbacks=[sample_logger(tmp_path, primer, every=1, length=10)])
    assert [image.step for image in read_events(tmp_path / "validation").Images(PIANO_ROLL_TAG)] == [1, 2]


def test_sampling_does_not_change_training(song_folder, tmp_path):
    x, y, primer = windows(song_folder, count=2)
    plain = fit(x, y, epochs=3)
    logged = fit(x, y, epochs=3, callbacks=[sample_logger(tmp_path, primer, every=1, length=30)])
    assert len(read_events(tmp_path / "validation").Images(PIANO_ROLL_TAG)) == 3
    for a, b in zip(plain.get_weights(), logged.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_sample_logger_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="primer"):
        sample_logger(tmp_path, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="positive"):
        sample_logger(tmp_path, np.zeros((5, 3)), every=0)


def test_loss_curve_is_a_png(tmp_path):
    path = write_loss_curve(tmp_path, {"loss": [0.3, 0.2, 0.15], "val_loss": [0.35, 0.3, 0.28], "last_mse": [1, 2, 3]})
    assert path == tmp_path / "loss.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_size(path.read_bytes()) == (700, 400)
    assert not list(tmp_path.glob("*.part"))


def test_loss_curve_from_history_json(tmp_path):
    history = {"monitor": "val_last_mse", "epochs": {"loss": [0.5, 0.25], "val_loss": [0.6, 0.4]}}
    (tmp_path / "history.json").write_text(json.dumps(history))
    assert write_loss_curve(tmp_path).read_bytes()[:4] == b"\x89PNG"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_loss_curve(empty).is_file()  # no epochs yet: an empty plot, no error


def test_the_primer_is_drawn_in_grey_before_the_piece():
    from io import BytesIO

    from PIL import Image

    from note_matrix.evaluation.music_stats import Notes
    from note_matrix.render import piano_roll_png

    primer = Notes.build([(0.0, 1.0, 60), (1.0, 2.0, 62)])
    piece = Notes.build([(2.0, 3.0, 64), (3.0, 4.0, 65)])

    def pixels(png: bytes) -> dict:
        return {colour: count for count, colour in Image.open(BytesIO(png)).convert("RGB").getcolors(1 << 16)}

    grey, blue = (153, 153, 153), (31, 119, 180)  # the primer's "0.6" and the piece's "tab:blue"
    drawn, alone = pixels(piano_roll_png(piece, primer=primer)), pixels(piano_roll_png(piece))
    assert drawn[grey] > alone.get(grey, 0) + 2000 and drawn[blue] > 2000  # (text antialiasing has a few greys)

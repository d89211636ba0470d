"""The tiny end-to-end path under each Keras backend, each in its own process.

Keras picks its backend once per process (``KERAS_BACKEND``), so every backend other
than the one running the suite is exercised in a subprocess: train 2 epochs, check the
TensorBoard tags, generate, check the output plays, and generate from the same run under
the other backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mido
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def _struck_notes(path: Path) -> list:
    return [m for m in mido.merge_tracks(mido.MidiFile(path).tracks) if m.type == "note_on" and m.velocity > 0]


def _run(backend: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_train_and_generate_under_each_backend(backend, song_folder, tmp_path):
    logs = tmp_path / "logs"
    trained = _run(backend, "train.py", "--dataset", str(song_folder), "--data-dir", str(tmp_path / "data"),
                   "--logdir", str(logs), "--run-name", backend, "--units", "8", "--epochs", "2", "--quiet")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = logs / backend
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == backend and "CPU" in config["device"]

    for writer, tags in (("train", {"lstm/kernel", "dense/bias"}), ("validation", {"lstm/output", "activation/output"})):
        events = EventAccumulator(str(run / writer), size_guidance={"histograms": 0, "scalars": 0})
        events.Reload()
        assert tags <= set(events.Tags()["histograms"])
        assert {"batch_loss", "epoch_loss", "epoch_pitch_accuracy"} <= set(events.Tags()["scalars"])
    out = tmp_path / "out.mid"
    generated = _run(backend, "generate.py", "--seed", str(song_folder / "song0.mid"), "--model", str(run),
                     "--length", "40", "--out", str(out), "--quiet")
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert _struck_notes(out)

    # A run trained under one backend generates under the other.
    other = "jax" if backend == "tensorflow" else "tensorflow"
    crossed = tmp_path / "crossed.mid"
    generated = _run(other, "generate.py", "--seed", str(song_folder / "song0.mid"), "--model", str(run),
                     "--length", "40", "--out", str(crossed), "--quiet")
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert _struck_notes(crossed)

"""Shared fixtures: the dataset mirror (skips when absent), synthetic songs, one tiny trained run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.midi_factory import random_song

MIRROR_ENV = "NOTE_MATRIX_MIRROR"


def mirror_path() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():  # set but wrong: a broken CI set-up, not a reason to skip
        raise RuntimeError(f"{MIRROR_ENV}={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The dataset mirror (``../shared/datasets`` in CI); tests using it skip without it."""
    path = mirror_path()
    if path is None:
        pytest.skip(f"{MIRROR_ENV} is not set")
    return path


@pytest.fixture(scope="session")
def song_folder(tmp_path_factory) -> Path:
    """Six synthetic songs of 80-100 notes (160-250 rows each)."""
    folder = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(7)
    for i in range(6):
        random_song(folder / f"song{i}.mid", rng, n_notes=80 + 4 * i)
    return folder


@pytest.fixture(scope="session")
def trained_run(song_folder, tmp_path_factory) -> Path:
    """A run trained by ``train.py`` itself: 8 units, 2 epochs, the six synthetic songs."""
    import train

    base = tmp_path_factory.mktemp("training")
    logdir = base / "logs"
    code = train.main([
        "--dataset", str(song_folder), "--data-dir", str(base / "data"), "--logdir", str(logdir),
        "--run-name", "tiny", "--units", "8", "--epochs", "2", "--batch-size", "32", "--quiet",
    ])
    assert code == 0
    return logdir / "tiny"

"""A tiny fixed-seed run of every head of the card's note matrix, as numbers to pin.

``python -m tests.pinned_run OUT.json`` (under the backend of ``KERAS_BACKEND``) trains
each head 2 epochs on synthetic songs with ``train.py``, generates with ``generate.py``
(the deterministic point rows and a sampled piece) and scores the test split with
``evaluate.py``. It writes the loss history, the SHA-256 of each generated file and the
test scores: ``tests/test_pinned.py`` compares them with the values recorded before the
representation interface and the field heads replaced the string heads.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HEADS = ("regression", "categorical", "mdn")


def _songs(folder: Path) -> Path:
    from tests.midi_factory import random_song

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    for i in range(6):
        random_song(folder / f"song{i}.mid", rng, n_notes=70 + 5 * i)
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned_numbers(base: Path) -> dict:
    import evaluate
    import generate
    import train

    songs = _songs(base / "songs")
    out = {}
    for head in HEADS:
        logdir = base / "logs"
        args = ["--dataset", str(songs), "--data-dir", str(base / "data"), "--logdir", str(logdir),
                "--run-name", head, "--units", "8", "--epochs", "2", "--batch-size", "16", "--window", "20",
                "--sample-every", "0", "--histogram-freq", "1", "--quiet", "--seed", "3"]
        if head != "regression":
            args += ["--head", head]
        if head == "mdn":
            args += ["--mixtures", "2"]
        assert train.main(args) == 0
        run = logdir / head
        history = json.loads((run / "history.json").read_text())["epochs"]
        point, sampled = base / f"{head}-point.mid", base / f"{head}-sampled.mid"
        seed = ["--seed", str(songs / "song0.mid"), "--model", str(run), "--length", "60", "--quiet"]
        assert generate.main([*seed, "--out", str(point), "--argmax"]) == 0
        assert generate.main([*seed, "--out", str(sampled), "--temperature", "1", "--random-seed", "5"]) == 0
        assert evaluate.main(["--model", str(run), "--quiet", "--json", str(base / f"{head}-eval.json")]) == 0
        scores = json.loads((base / f"{head}-eval.json").read_text())["test"]["scores"]
        out[head] = {
            "history": {name: history[name] for name in sorted(history) if name in ("loss", "val_loss",
                                                                                   "val_last_mse", "val_last_loss")},
            "point_sha256": _sha(point),
            "sampled_sha256": _sha(sampled),
            "scores": scores,
        }
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        numbers = pinned_numbers(Path(scratch))
    Path(sys.argv[1]).write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")

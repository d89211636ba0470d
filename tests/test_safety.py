"""Safe loading, no pickle, and resource limits refused early."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import generate
from tests.midi_factory import random_song

ROOT = Path(__file__).resolve().parents[1]


def _run_with_model(trained_run: Path, tmp_path: Path, model_bytes: bytes) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "config.json", run / "config.json")
    (run / "model.keras").write_bytes(model_bytes)
    return run


def _tampered(trained_run: Path, edit) -> bytes:
    """The trained model file with its config.json rewritten by ``edit``."""
    with zipfile.ZipFile(trained_run / "model.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = edit(members["config.json"].decode()).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_lambda_layer_model_is_refused_by_safe_mode(trained_run, song_folder, tmp_path, capsys):
    sneaky = keras.Sequential([keras.Input((None, 3)), keras.layers.Lambda(lambda x: x[:, -1] * 2)])
    sneaky.save(tmp_path / "sneaky.keras")
    run = _run_with_model(trained_run, tmp_path, (tmp_path / "sneaky.keras").read_bytes())
    assert generate.main(["--seed", str(song_folder / "song0.mid"), "--model", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"generate.py: error: {run / 'model.keras'}: cannot load the model (ValueError")
    assert "Lambda" in err and not (run / "generated.mid").exists()


@pytest.mark.parametrize("edit", [
    lambda text: text.replace('"module": "keras.layers", "class_name": "Activation"',
                              '"module": "os", "class_name": "system"'),
    lambda text: text[: len(text) // 2],
    lambda text: text.replace('"units": 8', '"units": "eight"'),
])
def test_tampered_model_file_is_a_one_line_error(edit, trained_run, song_folder, tmp_path, capsys):
    run = _run_with_model(trained_run, tmp_path, _tampered(trained_run, edit))
    assert generate.main(["--seed", str(song_folder / "song0.mid"), "--model", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot load the model" in err


def test_no_pickle_anywhere():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    sources = [path for path in tracked if path != "tests/test_safety.py"]
    assert "note_matrix/datasets/encode.py" in sources
    forbidden = re.compile(r"\bimport pickle\b|\bfrom pickle\b|\bcPickle\b|\bjoblib\b|\bdill\b|allow_pickle\s*=\s*True"
                           r"|safe_mode\s*=\s*False|\btorch\.load\b|\bnp\.load\((?![^)]*allow_pickle=False)")
    offenders = [f"{path}:{n}" for path in sources for n, line in enumerate((ROOT / path).read_text().splitlines(), 1)
                 if forbidden.search(line)]
    assert offenders == []


def test_generation_length_over_the_limit_is_refused_early(capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate.parse_args(["--seed", "x.mid", "--length", str(generate.MAX_LENGTH + 1)])
    assert exit_info.value.code == 2
    assert f"must be between 1 and {generate.MAX_LENGTH:,}" in capsys.readouterr().err


def test_seed_over_the_size_limit_is_refused_before_reading(trained_run, tmp_path, capsys, monkeypatch):
    seed = random_song(tmp_path / "big.mid", np.random.default_rng(0), 200)
    monkeypatch.setenv("NOTE_MATRIX_MAX_FILE_BYTES", "1024")
    assert generate.main(["--seed", str(seed), "--model", str(trained_run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"generate.py: error: {seed}: {seed.stat().st_size:,} bytes, over the 1,024-byte limit "
                   "(NOTE_MATRIX_MAX_FILE_BYTES)")

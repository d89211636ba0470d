"""Bad input: one-line errors naming the file and the reason, exit status 2, no traceback;
bad files in a dataset are skipped, reported, and cost nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import generate
import train
from tests.midi_factory import random_song, smf, tempo_event, track_chunk, write_song

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def bad_seeds(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the reason its error must give)."""
    (folder / "text.mid").write_text("MIDI? no, a shopping list")
    (folder / "empty.mid").write_bytes(b"")
    (folder / "truncated.mid").write_bytes(good.read_bytes()[:40])
    (folder / "directory.mid").mkdir()
    (folder / "riff.mid").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    write_song(folder / "short.mid", [(0.0, 0.5, 60, 100), (0.5, 0.5, 62, 100)])
    drums = track_chunk([(0, tempo_event(500_000)), (0, b"\x99\x24\x7f"), (100, b"\x89\x24\x00")])
    (folder / "drums.mid").write_bytes(smf([drums], fmt=0))
    return {
        "text": (folder / "text.mid", "not a MIDI file"),
        "empty": (folder / "empty.mid", "empty file"),
        "truncated": (folder / "truncated.mid", "truncated"),
        "directory": (folder / "directory.mid", "is a directory"),
        "riff": (folder / "riff.mid", "RIFF"),
        "missing": (folder / "missing.mid", "no such file"),
        "short": (folder / "short.mid", "only 4 steps; the model needs at least 50"),
        "drums": (folder / "drums.mid", "no notes"),
    }


@pytest.mark.parametrize("name", ["text", "empty", "truncated", "directory", "riff", "missing", "short", "drums"])
def test_bad_seed_is_one_line_exit_2_no_traceback(name, trained_run, song_folder, tmp_path):
    path, reason = bad_seeds(tmp_path, song_folder / "song0.mid")[name]
    result = run_script("generate.py", "--seed", str(path), "--model", str(trained_run), "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"generate.py: error: {path}: ")
    assert reason in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (trained_run / "generated.mid").exists()


def test_unreadable_seed(trained_run, song_folder, tmp_path, capsys, monkeypatch):
    seed = tmp_path / "locked.mid"
    seed.write_bytes((song_folder / "song0.mid").read_bytes())
    if os.geteuid() == 0:  # root reads anything: simulate the operating system's refusal
        real_open = os.open

        def refuse(file, *args, **kwargs):
            if Path(file) == seed:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    else:
        seed.chmod(0)
    assert generate.main(["--seed", str(seed), "--model", str(trained_run), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"generate.py: error: {seed}: permission denied"


def test_missing_and_broken_runs_are_one_line_errors(trained_run, song_folder, tmp_path, capsys):
    seed = str(song_folder / "song0.mid")
    assert generate.main(["--seed", seed, "--model", str(tmp_path / "nowhere")]) == 2
    assert "not a run folder (no config.json)" in capsys.readouterr().err
    assert generate.main(["--seed", seed, "--logdir", str(tmp_path / "empty-logs")]) == 2
    assert "no trained run here" in capsys.readouterr().err

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained_run / "config.json").read_text())
    (broken / "model.keras").write_bytes((trained_run / "model.keras").read_bytes()[:500])
    assert generate.main(["--seed", seed, "--model", str(broken), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"generate.py: error: {broken / 'model.keras'}: damaged model file")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["--length", "0"], ["--length", "ten"], []])
def test_generate_wrong_flags_get_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate.parse_args(argv if not argv else ["--seed", "x.mid", *argv])
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_dataset_with_bad_files_trains_on_the_good_ones(song_folder, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for song in sorted(song_folder.iterdir()):
        (folder / song.name).write_bytes(song.read_bytes())
    reasons = bad_seeds(folder, song_folder / "song0.mid")
    bad = {p.name for name, (p, _) in reasons.items() if name != "missing"}
    logdir = tmp_path / "logs"
    code = train.main(["--dataset", str(folder), "--data-dir", str(tmp_path / "data"), "--logdir", str(logdir),
                       "--run-name", "mixed", "--units", "8", "--epochs", "1", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    report = logdir / "mixed" / "skipped.txt"
    assert f"skipped {len(bad)} of {len(bad) + 6} files, see {report}" in out
    listed = dict(line.split("\t") for line in report.read_text().splitlines())
    assert set(listed) == bad
    assert "not a MIDI file" in listed["text.mid"] and "is a directory" in listed["directory.mid"]
    split = (logdir / "mixed" / "split.json").read_text()
    for song in song_folder.iterdir():
        assert song.name in split  # every good file is used
    assert (logdir / "mixed" / "model.keras").is_file()


def test_dataset_with_no_usable_file_is_a_clear_error(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.mid").write_text("nope")
    random_song(folder / "b.mid", np.random.default_rng(0), 5)
    assert train.main(["--dataset", str(folder), "--data-dir", str(tmp_path / "data"),
                       "--logdir", str(tmp_path / "logs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"train.py: error: {folder}: none of 2 files is usable")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_errors_after_keras_loads_are_one_line_under_both_backends(backend, trained_run, song_folder, tmp_path):
    """TensorFlow's native start-up lines (absl, CUDA's probe) are held back: the error is the only line."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    env.pop("NOTE_MATRIX_STARTUP_LOG", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    commands = {
        "train.py": ["train.py", "--dataset", str(empty), "--data-dir", str(tmp_path / "data"),
                     "--logdir", str(tmp_path / "logs"), "--quiet"],
        "generate.py": ["generate.py", "--model", str(trained_run), "--seed", str(song_folder / "song0.mid"),
                        "--top-k", "5", "--out", str(tmp_path / "out.mid"), "--quiet"],
    }
    for script, args in commands.items():
        result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"{script}: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out.mid").exists()

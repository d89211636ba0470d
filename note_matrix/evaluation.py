"""How good is a run? Scores on its test split beside baselines, and music statistics.

Two questions, two entries in ``logs/<run>/evaluation.json`` (``evaluate.py``):

``"test"`` (``evaluate_test``): the run's model predicts the row after every window of
``window_length`` rows of each test file (the split saved with the run in
``split.json``), so every row at index ``window_length`` or later is scored, the rows
``baselines.target_rows`` gives. The model and the baselines of ``note_matrix.baselines``
(repeat the previous row, the training mean, a first-order Markov chain over pitches,
fitted on the run's training files) are scored on exactly those rows with
``baselines.score``: mean squared error per column and overall, pitch accuracy, and the
negative log-likelihood per row in nats where the predictor defines a distribution.

``"generated"`` (``compare_generated``): the music statistics of
``note_matrix.music_stats`` of a folder of generated MIDI files beside those of the run's
training files, with the generated files' pitch-class distance to the training set and
the longest run of notes copied from one training file.

Heads. A model's raw output becomes deterministic rows and a likelihood through its
head (``models.heads``): ``point_rows`` for the MSE and pitch accuracy, ``row_nll`` for
the NLL. The regression head's distribution is a Gaussian per column around its row with
the run's residual standard deviations (``calibration.json``; computed here from the
validation split, and said so, when the run has none), its pitch the Gaussian's mass over
the note's bin, so that every predictor's NLL is ``-log P(pitch) - log p(velocity) - log
p(time)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from note_matrix import runs
from note_matrix.baselines import COLUMNS, Baselines, Prediction, score, target_rows
from note_matrix.datasets import DatasetFiles, encode_dataset, find_midi_files, registered_datasets, resolve_dataset
from note_matrix.errors import DatasetError, MidiError, RunError
from note_matrix.midi import read_midi
from note_matrix.music_stats import FILE_STATISTICS, Notes, compare
from note_matrix.representation import representation_from_json

PREDICT_BATCH_SIZE = 256
HEAD_DEFAULT = "regression"


# -- the run and its data -------------------------------------------------------------------------

@dataclass
class RunData:
    """A run folder's configuration and the dataset files it was trained on, encoded (cached).

    ``arrays``: every usable file of the dataset as in training, ``(rows, 3)`` float32;
    ``split``: ``split.json``'s ``train`` / ``validation`` / ``test`` file keys;
    ``notes``: things the user should know (e.g. the dataset changed since training).
    """

    run_dir: Path
    config: dict
    files: DatasetFiles
    split: dict[str, list[str]]
    dataset: str  # the name or folder the files came from
    data_dir: Path  # downloads and the encoding cache
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def window_length(self) -> int:
        return int(self.config["train"]["window_length"])

    @property
    def head(self) -> str:
        return self.config["train"].get("model", {}).get("head", HEAD_DEFAULT)

    @property
    def representation(self):
        return representation_from_json(self.config["representation"])

    def model_config(self):
        """The run's ``models.ModelConfig``, rebuilt from ``config.json``."""
        from models import ModelConfig

        try:
            return ModelConfig(**self.config["train"]["model"])
        except (KeyError, TypeError, ValueError) as error:
            raise RunError(f"{self.run_dir / runs.CONFIG_FILE}: a model configuration this version does not read "
                           f"({error})") from None

    def part(self, name: str) -> list[np.ndarray]:
        """The encoded files of split part ``name`` (``encode`` first)."""
        return [self.arrays[key] for key in self.split[name]]


def open_run(run_dir: str | Path, *, dataset: str | None = None, data_dir: str | Path | None = None) -> RunData:
    """The run's config and split, and its dataset's files (found, not encoded yet).

    ``dataset`` / ``data_dir`` replace the run's own (a dataset folder that moved, a
    download folder elsewhere). Raises ``RunError`` for a folder that is not a finished
    run, ``DatasetError`` (with the reason and the fix) when the dataset cannot be read or
    lacks files of the split.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    config = runs.read_config(run_dir)
    split = runs.read_json(run_dir / runs.SPLIT_FILE)
    if not isinstance(split, dict) or not all(isinstance(split.get(p), list) for p in ("train", "validation", "test")):
        raise RunError(f"{run_dir}: no readable {runs.SPLIT_FILE} (the run's train/validation/test files)")
    try:
        train = config["train"]
        name = dataset or train["dataset"]
        data_dir = Path(data_dir or train["data_dir"])
    except (KeyError, TypeError):
        raise RunError(f"{run_dir / runs.CONFIG_FILE}: not a training configuration this version reads") from None
    try:
        files = resolve_dataset(name, data_dir)
    except DatasetError as error:
        raise DatasetError(f"{run_dir}: the run's dataset cannot be read: {error}; {_fix(name)}") from None
    if train.get("max_files") is not None:  # the files training encoded, so the cache's manifest stays as it is
        files.keys = files.keys[: train["max_files"]]
    return RunData(run_dir, config, files, {p: list(split[p]) for p in ("train", "validation", "test")}, name,
                   data_dir)


def _fix(dataset: str) -> str:
    if dataset in registered_datasets():
        return (f"set NOTE_MATRIX_MIRROR to a folder that holds it, or run again with network access to "
                f"download it (python train.py --dataset {dataset} does too)")
    return "put the files back, or pass --dataset with the folder they are in now"


def _require_files(data: RunData, parts: tuple[str, ...]) -> None:
    """``DatasetError`` unless every file of the split ``parts`` is among the dataset's files."""
    present = set(data.files.keys)
    missing = [key for part in parts for key in data.split[part] if key not in present]
    if missing:
        reason = data.files.skipped.get(missing[0], "not found")
        raise DatasetError(
            f"{data.run_dir}: {len(missing)} of the run's {'/'.join(parts)} files are not in {data.files.root} "
            f"(first: {missing[0]}: {reason}); {_fix(data.dataset)}"
        )


def encode(data: RunData, *, progress: bool = False) -> RunData:
    """Encode the dataset as training did (the cache makes this a ``stat`` per file) into ``data.arrays``."""
    _require_files(data, ("train", "validation", "test"))
    encoded = encode_dataset(data.files, data.representation, data.data_dir, min_steps=data.window_length + 1,
                             progress=progress)
    wanted = [key for part in ("train", "validation", "test") for key in data.split[part]]
    lost = [key for key in wanted if key not in encoded.arrays]
    if lost:
        raise DatasetError(f"{data.run_dir}: {len(lost)} of the run's files cannot be used now "
                           f"(first: {lost[0]}: {encoded.skipped.get(lost[0], 'unknown')})")
    saved = data.config.get("dataset", {}).get("fingerprint")
    if saved and saved != encoded.fingerprint:
        data.notes.append(f"the dataset's files changed since the run was trained (fingerprint {saved[:12]} then, "
                          f"{encoded.fingerprint[:12]} now); these scores use the files as they are now")
    data.arrays = {key: encoded.arrays[key] for key in wanted}
    return data


# -- scores on the test split ---------------------------------------------------------------------

def predict_outputs(model, arrays: list[np.ndarray], window_length: int, *,
                    batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
    """The model's raw output for the row after every window of every file: ``(rows, width)``.

    Rows in the order of ``baselines.target_rows(arrays, window_length)``. A model that
    predicts every step (``(batch, steps, width)``) is read at its last step. Batches are
    padded to ``batch_size``, so the model is compiled for one shape only.
    """
    import keras

    from note_matrix.windows import WindowIndex

    index = WindowIndex(arrays, window_length)
    outputs = []
    for start in range(0, len(index), batch_size):
        ids = np.arange(start, min(start + batch_size, len(index)))
        windows, _ = index.batch(np.pad(ids, (0, batch_size - len(ids)), mode="edge"))
        output = keras.ops.convert_to_numpy(model.predict_on_batch(windows))
        outputs.append(output[:, -1] if output.ndim == 3 else output)
        outputs[-1] = outputs[-1][: len(ids)]
    if not outputs:
        return np.zeros((0, 3), np.float32)
    return np.concatenate(outputs)


def point_rows_numpy(model_config, outputs: np.ndarray) -> np.ndarray:
    """The head's deterministic rows of raw ``outputs`` ``(rows, width)``: ``(rows, 3)`` float64."""
    import keras

    from models.heads import point_rows

    return np.asarray(keras.ops.convert_to_numpy(point_rows(model_config, outputs)), np.float64)


def calibration(data: RunData, model, model_config) -> tuple[dict[str, float] | None, str]:
    """``(residual_std, where it came from)``: the run's ``calibration.json``, else computed now
    from the validation split (``models.heads.residual_std_of``), else None (no validation files)."""
    from models.heads import residual_std_of
    from note_matrix.generation import read_calibration

    saved = read_calibration(data.run_dir)
    if saved is not None:
        return {name: float(saved["residual_std"][name]) for name in COLUMNS}, f"from the run's {runs.CALIBRATION_FILE}"
    if not data.split["validation"]:
        return None, f"no {runs.CALIBRATION_FILE} and no validation files"
    validation = data.part("validation")
    _, target = target_rows(validation, data.window_length)
    std = residual_std_of(model_config, predict_outputs(model, validation, data.window_length), target)
    files = f"{len(validation)} validation file{'s' if len(validation) != 1 else ''}"
    return std, f"computed now from the {files} (the run has no {runs.CALIBRATION_FILE})"


def require_test_files(data: RunData) -> None:
    if not data.split["test"]:
        raise RunError(f"{data.run_dir}: the run has no test files (trained with --test-fraction 0); nothing to score")


def model_label(head: str) -> str:
    return f"model ({head} head)"


def evaluate_test(data: RunData, model, *, batch_size: int = PREDICT_BATCH_SIZE) -> dict:
    """The ``"test"`` entry of ``evaluation.json``: every predictor's scores on the test rows.

    ``data`` comes from ``encode(open_run(...))``; raises ``RunError`` for a run without
    test files.
    """
    from models.heads import row_nll

    require_test_files(data)
    window = data.window_length
    test = data.part("test")
    _, target = target_rows(test, window)
    model_config = data.model_config()
    outputs = predict_outputs(model, test, window, batch_size=batch_size)
    model_scores = score(Prediction(point_rows_numpy(model_config, outputs)), target)
    std, std_source = calibration(data, model, model_config)
    if std is not None or data.head == "mdn":  # the mdn head's own mixture needs no calibration
        model_scores["nll"] = float(np.mean(row_nll(model_config, outputs, target, std)))
    baselines = Baselines.fit(data.part("train"))
    scores = {model_label(data.head): model_scores, **baselines.score_all(test, window)}
    return {
        "created": runs.utc_now(),
        "split": "test",
        "files": list(data.split["test"]),
        "rows": len(target),
        "window_length": window,
        "head": data.head,
        "residual_std": std,
        "residual_std_source": std_source,
        "scores": scores,
        "best": best_per_column(scores),
        "not_beaten": not_beaten(scores, model_label(data.head)),
        "notes": list(data.notes),
    }


# Score columns: (key, header, higher is better, format)
SCORE_COLUMNS = (
    ("mse_note", "MSE note", False, "{:.5f}"),
    ("mse_velocity", "MSE velocity", False, "{:.5f}"),
    ("mse_time", "MSE time", False, "{:.5f}"),
    ("mse", "MSE all", False, "{:.5f}"),
    ("pitch_accuracy", "pitch acc.", True, "{:.3f}"),
    ("nll", "NLL/row", False, "{:.3f}"),
)
SCORE_NAMES = {"mse_note": "MSE note", "mse_velocity": "MSE velocity", "mse_time": "MSE time",
               "mse": "MSE all", "pitch_accuracy": "pitch accuracy", "nll": "NLL"}


def best_per_column(scores: dict[str, dict]) -> dict[str, list[str]]:
    """For each score, the predictors with the best value (several on a tie; none if no one has it)."""
    best = {}
    for key, _, higher, _ in SCORE_COLUMNS:
        values = {name: s[key] for name, s in scores.items() if s.get(key) is not None and np.isfinite(s[key])}
        if values:
            top = max(values.values()) if higher else min(values.values())
            best[key] = [name for name, value in values.items() if value == top]
    return best


def not_beaten(scores: dict[str, dict], model: str) -> list[dict]:
    """Every (score, baseline) where the model is not strictly better than the baseline."""
    out = []
    mine = scores[model]
    for key, _, higher, _ in SCORE_COLUMNS:
        for name, theirs in scores.items():
            if name == model or theirs.get(key) is None:
                continue
            value = mine.get(key)
            better = value is not None and np.isfinite(value) and (value > theirs[key] if higher else value < theirs[key])
            if not better:
                out.append({"score": key, "baseline": name, "model": value, "baseline_value": theirs[key]})
    return out




def format_test(result: dict, run_dir: str | Path = "") -> str:
    """The test scores as a table, the best value of each column marked ``*``, and a verdict."""
    scores, best = result["scores"], result["best"]
    name_width = max(len(name) for name in scores) + 2
    widths = [max(len(header), 9) + 3 for _, header, _, _ in SCORE_COLUMNS]
    lines = [
        (f"Test split of {run_dir or 'the run'}: {len(result['files'])} files, {result['rows']:,} rows scored "
         f"(every row after the first {result['window_length']} of each file)"),
        "",
        " " * name_width + "".join((header + " ").rjust(w) for (_, header, _, _), w in zip(SCORE_COLUMNS, widths)),
    ]
    for name, row in scores.items():
        cells = []
        for (key, _, _, form), width in zip(SCORE_COLUMNS, widths):
            value = row.get(key)
            text = "-" if value is None or not np.isfinite(value) else form.format(value)
            mark = "*" if name in best.get(key, ()) else " "
            cells.append((text + mark).rjust(width))
        lines.append(name.ljust(name_width) + "".join(cells))
    lines += [
        "",
        "* best in its column. MSE in note-matrix units ([0, 1] per column); pitch acc.: share of rows whose pitch,",
        "rounded to a MIDI note, is right; NLL/row: negative log-likelihood in nats per row, -log P(pitch) - log",
        "p(velocity) - log p(time), where the predictor gives a distribution ('-': none).",
    ]
    std, where = result.get("residual_std"), result.get("residual_std_source", "")
    if result["head"] != "mdn":  # the mdn head has its own mixture
        spread = ", ".join(f"{k} {v:.4f}" for k, v in std.items()) if std else "none"
        what = ("Gaussians around its prediction (the pitch: the mass over the note's bin)"
                if result["head"] == "regression" else "its softmax for the pitch, Gaussians around its prediction "
                "for velocity and time")
        lines += [f"The model's distribution: {what}, with the residual std per column",
                  f"({spread}), {where}."]
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("")
    lines += verdict(result)
    return "\n".join(lines)


def verdict(result: dict) -> list[str]:
    """One line per baseline the model does not beat on some score, or one line that it beats them all."""
    model = model_label(result["head"])
    by_baseline: dict[str, list[str]] = {}
    for item in result["not_beaten"]:
        if item["model"] is None and item["score"] == "nll":
            continue  # the model has no NLL: not a loss, nothing to compare
        by_baseline.setdefault(item["baseline"], []).append(SCORE_NAMES[item["score"]])
    if not by_baseline:
        return [f"The {model} beats every baseline on every score."]
    return [f"The {model} does not beat the {name} on {_join(keys)}." for name, keys in by_baseline.items()]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# -- music statistics of generated files ----------------------------------------------------------

def read_notes(paths: dict[str, Path]) -> tuple[dict[str, Notes], dict[str, str]]:
    """``(notes, skipped)``: each readable MIDI file's notes by name; unreadable ones with the reason."""
    notes, skipped = {}, {}
    for name, path in paths.items():
        try:
            notes[name] = Notes.from_events(read_midi(path))
        except MidiError as error:
            skipped[name] = error.reason
    return notes, skipped


def compare_generated(data: RunData, directory: str | Path) -> dict:
    """The ``"generated"`` entry of ``evaluation.json``: ``music_stats.compare`` of every
    .mid/.midi under ``directory`` (recursively) with the run's training files.

    Raises ``RunError`` for a missing folder, one without MIDI files or with none readable.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory}: no such folder of generated MIDI files")
    keys = find_midi_files(directory)
    if not keys:
        raise RunError(f"{directory}: no .mid or .midi files in this folder or below it")
    generated, skipped = read_notes({key: directory / key for key in keys})
    if not generated:
        first = next(iter(skipped.items()))
        raise RunError(f"{directory}: none of the {len(keys)} MIDI files can be read (first: {first[0]}: {first[1]})")
    _require_files(data, ("train",))
    training, training_skipped = read_notes({key: data.files.path(key) for key in data.split["train"]})
    result = compare(list(generated.values()), list(training.values()))
    result.update({
        "created": runs.utc_now(),
        "directory": str(directory),
        "files": list(generated),
        "skipped": skipped,
        "training_files_skipped": training_skipped,
        "outside_training_range": outside_training_range(result),
    })
    return result


def outside_training_range(result: dict) -> list[str]:
    """The statistics whose generated mean lies outside the training files' [min, max]."""
    out = []
    for name in FILE_STATISTICS:
        mine, theirs = result["generated"].get(name), result["training"].get(name)
        if mine and theirs and not theirs["min"] <= mine["mean"] <= theirs["max"]:
            out.append(name)
    return out


# label, format of a mean, format of a file's value (counts are whole numbers)
STATISTIC_LABELS = {
    "pitch_range": ("pitch range (semitones)", "{:.1f}", "{:.0f}"),
    "pitches_used": ("pitches used", "{:.1f}", "{:.0f}"),
    "pitch_classes_used": ("pitch classes used", "{:.1f}", "{:.0f}"),
    "average_pitch_interval": ("average pitch interval (semitones)", "{:.2f}", "{:.2f}"),
    "note_density": ("note density (notes/s)", "{:.2f}", "{:.2f}"),
    "average_inter_onset_interval": ("average inter-onset interval (s)", "{:.3f}", "{:.3f}"),
    "polyphony": ("polyphony (notes sounding)", "{:.2f}", "{:.2f}"),
    "in_scale_rate": ("in-scale rate", "{:.3f}", "{:.3f}"),
    "longest_repeated_pitch": ("longest run of one pitch (notes)", "{:.1f}", "{:.0f}"),
    "repeated_4gram_fraction": ("repeated 4-gram fraction (collapse)", "{:.3f}", "{:.3f}"),
}
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def format_generated(result: dict, run_dir: str | Path = "") -> str:
    """The statistics as a table: statistic | generated mean [min-max] | training mean [min-max]."""
    generated, training = result["generated"], result["training"]
    flagged = set(result["outside_training_range"])

    def cell(stats, name):
        if not stats:
            return "-"
        _, mean, bound = STATISTIC_LABELS[name]
        return f"{mean.format(stats['mean'])} [{bound.format(stats['min'])}-{bound.format(stats['max'])}]"

    label_width = max(len(label) for label, _, _ in STATISTIC_LABELS.values()) + 2
    lines = [
        (f"{generated['files']} generated files in {result['directory']} vs the {training['files']} training files "
         f"of {run_dir or 'the run'}"),
        "",
        "statistic".ljust(label_width) + "generated mean [min-max]".ljust(30) + "training mean [min-max]",
    ]
    for name in FILE_STATISTICS:
        mark = "! " if name in flagged else "  "
        lines.append(STATISTIC_LABELS[name][0].ljust(label_width) + (cell(generated[name], name) + " " + mark)
                     .ljust(30) + cell(training[name], name))
    lines += [
        "",
        "pitch-class histogram".ljust(label_width) + "".join(pc.rjust(6) for pc in PITCH_CLASSES),
        "  generated".ljust(label_width) + "".join(f"{v:6.3f}" for v in generated["pitch_class_histogram"]),
        "  training".ljust(label_width) + "".join(f"{v:6.3f}" for v in training["pitch_class_histogram"]),
        "",
    ]
    distance = generated["pitch_class_distance"]
    lines.append("pitch-class distance to the training set (Jensen-Shannon, 0 same .. 1 disjoint): "
                 + ("-" if distance is None else f"{distance:.3f}"))
    copied = generated["longest_copied_notes"]
    lines.append(f"longest run of notes copied from one training file (memorisation): max {copied['max']}, "
                 f"mean {copied['mean']:.1f} per generated file")
    if flagged:
        lines.append("! the generated files' mean lies outside the training files' range: "
                     + ", ".join(STATISTIC_LABELS[name][0] for name in FILE_STATISTICS if name in flagged))
    for name, reason in result["skipped"].items():
        lines.append(f"skipped {name}: {reason}")
    for name, reason in result.get("training_files_skipped", {}).items():
        lines.append(f"skipped training file {name}: {reason}")
    return "\n".join(lines)


# -- saving ---------------------------------------------------------------------------------------

def save(path: str | Path, key: str, entry: dict, *, merge: bool = True) -> Path:
    """Write ``{key: entry}`` to ``path`` atomically, keeping the file's other entries when ``merge``."""
    path = Path(path)
    existing = runs.read_json(path) if merge else None
    data = existing if isinstance(existing, dict) else {}
    data[key] = entry
    runs.write_json(path, _plain(data))
    return path


def _plain(value):
    """``value`` with NumPy numbers made Python numbers and non-finite floats made None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value

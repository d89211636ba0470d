"""The ``"frame_nll"`` entry of ``evaluation.json``: a piano-roll run scored as the polyphonic benchmarks are.

Every paper on JSB Chorales, Nottingham, MuseData and Piano-midi.de reports one number,
the frame-level negative log-likelihood of a split (``frame_nll``): here the run's model
on every frame of every piece of its validation split and, where the run has one, its
test split (``model_frame_nll``), beside the frame baselines (``RollBaselines``, fitted
on the training pieces and scored on the same frames) and uniform guessing, and a table
of the published test-split figures (``PUBLISHED``). The published figures come from
the upstream files' test split; the mirror's copies withhold it, so a run read from the
mirror is scored on validation only, and said so.
"""

from __future__ import annotations

import math

from note_matrix import runs
from note_matrix.errors import RunError
from note_matrix.evaluation.frame_nll import RollBaselines
from note_matrix.evaluation.scores import model_label
from note_matrix.run_data import RunData

UNIFORM = "uniform guessing (88 ln 2)"
UNIFORM_NLL = 88 * math.log(2)
BENCHMARKS = {
    "jsb": "JSB Chorales",
    "nottingham-poly": "Nottingham",
    "musedata": "MuseData",
    "piano-midi": "Piano-midi.de",
}
# model -> dataset -> published frame-level NLL on the test split, nats per frame
PUBLISHED = {
    "LSTM (Bai, Kolter & Koltun 2018)": {"jsb": 8.45, "nottingham-poly": 3.29},
    "RNN-NADE (Boulanger-Lewandowski et al. 2012)": {
        "jsb": 5.19,
        "nottingham-poly": 2.31,
        "musedata": 5.60,
        "piano-midi": 7.05,
    },
    "biaxial LSTM (Johnson 2017)": {"piano-midi": 4.90},
    UNIFORM: dict.fromkeys(BENCHMARKS, 61.0),
}


def scored_splits(data: RunData, split: str) -> tuple[list[str], list[str]]:
    """``(splits, notes)``: validation, and test when ``split`` is ``"test"`` and the run has test pieces;
    a note when it has none. ``RunError`` when there is nothing to score."""
    splits = [part for part in ("validation", "test") if data.split[part] and (part != "test" or split == "test")]
    notes = []
    if split == "test" and not data.split["test"]:
        where = f"the mirror's copy of {data.benchmark['file']}" if data.benchmark is not None else "the run"
        notes.append(f"{where} holds no test split: scored on the validation split only")
    if not splits:
        raise RunError(f"{data.run_dir}: the run has no validation or test pieces; nothing to score")
    return splits, notes


def evaluate_frames(data: RunData, model, *, split: str = "test") -> dict:
    """The ``"frame_nll"`` entry: every predictor's frame-level NLL on each scored split (``scored_splits``).

    ``data`` comes from ``run_data.encode(run_data.open_run(...))`` of a piano-roll run
    whose model predicts every frame (``--targets all``); ``RunError`` otherwise.
    """
    if data.config.train.model.targets != "all":
        raise RunError(
            f"{data.run_dir}: the frame-level NLL needs a model that predicts every frame "
            "(--targets all); this run was trained with --targets last"
        )
    representation = data.representation  # one that reads_rolls: its frames and its model's frame NLL
    splits, notes = scored_splits(data, split)
    baselines = RollBaselines.fit([representation.frames(piece) for piece in data.part("train")])
    model_name = representation.model_label or model_label(data.config.train.model.head)
    scores: dict[str, dict[str, float]] = {}
    frames: dict[str, int] = {}
    for part in splits:
        scores.setdefault(model_name, {})[part] = representation.model_frame_nll(model, data.part(part))
        pieces = [representation.frames(piece) for piece in data.part(part)]
        frames[part] = int(sum(map(len, pieces)))
        for name, baseline in baselines.score_frames(pieces).items():
            if baseline["nll"] is not None:  # a point prediction has no likelihood
                scores.setdefault(name, {})[part] = baseline["nll"]
        scores.setdefault(UNIFORM, {})[part] = UNIFORM_NLL
    return {
        "created": runs.utc_now(),
        "dataset": data.config.train.dataset,
        "splits": {
            part: {"pieces": len(data.split[part]), "frames": frames[part]}
            for part in splits
        },
        "scores": scores,
        "published": PUBLISHED,
        "notes": [*data.notes, *notes],
    }


def format_frames(result: dict, run_dir: str = "") -> str:
    """The run's frame-level NLL per split beside the baselines, then the published figures, the run's column marked."""
    splits, dataset = list(result["splits"]), result["dataset"]
    width = max(len(name) for name in [*result["scores"], *result["published"]]) + 2
    sizes = "; ".join(
        f"{part} {size['pieces']} pieces, {size['frames']:,} frames" for part, size in result["splits"].items()
    )
    title = (
        f"Frame-level NLL of {run_dir or 'the run'} on {dataset} "
        "(nats per frame, the sum over the 88 keys; lower is better)"
    )
    lines = [title, sizes, "", " " * width + "".join(part.rjust(12) for part in splits)]
    for name, values in result["scores"].items():
        lines.append(name.ljust(width) + "".join(f"{values[part]:12.3f}" for part in splits))
    lines += ["", "Published, test split".ljust(width) + "".join(title.rjust(15) for title in BENCHMARKS.values())]
    for name, figures in result["published"].items():
        cells = ("-" if key not in figures else f"{figures[key]:.2f}" for key in BENCHMARKS)
        lines.append(name.ljust(width) + "".join(cell.rjust(15) for cell in cells))
    if dataset in BENCHMARKS:
        lines.append(f"This run's benchmark: {BENCHMARKS[dataset]}.")
    else:
        lines.append(f"{dataset} is not one of the four benchmarks: the published figures are not comparable.")
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)

"""The polyphonic benchmark table from the runs of ``benchmarks/polyphonic.sh``, in Markdown.

    python benchmarks/polyphonic_table.py benchmarks/results/polyphonic/logs

One row per run (dataset, model: the piano roll's head, or roll tokens): the validation
frame-level NLL that ``evaluate.py`` saved, the epochs trained and the best one, the wall
time ``polyphonic.sh`` measured, the parameters, and the published test-split figures of the
same dataset for comparison (``note_matrix.evaluation.benchmark.PUBLISHED``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from note_matrix import runs  # noqa: E402
from note_matrix.evaluation.benchmark import BENCHMARKS, PUBLISHED, UNIFORM  # noqa: E402
from note_matrix.startup import import_keras  # noqa: E402


def row(run: Path) -> list[str]:
    saved = json.loads((run / runs.CONFIG_FILE).read_text())
    config = saved["train"]
    history = json.loads((run / "history.json").read_text())
    scores = json.loads((run / runs.EVALUATION_FILE).read_text())["frame_nll"]["scores"]
    model_nll = next(values["validation"] for name, values in scores.items() if name.startswith("model ("))
    seconds = int((run / "train-seconds.txt").read_text())
    parameters = runs.load_model(run).count_params()
    dataset = config["dataset"]
    published = "; ".join(
        f"{name.split(' (')[0]} {figures[dataset]:.2f}"
        for name, figures in PUBLISHED.items()
        if dataset in figures and name != UNIFORM
    )
    epochs = len(history["epochs"]["loss"])
    return [
        BENCHMARKS.get(dataset, dataset),
        "roll tokens" if saved["representation"]["name"] == "roll_tokens" else config["model"]["head"],
        f"{model_nll:.2f}",
        f"{scores['Markov chain per key']['validation']:.2f}",
        f"{epochs} (best {history['best_epoch'] + 1})",
        f"{seconds // 60} min {seconds % 60:02d} s",
        f"{parameters:,}",
        published,
    ]


def main(logs: str) -> None:
    import_keras()
    header = ["dataset", "model (head)", "validation NLL", "Markov per key", "epochs", "time (this CPU)",
              "parameters", "published (test split)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 2 or i == 7 else "---:" for i in range(len(header))) + "|")
    for run in sorted(path.parent for path in Path(logs).glob(f"*/{runs.EVALUATION_FILE}")):
        print("| " + " | ".join(row(run)) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Where heatmaps go: PNG files, and the same images in the run's TensorBoard ``inspect`` folder.

Each call of ``write_heatmaps`` opens a new event file in ``<run>/inspect`` and logs its
images at the next step (the number of event files already there), so earlier heatmaps
stay and TensorBoard's step slider browses them; tags are ``neuron/<layer>/<unit>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from note_matrix import atomic
from note_matrix.inspection.features import UnitScore

INSPECT_FOLDER = "inspect"


@dataclass(frozen=True)
class Heatmap:
    """One unit's picture: PNG bytes, the file it goes to, its TensorBoard tag."""

    png: bytes
    path: Path
    tag: str


def tag(layer_name: str, unit: int) -> str:
    return f"neuron/{layer_name}/{unit}"


def png_path(run_dir: Path, layer_name: str, unit: int, out: str | None = None, *, several: bool = False) -> Path:
    """``out``, or ``<run>/inspect/<layer>-unit-<unit>.png``; with ``several`` units, ``-unit-<unit>``
    goes before ``out``'s suffix."""
    if out is None:
        return Path(run_dir) / INSPECT_FOLDER / f"{layer_name}-unit-{unit}.png"
    out = Path(out)
    return out.with_name(f"{out.stem}-unit-{unit}{out.suffix or '.png'}") if several else out


def write_heatmaps(run_dir: Path, heatmaps: list[Heatmap]) -> int:
    """Each heatmap's PNG to its path (whole or not at all) and to TensorBoard; returns the step logged."""
    from note_matrix.training.sample_logger import png_size
    from note_matrix.training.tensorboard import SummaryWriter

    for heatmap in heatmaps:
        heatmap.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(heatmap.path, heatmap.png, sync=False)
    folder = Path(run_dir) / INSPECT_FOLDER
    folder.mkdir(exist_ok=True)
    step = len(list(folder.glob("events.out.tfevents.*")))
    writer = SummaryWriter(folder)
    try:
        for heatmap in heatmaps:
            width, height = png_size(heatmap.png)
            writer.image(heatmap.tag, heatmap.png, step, height=height, width=width)
    finally:
        writer.close()
    return step


def score_table(scores: list[UnitScore]) -> str:
    """The units, their best feature and its correlation r, one line each under a header."""
    lines = [f"{'unit':>6}  {'feature':<14} {'r':>6}"]
    lines += [f"{score.unit:>6}  {score.feature:<14} {score.correlation:+6.2f}" for score in scores]
    return "\n".join(lines)

"""loss_curves.png: every point's validation curve overlaid, its training curve dashed in the same colour.

The validation curve is the value each run kept its best model by (``history.json``'s
``monitor``, e.g. ``val_last_mse``); the training curve is the same quantity on the
training batches (``last_mse``), or the training loss where the history has no such entry.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from note_matrix import atomic, runs
from note_matrix.sweeps.folder import CURVES_PNG, Sweep


def curves(history: dict) -> tuple[str, list[float], str, list[float]] | None:
    """``(validation name, values, training name, values)`` from a run's ``history.json``, or None
    when it holds no monitored values."""
    monitor, epochs = history.get("monitor"), history.get("epochs")
    if not isinstance(monitor, str) or not isinstance(epochs, dict) or not epochs.get(monitor):
        return None
    training = monitor.removeprefix("val_") if monitor.removeprefix("val_") in epochs else "loss"
    return monitor, _floats(epochs[monitor]), training, _floats(epochs.get(training) or [])


def _floats(values: list) -> list[float]:
    """The values, an epoch without one (null in the history) as NaN: a gap in the curve."""
    return [math.nan if value is None else float(value) for value in values]


def write_loss_curves(sweep: Sweep) -> Path | None:
    """Draw every point that has a ``history.json`` to ``loss_curves.png`` (atomically); None if none has."""
    drawn = []
    for point in sweep.grid.points():
        history = runs.read_json(sweep.run_dir(point) / runs.HISTORY_FILE)
        found = curves(history) if isinstance(history, dict) else None
        if found:
            drawn.append((point.label, *found))
    if not drawn:
        return None
    return atomic.write_bytes(sweep.folder / CURVES_PNG, _png(sweep.name, drawn), sync=False)


def _png(title: str, drawn: list[tuple[str, str, list, str, list]]) -> bytes:
    """The figure, drawn by the Agg backend (a figure of its own, no pyplot state)."""
    figure = Figure(figsize=(9, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    colours = matplotlib.colormaps["tab10" if len(drawn) <= 10 else "tab20"].colors
    for n, (label, _, validation, _, training) in enumerate(drawn):
        colour = colours[n % len(colours)]
        axes.plot(range(1, len(validation) + 1), validation, color=colour, label=label)
        axes.plot(range(1, len(training) + 1), training, color=colour, linestyle="--")
    validation_names = sorted({name for _, name, _, _, _ in drawn})
    training_names = sorted({name for _, _, _, name, _ in drawn})
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(" / ".join(validation_names))
    axes.set_title(
        f"{title}: validation {', '.join(validation_names)} (solid), training {', '.join(training_names)} (dashed)",
        fontsize=9,
    )
    values = [value for _, _, validation, _, training in drawn for value in [*validation, *training]]
    if all(value > 0 for value in values if math.isfinite(value)):
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

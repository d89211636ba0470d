"""A unit's activations drawn behind the symbols they followed, as a PNG (matplotlib's Agg canvas).

Each step's symbol is written in its cells (``layout``) on a background coloured by the
unit's activation after reading it: a diverging colour map, blue for -1 through white for 0
to red for +1 (tanh units: LSTM, GRU and simple RNN outputs lie in -1..1), with a colour
bar. Cells without a symbol stay white. Figures are made without ``pyplot``: no screen, no
global figure state.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from note_matrix.inspection.layout import Layout

COLORMAP = "RdBu_r"
CELL_WIDTH_INCHES = 0.1  # one character of 10-point monospace, and a little room
CELL_HEIGHT_INCHES = 0.2
MARGIN_INCHES = 0.25
TITLE_INCHES = 0.6
COLORBAR_INCHES = 1.0  # the colour bar and its labels, right of the text
MIN_AREA_INCHES = 1.0
MIN_AREA_WIDTH_INCHES = 5.0
MAX_COLORBAR_INCHES = 3.0
FONT_POINTS = 10
DPI = 100


def heatmap_png(layout: Layout, values: np.ndarray, *, title: str = "") -> bytes:
    """PNG bytes of ``layout``'s symbols on backgrounds coloured by ``values`` ``(steps,)``, under
    ``title`` (two lines at most).

    The colour scale runs from -1 to 1, wider only if a value lies outside it. At 100 dots per
    inch, the image is ``layout.columns`` x 0.1 inch (at least 5 inches) plus 1.5 inches wide
    and ``layout.rows`` x 0.2 inch (at least 1 inch) plus 1.1 inches high: 950 x 710 pixels for
    80 columns and 30 lines.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(layout.texts),):
        raise ValueError(f"values must have shape ({len(layout.texts)},), got {values.shape}")
    limit = max(1.0, float(np.nanmax(np.abs(values)))) if values.size else 1.0
    grid = np.full((layout.rows, layout.columns), np.nan)
    for value, row, column, width in zip(values, layout.row, layout.column, layout.width):
        grid[row, column:column + width] = value
    text_width = layout.columns * CELL_WIDTH_INCHES
    text_height = layout.rows * CELL_HEIGHT_INCHES
    area_height = max(text_height, MIN_AREA_INCHES)  # room for the colour bar beside a short text
    area_width = max(text_width, MIN_AREA_WIDTH_INCHES)  # room for the title above a short text
    size = (area_width + 2 * MARGIN_INCHES + COLORBAR_INCHES, area_height + 2 * MARGIN_INCHES + TITLE_INCHES)
    top = MARGIN_INCHES + area_height
    figure = Figure(figsize=size, dpi=DPI)
    axes = figure.add_axes(_box(size, MARGIN_INCHES, top - text_height, text_width, text_height))
    colormap = matplotlib.colormaps[COLORMAP].with_extremes(bad="white")
    image = axes.imshow(grid, cmap=colormap, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest",
                        extent=(0, layout.columns, layout.rows, 0))
    _write_symbols(axes, layout, values, limit)
    axes.set_axis_off()
    axes.set_title(title, fontsize=11, loc="left")
    bar_height = min(area_height, MAX_COLORBAR_INCHES)
    bar_box = _box(size, 2 * MARGIN_INCHES + area_width, top - bar_height, 0.15, bar_height)
    figure.colorbar(image, cax=figure.add_axes(bar_box), label="activation")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _box(size: tuple[float, float], left: float, bottom: float, width: float, height: float) -> list[float]:
    """A box given in inches from the figure's lower left corner, as figure fractions."""
    return [left / size[0], bottom / size[1], width / size[0], height / size[1]]


def _write_symbols(axes, layout: Layout, values: np.ndarray, limit: float) -> None:
    """Each symbol centred in its cells, white on the darkest backgrounds."""
    for text, value, row, column, width in zip(layout.texts, values, layout.row, layout.column, layout.width):
        if text.strip():
            dark = np.isfinite(value) and abs(value) > 0.6 * limit
            axes.text(column + width / 2, row + 0.5, text, ha="center", va="center", family="monospace",
                      fontsize=FONT_POINTS, color="white" if dark else "black")

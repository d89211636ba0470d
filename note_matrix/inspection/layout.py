"""Where each step's symbol goes on the page: a grid of character cells, line by line.

Text (``text_layout``, ABC): each character takes one cell, a special symbol such as
``<start>`` as many cells as it has characters; a line ends after each ``"\\n"`` symbol
(drawn as ``↵``) and each ``<end>``, and wraps at ``columns``. Tokens (``grid_layout``):
every step takes the same number of cells, enough for the longest label (cut at
``MAX_LABEL_CHARS``) and a gap, and a line holds as many steps as fit in ``columns``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_COLUMNS = 80
MAX_LABEL_CHARS = 12
_SHOWN = {"\n": "↵", "\t": "⇥"}


@dataclass(frozen=True)
class Layout:
    """Step ``i`` shows ``texts[i]`` on line ``row[i]``, from cell ``column[i]``, ``width[i]`` cells wide;
    ``rows`` x ``columns`` cells in all (``columns``: as wide as the longest line, at most the width asked)."""

    texts: tuple[str, ...]
    row: np.ndarray
    column: np.ndarray
    width: np.ndarray
    rows: int
    columns: int


def shown(label: str) -> str:
    """What a symbol looks like on the page: ``↵`` for a newline, ``⇥`` for a tab, ``·`` for
    any other character that does not print."""
    if label in _SHOWN:
        return _SHOWN[label]
    return label if label.isprintable() else "·"


def text_layout(labels: list[str], columns: int = DEFAULT_COLUMNS) -> Layout:
    """Running text: lines break after each ``"\\n"`` and ``<end>`` and wrap at ``columns`` cells."""
    texts = tuple(shown(label)[:columns] for label in labels)
    widths = [len(text) for text in texts]
    breaks = [label in ("\n", "<end>") for label in labels]
    return _place(texts, widths, breaks, columns)


def grid_layout(labels: list[str], columns: int = DEFAULT_COLUMNS) -> Layout:
    """Equal cells, as many a line as fit in ``columns``."""
    texts = tuple(_cut(shown(label)) for label in labels)
    width = min(max((len(text) for text in texts), default=1) + 1, columns)
    return _place(texts, [width] * len(texts), [False] * len(texts), columns)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _place(texts: tuple[str, ...], widths: list[int], breaks: list[bool], columns: int) -> Layout:
    rows, cols = np.zeros(len(texts), np.int64), np.zeros(len(texts), np.int64)
    row = column = 0
    for index, (width, line_break) in enumerate(zip(widths, breaks)):
        if column + width > columns:
            row, column = row + 1, 0
        rows[index], cols[index] = row, column
        column += width
        if line_break:
            row, column = row + 1, 0
    widths = np.array(widths, np.int64)
    used_rows = int(rows[-1]) + 1 if len(texts) else 1
    used_columns = int((cols + widths).max()) if len(texts) else 1
    return Layout(texts, rows, cols, widths, used_rows, used_columns)

"""Training windows over encoded songs, built without copying the data.

All songs of a split are concatenated once into one ``(total_steps, features)`` array;
a window is just its start index. A batch gathers ``(batch, window, features)`` from
the starts it needs, so memory holds the data once plus one int64 per window, never the
data ``window`` times over. Windows never cross from one song into the next.
"""

from __future__ import annotations

import math

import keras
import numpy as np


class WindowIndex:
    """Every window of ``window_length`` steps whose next step exists, in every song.

    ``data``: ``(total_steps, features)`` float32, the songs back to back.
    ``starts``: ``(windows,)`` int64; window ``i`` is ``data[starts[i] : starts[i] + window_length]``
    and its target is ``data[starts[i] + window_length]``.
    """

    def __init__(self, arrays: list[np.ndarray], window_length: int):
        if window_length < 1:
            raise ValueError(f"window_length must be positive, got {window_length}")
        self.window_length = window_length
        self.data = np.concatenate(arrays).astype(np.float32, copy=False) if arrays else np.zeros((0, 3), np.float32)
        offsets = np.cumsum([0] + [len(a) for a in arrays])
        self.starts = np.concatenate(
            [np.arange(offsets[i], offsets[i + 1] - window_length) for i in range(len(arrays))]
            or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self._steps = np.arange(window_length)

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, window_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x (n, window, features), y (n, features))`` for the given window numbers."""
        starts = self.starts[window_ids]
        return self.data[starts[:, None] + self._steps], self.data[starts + self.window_length]


class WindowBatches(keras.utils.PyDataset):
    """Batches of windows for ``model.fit``, reshuffled (seeded) every epoch if asked."""

    def __init__(self, index: WindowIndex, batch_size: int, *, shuffle: bool, seed: int = 0):
        super().__init__()
        if len(index) == 0:
            raise ValueError("no windows: every song is shorter than the window")
        self.index = index
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(index)) if shuffle else np.arange(len(index))

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def __getitem__(self, batch_number: int):
        ids = self._order[batch_number * self.batch_size : (batch_number + 1) * self.batch_size]
        return self.index.batch(ids)

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(len(self.index))

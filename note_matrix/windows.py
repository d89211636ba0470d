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
    """Batches of windows for ``model.fit``, in an order that depends only on (seed, epoch).

    With ``shuffle``, epoch ``e`` visits the windows in a permutation seeded by
    ``(seed, e)``, so a resumed run sees exactly the batches an uninterrupted one would.
    ``fit`` should pin the epoch with the ``ShuffleEpochs`` callback: Keras also calls
    ``on_epoch_end`` once before the first epoch, so counting its calls would be off.
    """

    def __init__(self, index: WindowIndex, batch_size: int, *, shuffle: bool, seed: int = 0):
        super().__init__()
        if len(index) == 0:
            raise ValueError("no windows: every song is shorter than the window")
        self.index = index
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order (the same in every process for the same seed)."""
        self.epoch = epoch
        if self.shuffle:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.index))
        else:
            self._order = np.arange(len(self.index))

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def __getitem__(self, batch_number: int):
        ids = self._order[batch_number * self.batch_size : (batch_number + 1) * self.batch_size]
        return self.index.batch(ids)

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)


class ShuffleEpochs(keras.callbacks.Callback):
    """Sets ``batches`` to the epoch ``fit`` is about to run (``initial_epoch`` included)."""

    def __init__(self, batches: WindowBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)

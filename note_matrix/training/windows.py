"""Training windows over encoded songs, built without copying the data.

All songs of a split are concatenated once into one ``(total_steps, features)`` array;
a window is just its start index. A batch gathers ``(batch, window, features)`` from
the starts it needs, so memory holds the data once plus one int64 per window, never the
data ``window`` times over. Windows never cross from one song into the next.

Two layouts of windows over a song (``WindowBatches(layout=...)``):

- ``"sliding"``: every start, one row apart (the card's windows; validation always);
- ``"chunks"``: non-overlapping windows, ``window`` rows apart, from a random offset
  drawn per (seed, epoch, song), so chunk boundaries move from epoch to epoch and every
  row is a target about once per epoch when the model learns the next row at every step.

Either layout's epoch visits each of its windows once, in an order shuffled per (seed,
epoch); or, with ``draw="random"`` (seed 004), as many windows at random positions: starts
drawn with replacement from every valid start (any row, whatever the layout), per (seed, epoch).

And two kinds of targets (``targets=...``): ``"last"``, the row after the window,
``(batch, features)``; ``"all"``, the next row at every step, ``(batch, window, features)``.

``transpose=N`` (``--transpose``, piano rolls: each feature a key, a semitone apart) shifts
each training window and its targets together by a whole number of semitones drawn per
(seed, epoch, batch) from ``-N..N``, narrowed per window so that no sounding key leaves the
keyboard (``transposed``): the data seen in every key, as a transposed score is the same music.
Token steps whose ids below ``key_tokens`` are keys a semitone apart (``roll_tokens``) are
shifted the same way, id by id (``transposed_tokens``); the other ids stay.

``StreamBatches`` (``--batches stream``) lays the songs out for truncated back-propagation
through time instead: joined into one stream, cut into parallel rows, each row read window
after window by a model that carries its recurrent state from one batch to the next
(``models.builder.carried_state_twin``; ``CarryState`` starts it afresh).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from models.builder import TARGETS, carried_layers, carried_state_twin
from models.head import HeadLoss

LAYOUTS = ("sliding", "chunks")
DRAWS = ("shuffled", "random")  # WindowBatches' ``--batches``; "stream" is StreamBatches


class WindowIndex:
    """Every window of ``window_length`` steps whose next step exists, in every song.

    ``data``: ``(total_steps, features)`` float32, the songs back to back.
    ``starts``: ``(windows,)`` int64; window ``i`` is ``data[starts[i] : starts[i] + window_length]``
    and its target is ``data[starts[i] + window_length]``.
    ``song_starts``, ``song_lengths``: ``(songs,)`` int64, where each song lies in ``data``.
    ``stride``: the starts of a song are ``stride`` steps apart (1: every window).
    """

    def __init__(self, arrays: list[np.ndarray], window_length: int, stride: int = 1):
        if window_length < 1:
            raise ValueError(f"window_length must be positive, got {window_length}")
        self.window_length = window_length
        # Continuous steps as float32, token steps keep their integer dtype.
        self.data = (np.concatenate(arrays) if arrays else np.zeros((0, 3), np.float32))
        if self.data.dtype.kind == "f":
            self.data = self.data.astype(np.float32, copy=False)
        offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
        self.song_starts, self.song_lengths = offsets[:-1], np.diff(offsets)
        self.starts = np.concatenate(
            [np.arange(offsets[i], offsets[i + 1] - window_length, stride) for i in range(len(arrays))]
            or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self._steps = np.arange(window_length)

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, window_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x (n, window, features), y (n, features))`` for the given window numbers."""
        return self.gather(self.starts[window_ids], "last")

    def gather(self, starts: np.ndarray, targets: str) -> tuple[np.ndarray, np.ndarray]:
        """The windows at ``starts`` (indices into ``data``) and their targets.

        ``x``: ``(n, window, features)``; ``y``: ``(n, features)``, the row after each
        window (``targets="last"``), or ``(n, window, features)``, the window shifted by
        one row (``targets="all"``).
        """
        x = self.data[starts[:, None] + self._steps]
        if targets == "last":
            return x, self.data[starts + self.window_length]
        return x, self.data[starts[:, None] + self._steps + 1]

    def chunks_per_song(self) -> np.ndarray:
        """``(songs,)`` int64: how many chunks each song gives in every epoch, ``(length - 1) // window``."""
        return np.maximum(self.song_lengths - 1, 0) // self.window_length

    def chunk_starts(self, offsets: np.ndarray) -> np.ndarray:
        """Starts of the non-overlapping chunks of every song, song by song.

        ``offsets``: ``(songs,)`` ints in ``[0, window)``, where each song's first chunk
        starts. Chunk ``j`` of a song starts ``offset + j * window`` rows in, except that a
        last chunk that would run past the song's end is moved back to end at it, so a
        song gives the same number of chunks (``chunks_per_song``) whatever the offset.
        """
        counts = self.chunks_per_song()
        song = np.repeat(np.arange(len(counts)), counts)
        j = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        last_start = self.song_lengths[song] - 1 - self.window_length  # the latest start with a next row
        within = np.minimum(np.asarray(offsets, np.int64)[song] + j * self.window_length, last_start)
        return (self.song_starts[song] + within).astype(np.int64)


class WindowBatches(keras.utils.PyDataset):
    """Batches of windows for ``model.fit``, in an order that depends only on (seed, epoch).

    ``layout``, ``draw`` and ``targets``: see the module docstring. With ``shuffle``, epoch
    ``e`` draws its chunk offsets and visits the windows in a permutation (or, with
    ``draw="random"``, draws its windows) seeded by ``(seed, e)``, so a resumed run sees
    exactly the batches an uninterrupted one would,
    and so does a ``tf.data`` pipeline built from ``epoch_starts`` (``note_matrix.training.tf_data``).
    ``fit`` should pin the epoch with the ``ShuffleEpochs`` callback: Keras also calls
    ``on_epoch_end`` once before the first epoch, so counting its calls would be off.
    The number of windows, and so of batches, is the same in every epoch. ``feed_targets``
    (for a model that ``reads_targets``, the ``nade`` head): each batch is ``((x, y), y)``,
    the model reading the steps it predicts as its second input.
    """

    def __init__(
        self,
        index: WindowIndex,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        targets: str = "last",
        layout: str = "sliding",
        draw: str = "shuffled",
        transpose: int = 0,
        key_tokens: int = 0,
    ):
        super().__init__()
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if draw not in DRAWS or (draw == "random" and not shuffle):
            raise ValueError(f"draw must be one of {DRAWS} (random only with shuffle), got {draw!r}")
        if len(index) == 0:
            raise ValueError("no windows: every song is shorter than the window")
        if transpose and (not shuffle or (index.data.dtype.kind != "f") != (key_tokens > 0)):
            raise ValueError("transpose shifts the keys of training windows of multi-hot steps, or of tokens "
                             "with key_tokens")
        self.transpose, self.key_tokens = transpose, key_tokens
        self.index = index
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.targets = targets
        self.layout = layout
        self.draw = draw
        self.windows = len(index) if layout == "sliding" else int(index.chunks_per_song().sum())
        self.feed_targets = False
        self.set_epoch(0)

    def epoch_starts(self, epoch: int) -> np.ndarray:
        """``(windows,)`` int64: the starts (indices into ``index.data``) of epoch ``epoch``, in order."""
        rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
        if self.draw == "random":
            return self.index.starts[rng.integers(0, len(self.index), self.windows)]
        if self.layout == "sliding":
            starts = self.index.starts
        else:
            songs = len(self.index.song_lengths)
            offsets = rng.integers(0, self.index.window_length, songs) if rng else np.zeros(songs, np.int64)
            starts = self.index.chunk_starts(offsets)
        return starts[rng.permutation(len(starts))] if rng else starts

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order (the same in every process for the same seed)."""
        self.epoch = epoch
        self._starts = self.epoch_starts(epoch)

    def targets_per_window(self) -> int:
        return 1 if self.targets == "last" else self.index.window_length

    def describe(self) -> str:
        """What an epoch reads, in words."""
        if self.layout == "chunks":
            return f"{self.windows} chunks of {self.index.window_length} steps, every next step a target"
        return f"{self.windows} windows" + (", the step after each a target" if self.shuffle else "")

    def __len__(self) -> int:
        return math.ceil(self.windows / self.batch_size)

    def __getitem__(self, batch_number: int):
        starts = self._starts[batch_number * self.batch_size : (batch_number + 1) * self.batch_size]
        x, y = self.index.gather(starts, self.targets)
        if self.transpose:
            rng = np.random.default_rng([self.seed, self.epoch, batch_number])
            x, y = (transposed_tokens(x, y, self.transpose, rng, self.key_tokens) if self.key_tokens
                    else transposed(x, y, self.transpose, rng))
        return ((x, y), y) if self.feed_targets else (x, y)

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)


def transposed(x: np.ndarray, y: np.ndarray, semitones: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each window ``x[i]`` (``(steps, keys)``) and its targets ``y[i]`` shifted together along
    the keys by one shift drawn uniformly from ``-semitones..semitones``, narrowed so that no
    key sounding in the window or its targets leaves the keys (a window that spans them all
    stays as it is). Shifted copies; the inputs are not changed."""
    sounding = (x > 0).any(axis=1) | ((y > 0).any(axis=1) if y.ndim == 3 else y > 0)  # (batch, keys)
    keys = x.shape[-1]
    lowest = np.where(sounding.any(axis=1), sounding.argmax(axis=1), keys)  # an empty window: any shift
    highest = np.where(sounding.any(axis=1), keys - 1 - sounding[:, ::-1].argmax(axis=1), -1)
    low, high = np.maximum(-semitones, -lowest), np.minimum(semitones, keys - 1 - highest)
    shifts = low + np.floor(rng.random(len(x)) * (high - low + 1)).astype(np.int64)
    x, y = x.copy(), y.copy()
    for i, shift in enumerate(shifts):  # nothing sounding is rolled around the end: the shift was narrowed
        x[i], y[i] = np.roll(x[i], shift, axis=-1), np.roll(y[i], shift, axis=-1)
    return x, y


def transposed_tokens(x: np.ndarray, y: np.ndarray, semitones: int, rng: np.random.Generator,
                      keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Token windows ``x[i]`` (``(steps, 1)``) and their targets ``y[i]`` shifted together: every
    id below ``keys`` (a key) moved by one shift drawn uniformly from ``-semitones..semitones``,
    narrowed so that no key leaves ``0..keys-1``; other ids stay. Shifted copies."""
    batch = len(x)
    tokens = np.concatenate([x.reshape(batch, -1), y.reshape(batch, -1)], axis=1)
    is_key = tokens < keys
    lowest = np.where(is_key, tokens, keys).min(axis=1)
    highest = np.where(is_key, tokens, -1).max(axis=1)
    low, high = np.maximum(-semitones, -lowest), np.minimum(semitones, keys - 1 - highest)  # no key: any shift
    shifts = low + np.floor(rng.random(batch) * (high - low + 1)).astype(np.int64)

    def shift(steps):
        moved = steps + shifts.reshape((batch,) + (1,) * (steps.ndim - 1))
        return np.where(steps < keys, moved, steps).astype(steps.dtype)

    return shift(x), shift(y)


class ShuffleEpochs(keras.callbacks.Callback):
    """Sets ``batches`` to the epoch ``fit`` is about to run (``initial_epoch`` included)."""

    def __init__(self, batches: WindowBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


class StreamBatches(keras.utils.PyDataset):
    """The songs joined into one stream, read as ``rows`` parallel streams, window after window.

    Epoch ``e`` joins the songs (each already wrapped in its start and end steps, where the
    representation has them) in an order drawn per (seed, e) (``shuffle``; as given
    otherwise) into one stream of ``N`` steps, and cuts it into ``rows`` rows of ``L = N // rows``
    steps: row ``i`` is stream steps ``i L`` to ``(i + 1) L - 1`` (the last ``N - rows L``
    steps, fewer than ``rows``, are left out). ``rows`` is ``batch_size``, or fewer where the
    stream cannot give each row a whole window and its next step (``N // (window + 1)``, at
    least 1). Batch ``k`` holds every row's window ``k``: inputs ``(rows, w, features)``, steps
    ``k w`` to ``k w + w - 1`` of the row, and targets ``(rows, w, features)``, the step after
    each. So batch ``k``'s row ``i`` is the window right after batch ``k - 1``'s row ``i``: a
    model that carries its state from batch to batch (``CarryState``) reads each row as one
    sequence.

    Every batch of a layout has the same width ``w``, so the mean of the per-batch losses
    that Keras reports is the mean over every step scored, and TensorFlow's input pipeline
    sees one shape. Training (``shuffle``): ``w = window_length`` (``L - 1`` for a shorter
    row), ``(L - 1) // w`` windows; the last steps of each row, fewer than a window, are not
    read in that epoch (others in the next: the songs' order changes). Evaluation:
    ``ceil((L - 1) / window_length)`` windows of ``w = (L - 1) // windows`` steps, so every
    step of a row but its first is a target, except its last ``(L - 1) % windows`` (fewer
    than the windows). No step is copied: a batch gathers its steps from the songs
    concatenated once (``index.data``).
    """

    def __init__(self, arrays: list[np.ndarray], batch_size: int, window_length: int, *, shuffle: bool,
                 seed: int = 0):
        super().__init__()
        self.index = WindowIndex(arrays, window_length)
        total = len(self.index.data)
        self.rows = min(batch_size, max(1, total // (window_length + 1)))
        self.row_length = total // self.rows
        if self.row_length < 2:
            raise ValueError(f"a stream of {total} steps has no step to predict")
        self.batch_size, self.window_length, self.shuffle, self.seed = batch_size, window_length, shuffle, seed
        targets = self.row_length - 1  # every step of a row but its first
        if shuffle:
            width = min(window_length, targets)
            count = targets // width
        else:
            count = math.ceil(targets / window_length)
            width = targets // count
        self.edges = np.arange(count + 1) * width
        self.windows = len(self.edges) - 1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Join the songs in epoch ``epoch``'s order (the same in every process for the same seed)."""
        self.epoch = epoch
        songs = len(self.index.song_lengths)
        order = np.random.default_rng([self.seed, epoch]).permutation(songs) if self.shuffle else np.arange(songs)
        lengths = self.index.song_lengths[order]
        self._ends = np.cumsum(lengths)  # where each song of the stream ends
        self._offsets = self.index.song_starts[order] - (self._ends - lengths)  # stream step + offset: data row

    def steps(self, positions: np.ndarray) -> np.ndarray:
        """The steps at ``positions`` (any shape) of this epoch's stream, gathered from ``index.data``."""
        song = np.searchsorted(self._ends, positions, side="right")
        return self.index.data[positions + self._offsets[song]]

    def describe(self) -> str:
        """What an epoch reads, in words."""
        return (f"{len(self.index.data):,} steps in {self.rows} stream{'s' * (self.rows != 1)} of "
                f"{self.row_length:,}, {self.windows} window{'s' * (self.windows != 1)} of {self.edges[1]} steps "
                f"each, the state carried from window to window")

    def __len__(self) -> int:
        return self.windows

    def __getitem__(self, batch_number: int):
        first, last = self.edges[batch_number], self.edges[batch_number + 1]
        positions = np.arange(self.rows)[:, None] * self.row_length + np.arange(first, last + 1)
        steps = self.steps(positions)  # (rows, w + 1, features)
        return steps[:, :-1], steps[:, 1:]


class CarryState(keras.callbacks.Callback):
    """With ``StreamBatches``: the carried state of ``twin`` (``carried_state_twin(model)``, the model
    being fitted) starts from zeros at every epoch and every validation pass, and ``twin`` stops
    when ``model`` asks to (``EpochCheckpoint``'s early stopping, seeing ``model``)."""

    def __init__(self, twin: keras.Model, model: keras.Model):
        super().__init__()
        self.twin, self.plain = twin, model

    def _reset(self) -> None:
        for layer in carried_layers(self.twin):
            layer.reset_state()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()

    def on_test_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self.plain, "stop_training", False):
            self.twin.stop_training = True


def stream_loss(model: keras.Model, head, arrays: list[np.ndarray], batch_size: int, window_length: int) -> float:
    """The mean of ``head``'s loss over every step that validation with ``--batches stream`` scores
    in ``arrays`` (``StreamBatches`` without shuffling, the state carried from window to window):
    a stream run's ``val_loss`` for the validation files, the same measure for any others.
    For tokens, the NLL in nats per step."""
    twin = carried_state_twin(model, batch_size)
    twin.compile(loss=HeadLoss(head))
    return float(twin.evaluate(StreamBatches(arrays, batch_size, window_length, shuffle=False), verbose=0))

"""``tf.data`` input pipelines for training under ``tf.distribute`` (TensorFlow backend only).

They yield exactly the batches of the ``WindowBatches`` they are built from, in the same
order: each epoch's starts come from ``WindowBatches.epoch_starts(epoch)`` (seeded by
(seed, epoch), so resuming and single-device training see the same batches), and a
batch is gathered in the graph from one constant copy of the data::

    epochs -> starts of the epoch (int64) -> batches of starts -> gather -> (x, y)

``batch_size`` is the GLOBAL batch: ``model.fit`` under a strategy splits each batch
among the replicas (``batch_size / replicas`` each), so the updates are those of one
device with the same ``--batch-size``. Auto-sharding is set to ``DATA``: every worker of
a multi-worker cluster builds the same pipeline and keeps its own share of each batch.

Shapes: ``x`` ``(batch, window, features)`` float32; ``y`` ``(batch, features)``
(``targets="last"``) or ``(batch, window, features)`` (``targets="all"``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from note_matrix.training.windows import WindowBatches


def training_dataset(batches: WindowBatches, first_epoch: int, epochs: int) -> tf.data.Dataset:
    """The batches of epochs ``first_epoch`` to ``epochs - 1``, one epoch after the other.

    Pass ``steps_per_epoch=len(batches)`` to ``fit``: the stream runs on from one epoch
    to the next, and an epoch's last batch may be short, as with ``WindowBatches``.
    """

    def epoch(number):
        starts = tf.numpy_function(lambda e: batches.epoch_starts(int(e)), [number], tf.int64, stateful=False)
        starts.set_shape([batches.windows])
        return tf.data.Dataset.from_tensor_slices(starts).batch(batches.batch_size)

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch)
    return _gathered(dataset, batches)


def evaluation_dataset(batches: WindowBatches) -> tf.data.Dataset:
    """Every window of ``batches`` once, in its fixed order (``batches`` must not shuffle)."""
    if batches.shuffle:
        raise ValueError("evaluation batches must not shuffle")
    starts = tf.data.Dataset.from_tensor_slices(batches.epoch_starts(0))
    return _gathered(starts.batch(batches.batch_size), batches)


def _gathered(starts: tf.data.Dataset, batches: WindowBatches) -> tf.data.Dataset:
    """Batches of starts -> batches of ``(x, y)``, gathered from one constant of the data."""
    data = tf.constant(batches.index.data)
    window = batches.index.window_length
    steps = tf.constant(np.arange(window), tf.int64)
    every_step = batches.targets == "all"

    def gather(batch_starts):
        rows = batch_starts[:, None] + steps  # (batch, window)
        x = tf.gather(data, rows)
        y = tf.gather(data, rows + 1) if every_step else tf.gather(data, batch_starts + window)
        return x, y

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    dataset = starts.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)

"""TensorBoard logging that works under every Keras backend.

Events are written with the ``tensorboard`` package's own event writer and protocol
buffers, not ``tf.summary``, so a JAX run on a machine without TensorFlow logs the same
tags. What a run shows (seed 003, figures 4 and 6 to 11):

- scalars ``batch_loss``, ``batch_pitch_accuracy`` (running means within the epoch, as
  Keras reports them) and ``epoch_loss``, ``epoch_pitch_accuracy``, in the ``train``
  and ``validation`` runs; ``epoch_learning_rate`` in ``train``, the optimizer's rate after
  the epoch (the rate of its next update, as Keras' own TensorBoard callback logs it:
  constant, or where ``models.builder.CyclicLearningRate`` stands);
- histograms (and so distributions) each epoch of every weight, tagged
  ``<layer>/<weight>`` (``lstm/kernel``, ``lstm/recurrent_kernel``, ``lstm/bias``,
  ``dense/kernel``, ``dense/bias``), in ``train``;
- histograms each epoch of every layer's output on one fixed validation batch, tagged
  ``<layer>/output`` (``lstm``, ``dropout``, ``dense``, ``activation``; inference mode),
  in ``validation``;
- the model graph: TensorFlow's op graph under the TensorFlow backend, the layer graph
  under other backends.

A resumed run continues the batch step numbers of the interrupted one, after removing from
the event files whatever the killed process logged after its last checkpoint (the epoch
it was in the middle of), so no step is shown twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.attr_value_pb2 import AttrValue
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.compat.proto.node_def_pb2 import NodeDef
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.summary.writer.record_writer import RecordWriter

from note_matrix import atomic

HISTOGRAM_BINS = 30


class SummaryWriter:
    """Scalars, histograms and graphs into one TensorBoard run folder."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self._writer = EventFileWriter(str(self.logdir))

    def _add(self, step: int, value: Summary.Value) -> None:
        event = Event(wall_time=time.time(), step=int(step), summary=Summary(value=[value]))
        self._writer.add_event(event)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._add(step, Summary.Value(tag=tag, simple_value=float(value)))

    def histogram(self, tag: str, values: np.ndarray, step: int, bins: int = HISTOGRAM_BINS) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        counts, edges = np.histogram(values, bins=bins)
        histogram = HistogramProto(
            min=float(values.min()),
            max=float(values.max()),
            num=float(values.size),
            sum=float(values.sum()),
            sum_squares=float(np.dot(values, values)),
            bucket_limit=edges[1:].tolist(),
            bucket=counts.astype(np.float64).tolist(),
        )
        self._add(step, Summary.Value(tag=tag, histo=histogram))

    def image(self, tag: str, png: bytes, step: int, *, height: int, width: int) -> None:
        """A PNG image (``height`` x ``width`` pixels, RGBA)."""
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        self._add(step, Summary.Value(tag=tag, image=image))

    def audio(self, tag: str, wav: bytes, step: int, *, sample_rate: int, frames: int) -> None:
        """A mono WAV clip of ``frames`` samples."""
        audio = Summary.Audio(sample_rate=float(sample_rate), num_channels=1, length_frames=frames,
                              encoded_audio_string=wav, content_type="audio/wav")
        self._add(step, Summary.Value(tag=tag, audio=audio))

    def graph(self, graph_def: GraphDef) -> None:
        self._writer.add_event(Event(wall_time=time.time(), graph_def=graph_def.SerializeToString()))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def model_graph(model: keras.Model) -> GraphDef:
    """The model's graph: TensorFlow's op graph under that backend (of every input: the window, and
    the frames a frame head reads), else its layer graph."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # only under the TensorFlow backend

        specs = [tf.TensorSpec((None, None, tensor.shape[-1]), tf.float32, name=tensor.name) for tensor in model.inputs]
        forward = tf.function(lambda *inputs: model(list(inputs) if len(inputs) > 1 else inputs[0], training=False))
        graph = forward.get_concrete_function(*specs).graph.as_graph_def()
        return GraphDef.FromString(graph.SerializeToString())
    return layer_graph(model)


def layer_graph(model: keras.Model) -> GraphDef:
    """One node per layer, named and typed, linked to the layers that feed it."""
    nodes = []
    for layer in model.layers:
        inputs = [
            parent.operation.name
            for inbound in getattr(layer, "_inbound_nodes", [])[:1]
            for parent in inbound.parent_nodes
        ]
        shape = getattr(layer, "output", None)
        attr = {"output_shape": AttrValue(s=str(getattr(shape, "shape", "")).encode())}
        nodes.append(NodeDef(name=layer.name, op=type(layer).__name__, input=inputs, attr=attr))
    return GraphDef(node=nodes)


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes the scalars, histograms and graph listed in this module's docstring.

    ``probe_windows``: ``(batch, window, features)``, the fixed validation batch whose
    layer outputs are histogrammed every ``histogram_freq`` epochs (with the frames they
    predict, ``[windows, targets]``, for a model that reads them: ``models.reads_targets``).
    ``train_step``, ``validation_step``, ``initial_epoch``: batches and epochs the
    interrupted process of a resumed run had logged at its last checkpoint (0 for a new
    run); numbering goes on from there, and anything it logged later is discarded.
    """

    def __init__(
        self,
        log_dir: str | Path,
        probe_windows: np.ndarray,
        histogram_freq: int = 1,
        *,
        train_step: int = 0,
        validation_step: int = 0,
        initial_epoch: int = 0,
    ):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.probe_windows = (
            [np.asarray(part, dtype=np.float32) for part in probe_windows]
            if isinstance(probe_windows, list)
            else np.asarray(probe_windows, dtype=np.float32)
        )
        self.histogram_freq = histogram_freq
        self.train_step = train_step
        self.validation_step = validation_step
        self.initial_epoch = initial_epoch
        self._resumed = initial_epoch > 0

    def on_train_begin(self, logs=None):
        if self._resumed:
            discard_events_after(
                self.log_dir, train_step=self.train_step, validation_step=self.validation_step, epochs_done=self.initial_epoch
            )
        self.train_writer = SummaryWriter(self.log_dir / "train")
        self.validation_writer = SummaryWriter(self.log_dir / "validation")
        if not self._resumed:  # a resumed run has its graph already
            self.train_writer.graph(model_graph(self.model))
        self._probe = keras.Model(self.model.input, [layer.output for layer in self._probed_layers()])

    def _probed_layers(self):
        return [layer for layer in self.model.layers if not isinstance(layer, keras.layers.InputLayer)]

    def on_train_batch_end(self, batch, logs=None):
        self.train_step += 1
        for name, value in _numbers(logs):
            self.train_writer.scalar(f"batch_{name}", value, self.train_step)

    def on_test_batch_end(self, batch, logs=None):
        self.validation_step += 1
        for name, value in _numbers(logs):
            self.validation_writer.scalar(f"batch_{name}", value, self.validation_step)

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1  # epochs done: the step of epoch N is N, as the sample titles say
        for name, value in _numbers(logs):
            if name.startswith("val_"):
                self.validation_writer.scalar(f"epoch_{name[4:]}", value, step)
            else:
                self.train_writer.scalar(f"epoch_{name}", value, step)
        self.train_writer.scalar("epoch_learning_rate", current_learning_rate(self.model.optimizer), step)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._histograms(step)
        self.train_writer.flush()
        self.validation_writer.flush()

    def _histograms(self, step: int) -> None:
        for layer in self.model.layers:
            for weight in layer.weights:
                self.train_writer.histogram(f"{layer.name}/{weight.name}", keras.ops.convert_to_numpy(weight), step)
        outputs = self._probe(self.probe_windows, training=False)
        for layer, output in zip(self._probed_layers(), outputs):
            self.validation_writer.histogram(f"{layer.name}/output", keras.ops.convert_to_numpy(output), step)

    def on_train_end(self, logs=None):
        self.train_writer.close()
        self.validation_writer.close()


def discard_events_after(log_dir: str | Path, *, train_step: int, validation_step: int, epochs_done: int) -> None:
    """Remove the events an interrupted run logged after its last checkpoint.

    Batch scalars (``batch_*``) are kept up to ``train_step`` / ``validation_step``,
    per-epoch scalars and histograms (step N: epoch N) up to ``epochs_done``; file headers
    and the graph are kept. Each event file is rewritten only if something goes (or its
    last record was cut short by the kill), atomically.
    """
    for run, batch_limit in (("train", train_step), ("validation", validation_step)):
        for path in sorted((Path(log_dir) / run).glob("events.out.tfevents.*")):
            records = list(RawEventFileLoader(str(path)).Load())
            kept = [record for record in records if _keep(Event.FromString(record), batch_limit, epochs_done)]
            whole = sum(len(record) + 16 for record in records) == path.stat().st_size  # 16: length and CRCs
            if len(kept) < len(records) or not whole:
                atomic.write_atomically(path, lambda temporary, kept=kept: _write_records(temporary, kept), sync=False)


def _write_records(path: Path, records: list[bytes]) -> None:
    with open(path, "wb") as handle:
        writer = RecordWriter(handle)
        for record in records:
            writer.write(record)


def _keep(event: Event, batch_limit: int, epochs_done: int) -> bool:
    if not event.HasField("summary"):
        return True  # the file version header, the graph
    if all(value.tag.startswith("batch_") for value in event.summary.value):
        return event.step <= batch_limit
    return event.step <= epochs_done  # per-epoch steps count epochs done: 1 for the first


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate of ``optimizer``'s next update: its schedule at its iteration count, or its constant."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _numbers(logs):
    """The scalar entries of a Keras ``logs`` dict, as floats."""
    for name, value in (logs or {}).items():
        if np.ndim(value) == 0:
            yield name, float(value)

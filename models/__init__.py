"""Keras model builders. Backend-neutral: only ``keras.layers`` and ``keras.ops``."""

from models.builder import CELLS, TARGETS, ModelConfig, build_model, compile_model
from models.heads import HEADS, HeadConfig, head_config, head_width, point_rows, row_nll, sample_rows
from models.metrics import last_loss, last_mse, pitch_accuracy

__all__ = ["CELLS", "HEADS", "TARGETS", "HeadConfig", "ModelConfig", "build_model", "compile_model", "head_config",
           "head_width", "last_loss", "last_mse", "pitch_accuracy", "point_rows", "row_nll", "sample_rows"]

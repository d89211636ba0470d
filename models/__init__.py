"""Keras model builders. Backend-neutral: only ``keras.layers`` and ``keras.ops``."""

from models.builder import CELLS, HEADS, TARGETS, ModelConfig, build_model, compile_model
from models.metrics import last_mse, pitch_accuracy

__all__ = ["CELLS", "HEADS", "TARGETS", "ModelConfig", "build_model", "compile_model", "last_mse", "pitch_accuracy"]

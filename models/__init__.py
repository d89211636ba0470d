"""Keras model builders. Backend-neutral: only ``keras.layers`` and ``keras.ops``."""

from models.builder import CELLS, HEADS, ModelConfig, build_model, compile_model
from models.metrics import pitch_accuracy

__all__ = ["CELLS", "HEADS", "ModelConfig", "build_model", "compile_model", "pitch_accuracy"]

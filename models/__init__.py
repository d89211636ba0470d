"""Keras model builders and output fields. Backend-neutral (``keras.layers``, ``keras.ops``);
imports nothing from ``note_matrix``."""

from models.builder import CELLS, DEFAULT_MIXTURES, TARGETS, InputSpec, ModelConfig, build_model, compile_model
from models.fields import Bernoulli, Categorical, Gaussian, Head, HeadLoss, Mixture

__all__ = ["CELLS", "DEFAULT_MIXTURES", "TARGETS", "Bernoulli", "Categorical", "Gaussian", "Head", "HeadLoss",
           "InputSpec", "Mixture", "ModelConfig", "build_model", "compile_model"]

"""Keras model builders and output fields. Backend-neutral (``keras.layers``, ``keras.ops``);
imports nothing from ``note_matrix``. Names load on first use, so that the settings
(``ModelConfig``, ``InputSpec``) can be read without loading Keras."""

from __future__ import annotations

import importlib

from models.config import CELL_NAMES, DEFAULT_MIXTURES, OPTIMIZERS, TARGETS, InputSpec, ModelConfig

_LAZY = {
    "CELLS": "models.builder", "build_model": "models.builder", "compile_model": "models.builder",
    "OneHotColumns": "models.builder", "model_inputs": "models.builder", "reads_targets": "models.builder",
    "Bernoulli": "models.fields", "Categorical": "models.fields", "Gaussian": "models.fields",
    "Mixture": "models.fields", "Toggle": "models.fields", "Head": "models.head", "HeadLoss": "models.head",
}

__all__ = ["CELL_NAMES", "DEFAULT_MIXTURES", "OPTIMIZERS", "TARGETS", "InputSpec", "ModelConfig", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)

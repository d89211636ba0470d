"""Which device Keras computes on, in words, for every backend."""

from __future__ import annotations

import keras


def describe_device() -> str:
    """E.g. ``"GPU /physical_device:GPU:0 (TensorFlow)"`` or ``"CPU (JAX; no GPU visible)"``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"GPU {', '.join(gpu.name for gpu in gpus)} (TensorFlow)"
        return "CPU (TensorFlow; no GPU visible)"
    if backend == "jax":
        import jax

        devices = jax.devices()
        if devices[0].platform != "cpu":
            return f"{devices[0].platform.upper()} {', '.join(str(d) for d in devices)} (JAX)"
        return "CPU (JAX; no GPU visible)"
    return f"the default device of the {backend} backend"

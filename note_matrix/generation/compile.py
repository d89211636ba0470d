"""The one backend-specific piece of generation: compiling a function of tensors.

Everything else (the rest of ``note_matrix.generation``, ``models/``) is written with
``keras.ops`` only and runs under any Keras backend. A compiled function is traced once
per set of argument shapes and dtypes (a Python body that runs again is a new trace), so
loops written with ``keras.ops.fori_loop`` inside it run as one graph:

- TensorFlow: ``tf.function(jit_compile=True)``. XLA matters on a CPU: the generation
  loop of the card's 512-unit LSTM runs about 3x faster than the same ``tf.while_loop``
  run by TensorFlow's executor, whose per-op overhead dominates at batch 1.
- JAX: ``jax.jit``.
- any other backend (torch, numpy): the function itself, called eagerly.
"""

from __future__ import annotations

from collections.abc import Callable

import keras


def compile_function(function: Callable) -> Callable:
    """``function`` compiled by the backend's compiler (see the module docstring).

    Its arguments must be (nested tuples of) tensors or arrays; Python numbers would be
    baked into the trace.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


def is_compiled() -> bool:
    """Whether ``compile_function`` compiles under the current backend (traces once per shape)."""
    return keras.backend.backend() in ("tensorflow", "jax")

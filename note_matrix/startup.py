"""Keras' first import, with the backend's native start-up lines held back.

TensorFlow's C++ code writes to the process's standard error while it loads (absl's
"All log messages before absl::InitializeLog()", CUDA's "Could not find cuda drivers",
"failed call to cuInit"), before any Python setting can silence it. The scripts import
Keras through ``import_keras()`` once the flags are read: file descriptor 2 points at a
temporary file meanwhile, so an error message that follows is the only line on standard
error, under TensorFlow as under JAX. What was held back is written out after all when
the import fails, or always with ``NOTE_MATRIX_STARTUP_LOG=1``.
"""

from __future__ import annotations

import os
import sys
import tempfile

SHOW_ENV = "NOTE_MATRIX_STARTUP_LOG"


def import_keras():
    """Import Keras (under TensorFlow, also list the devices, where CUDA logs its probe) and return it."""
    if "keras" in sys.modules or os.environ.get(SHOW_ENV) == "1":
        return _load()
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to redirect
        return _load()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            return _load()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _load():
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.list_physical_devices()
    return keras

"""Import TensorFlow without its native start-up chatter (absl/oneDNN/CUDA-probe lines) on stderr.

TensorFlow 2.21 writes those lines from C++ before `TF_CPP_MIN_LOG_LEVEL` is read, so the CLI imports
it once with file descriptor 2 pointed at a buffer. If the import fails the buffer is written back, so
no real error is hidden; `NACHOS_TF_VERBOSE=1` keeps everything.
"""
from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow_quietly() -> None:
    """Import tensorflow, keras and the TFLM runtime with native stderr captured (shown only on failure)."""
    if os.environ.get("NACHOS_TF_VERBOSE") or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()       # the CUDA probe logs here, not at import
            import keras  # noqa: F401

            try:
                from tflite_micro.python.tflite_micro import runtime  # noqa: F401
            except ImportError:                      # deployment extras missing: the export commands say so
                pass
        except BaseException:
            os.dup2(saved, 2)
            buf.seek(0)
            sys.stderr.write(buf.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)

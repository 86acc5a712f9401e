"""Keep TensorFlow's native chatter (absl/oneDNN/CUDA-probe lines, converter prints) off the user's stderr.

TensorFlow 2.21 writes those lines from C++ before `TF_CPP_MIN_LOG_LEVEL` is read (and the TFLite converter
prints its settings), so `import nachos_tf` imports TensorFlow once, and the int8 conversion runs, with
file descriptor 2 pointed at a buffer. If the wrapped code fails the buffer is written back, so no real
error is hidden; `NACHOS_TF_VERBOSE=1` keeps everything.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Send file descriptor 2 (C/C++ writes included) to a buffer for the block; replay it if the block raises."""
    if os.environ.get("NACHOS_TF_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield
        except KeyboardInterrupt:     # Ctrl-C: the caller prints "interrupted"; TF's start-up lines are noise
            raise
        except BaseException:
            os.dup2(saved, 2)
            buf.seek(0)
            sys.stderr.write(buf.read().decode(errors="replace"))
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow_quietly() -> None:
    """Import tensorflow, keras and the TFLM runtime with native stderr captured (shown only on failure)."""
    if os.environ.get("NACHOS_TF_VERBOSE") or "tensorflow" in sys.modules:
        return
    with native_stderr_captured():
        import tensorflow as tf

        tf.config.list_physical_devices()       # the CUDA probe logs here, not at import
        import keras  # noqa: F401

        try:
            from tflite_micro.python.tflite_micro import runtime  # noqa: F401
        except ImportError:                      # deployment extras missing: the export commands say so
            pass

"""Shared test helper: full-int8 TFLite conversion of a Keras 3 model (int8 input and output)."""
from __future__ import annotations

import numpy as np


def to_int8_tflite(model, n_samples: int = 4, seed: int = 0, low: float = 0.0, high: float = 1.0,
                   fast: bool = False) -> bytes:
    """Convert with a random representative dataset and TFLITE_BUILTINS_INT8, int8 in/out.

    ``fast=False`` is the documented path (``from_keras_model``: SavedModel export, SignatureDef with
    ``output_k`` names, outputs reordered). ``fast=True`` traces a batch-1 concrete function and
    freezes its variables: 3-4x faster (the Keras SavedModel export dominates the default path),
    static shapes, but no SignatureDef, so outputs are only known by subgraph position.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]

    def representative():
        for _ in range(n_samples):
            yield [rng.uniform(low, high, (1,) + s).astype("float32") for s in shapes]

    if fast:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        specs = [tf.TensorSpec((1,) + s, tf.float32) for s in shapes]
        fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
        conv = tf.lite.TFLiteConverter.from_concrete_functions(
            [convert_variables_to_constants_v2(fn.get_concrete_function(*specs))])
    else:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()

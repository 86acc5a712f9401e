"""Shared test helper: full-int8 TFLite conversion of a Keras 3 model (int8 input and output)."""
from __future__ import annotations

import numpy as np


def to_int8_tflite(model, n_samples: int = 4, seed: int = 0, low: float = 0.0, high: float = 1.0,
                   fast: bool = False, samples=None) -> bytes:
    """Convert with a random representative dataset (or the float rows of ``samples``, single-input models) and
    TFLITE_BUILTINS_INT8, int8 in/out.

    ``fast=False`` is the documented path (``from_keras_model``: SavedModel export, SignatureDef with
    ``output_k`` names, outputs reordered). ``fast=True`` traces a batch-1 concrete function and
    freezes its variables: 3-4x faster (the Keras SavedModel export dominates the default path),
    static shapes, but no SignatureDef, so outputs are only known by subgraph position.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]

    def representative():
        if samples is not None:
            yield from ([np.asarray(samples[i:i + 1], np.float32)] for i in range(len(samples)))
            return
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
    return bytes(conv.convert())


def assert_same_int8_model(new: bytes, old: bytes, samples, n_outputs: int, n_images: int = 5) -> None:
    """The two flatbuffers have the same operators (with their tensors), constant data, SignatureDef
    (names, positions, scales, zero points) and input quantisation, and give the same int8 outputs on the
    TFLM micro kernels for the first `n_images` samples. Only conversion metadata and tensor names may
    differ."""
    from tflite_micro.python.tflite_micro import runtime

    from tflite_export import flatbuffer as fb
    from tflite_export.int8 import quantize_input
    from tflite_export.stages import input_quant

    a, b = fb.read_model(new), fb.read_model(old)
    ga, gb = a.subgraphs[0], b.subgraphs[0]

    def ops(m, g):
        return [(int(m.operatorCodes[o.opcodeIndex].builtinCode), list(o.inputs), list(o.outputs))
                for o in g.operators]

    def consts(m, g):
        return [None if t.buffer == 0 or m.buffers[t.buffer].data is None
                else bytes(np.asarray(m.buffers[t.buffer].data, np.uint8)) for t in g.tensors]

    def sig(blob):
        return [(o.signature_name, o.position, o.scale, o.zero_point, o.dtype) for o in fb.signature_outputs(blob)]

    assert ops(a, ga) == ops(b, gb) and len(ga.operators) > 3
    assert consts(a, ga) == consts(b, gb)
    assert sig(new) == sig(old) and len(sig(new)) == n_outputs
    assert input_quant(new) == input_quant(old)
    its = [runtime.Interpreter.from_bytes(blob, arena_size=1 << 20) for blob in (new, old)]
    s, z = input_quant(new)
    for i in range(n_images):
        q = quantize_input(np.asarray(samples[i:i + 1], np.float32), s, z)
        outs = []
        for it in its:
            it.set_input(q, 0)
            it.invoke()
            outs.append([it.get_output(k).copy() for k in range(n_outputs)])
        for u, v in zip(*outs):
            np.testing.assert_array_equal(u, v)

"""Full-int8 TFLite conversion by post-training quantisation (PTQ), and its check against the float model.

PTQ calibrates every activation range on representative samples from the training split and gives a
model whose inputs and outputs are int8 too (nothing float is left for the microcontroller).
Quantisation-aware fine-tuning (QAT) lives in `qat.py`; its weights are converted here the same way.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from nachos_tf.errors import ExportError
from nachos_tf.tf_logging import native_stderr_captured

from .graph import batch1_model
from .int8 import quantize_input
from .qat import qat_finetune
from .tflm import measure_arena, validate_tflite

if TYPE_CHECKING:
    import keras

DEFAULT_CALIBRATION_SAMPLES = 256


def _as_float_batches(representative_x, limit: int) -> List[np.ndarray]:
    """The first `limit` representative samples as float32 arrays of batch size 1 (what the converter wants)."""
    x = np.asarray(representative_x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ExportError(f"representative data must be a non-empty batch of samples, got shape {x.shape}")
    return [x[i:i + 1] for i in range(min(limit, len(x)))]


def _converter(keras_model: keras.Model, keras_export: bool = False):
    """A TFLiteConverter for the model's inference call, without Keras' SavedModel export.

    `from_keras_model` first writes the model as a SavedModel through `keras.export` (for a 4-stage EENN about
    two thirds of the conversion time, most of it tracing the functions of the export archive). The converter
    needs only the inference function: one concrete function of ``model(x, training=False)``, with its
    variables tracked by a `tf.Module` so that the converter freezes them. The flatbuffer has the same
    operators, weights, quantisation and SignatureDef (``serving_default``, outputs ``output_0``...) as
    through `from_keras_model` (tests/test_export_pipeline.py compares the two). A model whose variables are
    not plain TensorFlow variables (another backend, a mixed-precision policy) takes `from_keras_model`, as does
    ``keras_export=True``.
    """
    import tensorflow as tf

    held = [] if keras_export else [getattr(v, "value", None) for v in keras_model.variables]
    if keras_export or not all(isinstance(v, tf.Variable) for v in held):
        return tf.lite.TFLiteConverter.from_keras_model(keras_model)
    x = keras_model.inputs[0]
    spec = tf.TensorSpec(x.shape, x.dtype, name=x.name)
    fn = tf.function(lambda t: keras_model(t, training=False), input_signature=[spec])
    variables = tf.Module()
    variables.held = held
    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], variables)


def to_int8_tflite(keras_model: keras.Model, representative_x: np.ndarray,
                   num_samples: int = DEFAULT_CALIBRATION_SAMPLES, int8_input: bool = True,
                   int8_output: bool = True, keras_export: bool = False) -> bytes:
    """Full-integer int8 .tflite of a single-input Keras model (int8 input and outputs by default).

    Args:
        keras_model: the single-input Keras model to convert.
        representative_x: a batch of float samples from the training split (raw model inputs, e.g. pixels 0..255).
        num_samples: how many of them (the first) calibrate the activation ranges.
        int8_input, int8_output: make the model's input / its outputs int8 (else float32).
        keras_export: convert through Keras' SavedModel export (`TFLiteConverter.from_keras_model`, the
            documented path; the same model, about twice as slow) instead of a concrete function.
    Returns:
        The .tflite flatbuffer.
    Raises:
        ExportError: a multi-input model, empty or wrongly shaped samples, or a failed conversion.
    """
    import tensorflow as tf

    if len(keras_model.inputs) != 1:
        raise ExportError(f"to_int8_tflite needs a single-input model, {keras_model.name} has "
                          f"{len(keras_model.inputs)} inputs")
    batches = _as_float_batches(representative_x, num_samples)
    want = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
    if tuple(batches[0].shape[1:]) != want:
        raise ExportError(f"representative samples have shape {tuple(batches[0].shape[1:])}, the model "
                          f"expects {want}")

    def gen() -> Iterable[List[np.ndarray]]:
        for b in batches:
            yield [b]

    conv = _converter(keras_model, keras_export)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_input:
        conv.inference_input_type = tf.int8
    if int8_output:
        conv.inference_output_type = tf.int8
    try:
        with contextlib.redirect_stdout(io.StringIO()), native_stderr_captured(), warnings.catch_warnings():
            warnings.simplefilter("ignore")      # "Statistics for quantized inputs were expected" etc.
            return bytes(conv.convert())
    except Exception as e:  # the converter raises a zoo of types (ConverterError, ValueError, ...)
        raise ExportError(f"TFLite int8 conversion of model {keras_model.name!r} failed: "
                          f"{type(e).__name__}: {str(e).strip()[:2000]}") from e


# --------------------------------------------------------------------------- evaluation helpers

def tflite_predict(tflite_bytes: bytes, x: np.ndarray, engine: str = "tflm") -> List[np.ndarray]:
    """Runs a single-input .tflite on a batch, one sample at a time; outputs in Keras order, dequantised.

    Args:
        tflite_bytes: the .tflite flatbuffer (outputs are mapped through its SignatureDef).
        x: the batch of float inputs (quantised here when the model's input is int8).
        engine: "tflm", the TFLM micro kernels (what the device runs; arena measured in a child process first),
            or "tflite_ref", the TFLite BUILTIN_REF kernels.
    Returns:
        One array per output, stacked over the batch.
    Raises:
        ExportError: a multi-input model, an unknown engine, or a model TFLM cannot run.
    """
    from . import flatbuffer as fb

    outs = fb.signature_outputs(tflite_bytes)
    ins = fb.signature_inputs(tflite_bytes)
    if len(ins) != 1:
        raise ExportError(f"tflite_predict needs a single-input model, got {len(ins)} inputs")
    shape = tuple(int(d) for d in ins[0].shape)
    if engine == "tflm":
        from tflite_micro.python.tflite_micro import runtime

        validate_tflite(tflite_bytes)
        it = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=2 * measure_arena(tflite_bytes) + (16 << 10))

        def run(xi):
            it.set_input(xi, 0)
            it.invoke()
            return [it.get_output(o.position) for o in outs]
    elif engine == "tflite_ref":
        import tensorflow as tf

        ref = tf.lite.Interpreter(model_content=tflite_bytes,
                                  experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
        ref.allocate_tensors()
        in_index = ref.get_input_details()[ins[0].position]["index"]
        out_index = [ref.get_output_details()[o.position]["index"] for o in outs]

        def run(xi):
            ref.set_tensor(in_index, xi)
            ref.invoke()
            return [ref.get_tensor(i) for i in out_index]
    else:
        raise ExportError(f"unknown engine {engine!r}: 'tflm' or 'tflite_ref'")
    res: List[List[np.ndarray]] = [[] for _ in outs]
    for i in range(len(x)):
        xi = np.asarray(x[i:i + 1], dtype=np.float32).reshape(shape)
        if ins[0].dtype == "int8":
            xi = quantize_input(xi, ins[0].scale, ins[0].zero_point)
        for j, (o, v) in enumerate(zip(outs, run(xi))):
            v = np.asarray(v)
            if o.dtype == "int8":
                v = (v.astype(np.float32) - o.zero_point) * np.float32(o.scale)
            res[j].append(v.reshape(v.shape[1:]) if v.shape[:1] == (1,) else v)
    return [np.stack(r) for r in res]


def exit_accuracies(outputs: Sequence[np.ndarray], y: np.ndarray, layout) -> Dict[str, float]:
    """Standalone accuracy of every exit (argmax of its class output), keyed by exit name."""
    y = np.asarray(y).reshape(-1)
    return {e.name: float(np.mean(np.argmax(outputs[e.logits_index], axis=-1) == y)) for e in layout}


def compare_quantization(model: keras.Model, representative_x: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                         qat_epochs: int = 0, train_xy: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                         limit: Optional[int] = 500,
                         num_samples: int = DEFAULT_CALIBRATION_SAMPLES) -> Dict[str, Dict[str, float]]:
    """Per-exit accuracy of the float model, its PTQ int8 conversion and (if qat_epochs) its QAT one.

    The int8 models (the whole network in one file, batch 1) run on the TFLM micro kernels; the staged
    export computes the same ops.
    Args:
        model: the trained Keras EENN.
        representative_x: raw training-split inputs for PTQ calibration.
        x_test: test inputs; y_test: their labels.
        qat_epochs: QAT fine-tuning epochs (0: no QAT row); train_xy: (x, y), their fine-tuning data.
        limit: only the first `limit` test samples (None: all); num_samples: calibration samples.
    Returns:
        {"float": {...}, "ptq": {...}, ["qat": {...}]}, each {exit name: accuracy}.
    Raises:
        ExportError: qat_epochs > 0 without train_xy, or a failed conversion / fine-tuning.
    """
    from nachos_tf import naming

    x_test = np.asarray(x_test)[:limit]
    y_test = np.asarray(y_test).reshape(-1)[:limit]
    layout = naming.exit_layout(model)
    out = model.predict(x_test.astype(np.float32), verbose=0)
    out = out if isinstance(out, (list, tuple)) else [out]
    res = {"float": exit_accuracies(out, y_test, layout)}
    ptq = to_int8_tflite(batch1_model(model), representative_x, num_samples=num_samples)
    res["ptq"] = exit_accuracies(tflite_predict(ptq, x_test), y_test, layout)
    if qat_epochs > 0:
        if train_xy is None:
            raise ExportError("QAT needs training data: pass train_xy=(x_train, y_train)")
        qat_model = qat_finetune(model, train_xy[0], train_xy[1], epochs=qat_epochs)
        qat = to_int8_tflite(batch1_model(qat_model), representative_x, num_samples=num_samples)
        res["qat"] = exit_accuracies(tflite_predict(qat, x_test), y_test, layout)
    return res

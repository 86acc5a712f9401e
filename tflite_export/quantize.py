"""Full-int8 TFLite conversion: post-training quantisation (PTQ) and quantisation-aware training (QAT).

PTQ calibrates every activation range on representative samples from the training split and gives a
model whose inputs and outputs are int8 too (nothing float is left for the microcontroller).

QAT goes through tensorflow-model-optimization (tfmot), which only accepts tf_keras models and, when
imported, switches the whole process to legacy Keras (`TF_USE_LEGACY_KERAS=1`). So QAT runs in a
child process: the Keras 3 model is rebuilt layer by layer with tf_keras (same configs, same weights),
wrapped with fake-quantisation, fine-tuned, and its fine-tuned float weights are copied back into the
caller's Keras 3 model. Activation ranges are then calibrated by the same PTQ conversion, so the staged
export path is identical for PTQ and QAT; only the weights differ.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import warnings
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from nachos_tf.errors import ExportError
from nachos_tf.tf_logging import native_stderr_captured

from .graph import batch1_model
from .int8 import quantize_input
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


# --------------------------------------------------------------------------- QAT (child process)

def qat_finetune(model: keras.Model, x_train: np.ndarray, y_train: np.ndarray, epochs: int = 1,
                 batch_size: int = 64, learning_rate: float = 1e-4, timeout: Optional[float] = None) -> keras.Model:
    """Quantisation-aware fine-tuning of a Keras 3 EENN; returns a Keras 3 clone with the new weights.

    Runs in a child process (tfmot flips the process to legacy Keras). Every class output is trained with cross-entropy
    on the labels; each confidence output is distilled from the float model's own confidence (soft binary
    cross-entropy), so thresholds calibrated on the float model keep their meaning. The caller's model is not modified.
    Args:
        model: the Keras 3 EENN.
        x_train: training inputs; y_train: their labels.
        epochs: fine-tuning epochs (<= 0: `model` itself is returned).
        batch_size: batch size; learning_rate: Adam's learning rate.
        timeout: seconds the child process may take (None: no limit).
    Returns:
        The fine-tuned clone.
    Raises:
        ExportError: the child process fails, or fine-tuned weights of a layer are missing.
        subprocess.TimeoutExpired: the child process outlives `timeout`.
    """
    import keras

    if epochs <= 0:
        return model
    x_train = np.asarray(x_train, dtype=np.float32)
    names, targets, conf_names = _finetune_targets(model, x_train, y_train)
    with tempfile.TemporaryDirectory(prefix="nachos_qat_") as tmp:
        src = os.path.join(tmp, "model.keras")
        model.save(src)
        np.savez(os.path.join(tmp, "data.npz"), x=x_train,
                 **{f"t_{i}": targets[n] for i, n in enumerate(names) if n in targets})
        params = {"epochs": int(epochs), "batch_size": int(batch_size), "learning_rate": float(learning_rate),
                  "names": names, "conf_names": conf_names}
        with open(os.path.join(tmp, "params.json"), "w") as f:
            json.dump(params, f)
        env = dict(os.environ)
        env.pop("TF_USE_LEGACY_KERAS", None)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONPATH"] = os.pathsep.join([_repo_root()] + [p for p in [env.get("PYTHONPATH")] if p])
        code = "import sys; from tflite_export.quantize import _qat_worker_main; _qat_worker_main(sys.argv[1])"
        proc = subprocess.run([sys.executable, "-c", code, tmp], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ExportError(f"QAT fine-tuning failed (exit code {proc.returncode}):\n"
                              f"{proc.stderr.strip()[-3000:]}")
        with np.load(os.path.join(tmp, "weights.npz")) as w:
            new_weights = {k: w[k] for k in w.files}
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    missing = []
    for layer in clone.layers:
        if not layer.weights:
            continue
        paths = [f"{layer.name}/{i}" for i in range(len(layer.weights))]
        if all(p in new_weights for p in paths):
            layer.set_weights([new_weights[p] for p in paths])
        else:
            missing.append(layer.name)
    if missing:
        raise ExportError(f"QAT: fine-tuned weights of layer(s) {missing[:5]} not found in the tf_keras model")
    return clone


def _finetune_targets(model, x_train: np.ndarray, y_train) -> Tuple[List[str], Dict[str, np.ndarray], List[str]]:
    """Targets of the QAT fine-tuning (and of its float control): the labels for every class output, the
    float model's own confidence for every confidence output. Returns (output names, targets by name,
    confidence output names)."""
    from nachos_tf import naming

    y_train = np.asarray(y_train).reshape(-1).astype(np.int64)
    names = naming.output_names(model)
    layout = naming.exit_layout(model)
    preds = model.predict(x_train, verbose=0, batch_size=256)
    preds = preds if isinstance(preds, (list, tuple)) else [preds]
    targets: Dict[str, np.ndarray] = {}
    for e in layout:
        targets[names[e.logits_index]] = y_train
        if e.conf_index is not None:
            targets[names[e.conf_index]] = np.asarray(preds[e.conf_index], dtype=np.float32).reshape(-1, 1)
    return names, targets, [names[e.conf_index] for e in layout if e.conf_index is not None]


def float_finetune(model: keras.Model, x_train: np.ndarray, y_train: np.ndarray, epochs: int = 1,
                   batch_size: int = 64, learning_rate: float = 1e-4, seed: int = 0) -> keras.Model:
    """The control for QAT: the same fine-tuning (targets, losses, Adam, epochs, batch size) on the float
    Keras 3 model, without fake quantisation. QAT's gain over PTQ minus this one's gain over the float
    model is what quantisation-awareness itself buys.
    Args:
        model: the Keras 3 EENN.
        x_train: training inputs; y_train: their labels.
        epochs: fine-tuning epochs (<= 0: an unchanged clone).
        batch_size: batch size; learning_rate: Adam's learning rate.
        seed: Keras random seed of the fine-tuning.
    Returns:
        A fine-tuned clone; the caller's model is not modified.
    """
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    if epochs <= 0:
        return clone
    x_train = np.asarray(x_train, dtype=np.float32)
    names, targets, conf_names = _finetune_targets(model, x_train, y_train)
    keras.utils.set_random_seed(int(seed))
    losses = [keras.losses.BinaryCrossentropy() if n in conf_names else
              keras.losses.SparseCategoricalCrossentropy(from_logits=True) for n in names]
    clone.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses)
    clone.fit(x_train, [targets[n] for n in names], epochs=int(epochs), batch_size=int(batch_size), verbose=0,
              shuffle=True)
    return clone


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Keys of a Keras 3 layer config that are serialised objects (initialisers, ...) or Keras-3-only; the
# tf_keras rebuild drops them: weights are copied afterwards, and regularisers do not matter for QAT.
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def nachos_hard_sigmoid(x):
    """Keras 3's hard_sigmoid, relu6(x + 3) / 6 (tf_keras's 'hard_sigmoid' is 0.2 x + 0.5, clipped)."""
    import tensorflow as tf

    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def nachos_hard_silu(x):
    """Keras 3's hard_silu / hard_swish, x * relu6(x + 3) / 6 (absent from tf_keras)."""
    return x * nachos_hard_sigmoid(x)


def nachos_gelu_tanh(x):
    import tensorflow as tf

    return tf.nn.gelu(x, approximate=True)


# Keras 3 activation names whose tf_keras namesake differs or is missing.
_ACTIVATIONS = {"hard_sigmoid": nachos_hard_sigmoid, "hard_silu": nachos_hard_silu, "hard_swish": nachos_hard_silu,
                "silu": "swish", "gelu": nachos_gelu_tanh}


_FLOAT_ACTIVATION = []


def _float_activation_class():
    """A tf_keras layer applying one of this module's activation functions by name (made once)."""
    if _FLOAT_ACTIVATION:
        return _FLOAT_ACTIVATION[0]
    import tf_keras

    class NachosFloatActivation(tf_keras.layers.Layer):
        def __init__(self, fn: str, **kwargs):
            super().__init__(**kwargs)
            self.fn = fn

        def call(self, x):
            return globals()[self.fn](x)

        def get_config(self):
            return dict(super().get_config(), fn=self.fn)

    _FLOAT_ACTIVATION.append(NachosFloatActivation)
    return NachosFloatActivation


# Activations tfmot's default 8-bit scheme handles (QuantizeAwareActivation, Activation layers).
_TFMOT_ACTIVATIONS = frozenset({"linear", "relu", "relu6", "swish", "gelu", "softmax", "sigmoid", "tanh"})


def _tf_keras_config(layer, cls) -> dict:
    """A Keras 3 layer's config translated for the same-named tf_keras layer class."""
    import inspect

    cfg = dict(layer.get_config())
    allowed = set(inspect.signature(cls.__init__).parameters) | {"name", "dtype", "trainable"}
    out = {}
    for k, v in cfg.items():
        if k not in allowed or k.endswith(_DROP_SUFFIXES):
            continue
        if k == "dtype":
            v = getattr(layer, "dtype_policy", None)
            v = getattr(v, "name", "float32")
        if k == "activation" and isinstance(v, str):
            v = _ACTIVATIONS.get(v, v)
        if k == "approximate" and type(layer).__name__ == "GELU":
            v = bool(v)
        out[k] = v
    return out


def to_tf_keras(model):
    """Rebuilds a Keras 3 functional model with tf_keras layers (same configs, same weights).

    Walks the functional graph in topological order and re-creates each layer from its config in
    tf_keras; raises ExportError naming any layer tf_keras does not have.
    """
    import tf_keras

    tensors = {}
    made = {}
    nodes_by_depth = model._nodes_by_depth
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            op = node.operation
            if node.is_input:
                t = node.outputs[0]
                x = tf_keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=op.name)
                tensors[id(t)] = x
                continue
            if id(op) not in made:
                cls_name = type(op).__name__
                cls = getattr(tf_keras.layers, cls_name, None)
                if cls is None:
                    raise ExportError(f"QAT: layer {op.name!r} ({cls_name}) has no tf_keras counterpart")
                try:
                    cfg = _tf_keras_config(op, cls)
                    if cls_name == "Activation" and callable(cfg.get("activation")):
                        # a class tfmot's layout transforms do not match: stays float in QAT
                        made[id(op)] = _float_activation_class()(cfg["activation"].__name__, name=op.name)
                    else:
                        made[id(op)] = cls(**cfg)
                except Exception as e:
                    raise ExportError(f"QAT: cannot rebuild layer {op.name!r} ({cls_name}) in tf_keras: "
                                      f"{e}") from e
            args, kwargs = node.arguments.fill_in(tensors)
            out = made[id(op)](*args, **kwargs)
            outs = out if isinstance(out, (list, tuple)) else [out]
            for a, b in zip(node.outputs, outs):
                tensors[id(a)] = b
    ins = [tensors[id(t)] for t in model.inputs]
    outs = [tensors[id(t)] for t in model.outputs]
    tfm = tf_keras.Model(ins if len(ins) > 1 else ins[0], outs, name=model.name)
    for layer in model.layers:
        if id(layer) in made and layer.weights:
            made[id(layer)].set_weights(layer.get_weights())
    return tfm


def _qat_worker_main(tmp: str) -> None:
    """Child-process body of `qat_finetune`: rebuild in tf_keras, quantise-aware fine-tune, save weights."""
    import keras  # Keras 3 first, before tfmot switches tf.keras to tf_keras

    with open(os.path.join(tmp, "params.json")) as f:
        params = json.load(f)
    model = keras.models.load_model(os.path.join(tmp, "model.keras"), compile=False)
    data = np.load(os.path.join(tmp, "data.npz"))
    x = data["x"]
    tfm = to_tf_keras(model)
    ref = model.predict(x[:8], verbose=0)
    got = tfm.predict(x[:8], verbose=0)
    ref = ref if isinstance(ref, (list, tuple)) else [ref]
    got = got if isinstance(got, (list, tuple)) else [got]
    for a, b in zip(ref, got):
        if not np.allclose(a, b, atol=1e-4, rtol=1e-3):
            raise ExportError("QAT: the tf_keras rebuild does not reproduce the Keras 3 outputs")

    import tensorflow_model_optimization as tfmot  # lazily: sets TF_USE_LEGACY_KERAS=1 in this process
    import tf_keras

    qk = tfmot.quantization.keras
    registry = qk.default_8bit.Default8BitQuantizeRegistry()

    def annotate(layer):
        # layers the default 8-bit scheme cannot quantise (custom activations such as hard-swish
        # included) stay float during fine-tuning
        act = getattr(layer, "activation", None)
        if act is not None and getattr(act, "__name__", "") not in _TFMOT_ACTIVATIONS:
            return layer
        try:
            if registry.supports(layer):
                return qk.quantize_annotate_layer(layer)
        except Exception:
            pass
        return layer

    annotated = tf_keras.models.clone_model(tfm, clone_function=annotate)
    annotated.set_weights(tfm.get_weights())
    custom = {f.__name__: f for f in (nachos_hard_sigmoid, nachos_hard_silu, nachos_gelu_tanh)}
    custom["NachosFloatActivation"] = _float_activation_class()
    with qk.quantize_scope(custom):
        qat = qk.quantize_apply(annotated)
    names = params["names"]
    conf = set(params["conf_names"])
    losses, ys = {}, {}
    for i, n in enumerate(names):
        key = f"t_{i}"
        if key not in data.files:
            continue
        ys[n] = data[key]
        losses[n] = (tf_keras.losses.BinaryCrossentropy() if n in conf else
                     tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # quantize_apply keeps the output order: targets and losses go by position
    y_list = [ys[n] for n in names]
    loss_list = [losses[n] for n in names]
    qat.compile(optimizer=tf_keras.optimizers.Adam(params["learning_rate"]), loss=loss_list)
    qat.fit(x, y_list, epochs=params["epochs"], batch_size=params["batch_size"], verbose=0, shuffle=True)
    # QuantizeWrapperV2 takes over its layer's kernel: find every weight by its variable name
    trained = {w.name.split(":")[0]: w for w in qat.weights}
    weights = {}
    for layer in tfm.layers:   # the unwrapped rebuild gives each layer's weight order (= Keras 3's)
        for i, w in enumerate(layer.weights):
            v = trained.get(w.name.split(":")[0])
            if v is not None:
                weights[f"{layer.name}/{i}"] = v.numpy()
    np.savez(os.path.join(tmp, "weights.npz"), **weights)

"""Quantisation-aware fine-tuning (QAT) of a Keras 3 EENN, and its float control.

QAT goes through tensorflow-model-optimization (tfmot), which only accepts tf_keras models and, when
imported, switches the whole process to legacy Keras (`TF_USE_LEGACY_KERAS=1`). So QAT runs in a
child process: the Keras 3 model is rebuilt layer by layer with tf_keras (same configs, same weights),
wrapped with fake-quantisation, fine-tuned, and its fine-tuned float weights are copied back into the
caller's Keras 3 model. Activation ranges are then calibrated by the same PTQ conversion
(`quantize.to_int8_tflite`), so the staged export path is identical for PTQ and QAT; only the weights differ.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from nachos_tf.errors import ExportError

if TYPE_CHECKING:
    import keras



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
        code = "import sys; from tflite_export.qat import _qat_worker_main; _qat_worker_main(sys.argv[1])"
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

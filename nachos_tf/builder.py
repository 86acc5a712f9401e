"""Builds a genome into a flat Keras 3 functional EENN: Rescaling, backbone stages, exit heads.

Standard Keras layers only, so the model converts to full-int8 TFLite and saves/loads with plain
`keras.models.load_model`. Output names and order follow `nachos_tf.naming`.
"""
from __future__ import annotations

from typing import List, Optional

import keras
from keras import layers

from . import naming
from .space import ExitGene, Genome, SearchSpace


def build_eenn(space: SearchSpace, genome: Genome, name: Optional[str] = None) -> keras.Model:
    """Genome -> keras.Model with outputs exit_0, [exit_0_conf], ..., final (class logits).

    The genome is validated first (GenomeError with the reasons if it is not a canonical member of the
    space: call `space.repair` on hand-edited genomes).
    """
    space.validate(genome)
    if space.kind == "mcu":
        return _build_mcu(space, genome, name or "nachos_eenn")
    from .tuner_bridge import build_from_hypermodel

    return build_from_hypermodel(space, genome, name or "nachos_eenn")


def attach_exit_head(x, k: int, gene: ExitGene, num_classes: int, confidence: bool) -> List:
    """Adds exit k's head on backbone tensor `x`; returns [logits] or [logits, confidence]."""
    p = f"exit_{k}"
    if gene.head == "gap_dense":
        v = layers.GlobalAveragePooling2D(name=f"{p}_gap")(x)
    else:
        if gene.pool > 1:
            x = layers.AveragePooling2D(gene.pool, strides=gene.pool, padding="same", name=f"{p}_pool")(x)
        ksize = 1 if gene.head == "conv_gap_dense" else 3
        x = layers.Conv2D(gene.width, ksize, padding="same", use_bias=False, name=f"{p}_conv")(x)
        x = layers.BatchNormalization(name=f"{p}_bn")(x)
        x = layers.ReLU(name=f"{p}_relu")(x)
        if gene.head == "conv_gap_dense":
            v = layers.GlobalAveragePooling2D(name=f"{p}_gap")(x)
        else:
            v = layers.Flatten(name=f"{p}_flatten")(x)
    outs = [layers.Dense(num_classes, name=naming.exit_name(k))(v)]
    if confidence:
        outs.append(layers.Dense(1, activation="sigmoid", name=naming.conf_name(k))(v))
    return outs


def _act(kind: str, name: str):
    return layers.ReLU(name=name) if kind == "relu" else layers.Activation("hard_swish", name=name)


def _mbconv(x, c_out: int, kernel: int, expand: int, stride: int, se: bool, act: str, name: str):
    """MobileNetV3 inverted-residual block: 1x1 expand, depthwise kxk, optional SE, 1x1 project."""
    c_in = x.shape[-1]
    c_mid = c_in * expand
    y = layers.Conv2D(c_mid, 1, use_bias=False, name=f"{name}_expand")(x)
    y = layers.BatchNormalization(name=f"{name}_expand_bn")(y)
    y = _act(act, f"{name}_expand_act")(y)
    y = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = layers.BatchNormalization(name=f"{name}_dw_bn")(y)
    y = _act(act, f"{name}_dw_act")(y)
    if se:
        s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(y)
        s = layers.Conv2D(max(4, c_mid // 4), 1, activation="relu", name=f"{name}_se_reduce")(s)
        s = layers.Conv2D(c_mid, 1, activation="hard_sigmoid", name=f"{name}_se_expand")(s)
        y = layers.Multiply(name=f"{name}_se_scale")([y, s])
    y = layers.Conv2D(c_out, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(name=f"{name}_project_bn")(y)
    if stride == 1 and c_in == c_out:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def _build_mcu(space: SearchSpace, genome: Genome, name: str) -> keras.Model:
    p = genome.params
    h_in, w_in, _ = space.input_shape
    inp = keras.Input(shape=space.input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inp)
    if p["resolution"] != h_in:
        w = max(1, round(w_in * p["resolution"] / h_in))
        x = layers.Resizing(p["resolution"], w, interpolation="bilinear", name="downscale")(x)
    s = space.settings["stem_stride"]
    x = layers.Conv2D(p["stem_width"], 3, strides=s, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = _act(p["s1_act"], "stem_act")(x)
    outputs = []
    k = 0
    for st, stride in enumerate(space.settings["strides"]):
        g = f"s{st + 1}"
        for b in range(p[f"{g}_depth"]):
            x = _mbconv(x, p[f"{g}_width"], p[f"{g}_kernel"], p[f"{g}_expand"], stride if b == 0 else 1,
                        p[f"{g}_se"], p[f"{g}_act"], name=f"{g}_b{b}")
        if st < space.n_exit_points and genome.exits[st].enabled:
            x = layers.Identity(name=naming.point_name(k))(x)
            outputs += attach_exit_head(x, k, genome.exits[st], space.num_classes, space.confidence)
            k += 1
    v = layers.GlobalAveragePooling2D(name="final_gap")(x)
    outputs.append(layers.Dense(space.num_classes, name=naming.FINAL)(v))
    return keras.Model(inp, outputs, name=name)

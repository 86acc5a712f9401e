"""The built-in backbone family: MobileNetV3-style inverted-residual stages scaled to microcontrollers.

Five stages of MBConv blocks (1x1 expand, depthwise kxk, optional squeeze-excite, 1x1 project), after a
Rescaling (raw pixels in), an optional bilinear down-scaling (the `resolution` gene) and a 3x3 stem.
Candidate exit point k sits after stage k+1. `McuFamily.default(input_shape)` is the OFA-MobileNetV3
space NACHOS used (depth {2,3,4}, kernel {3,5,7}, expansion {3,4,6}); `McuFamily(genes, ...)` takes any
genes of the same names (e.g. tiny test spaces).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
from keras import layers

from .. import naming
from ..errors import GenomeError
from ..genome import Gene, Genome
from ..heads import attach_exit_head
from .base import BackboneFamily, Shape, SpaceView

#: Activation choices of a stage.
ACTIVATIONS = ("relu", "hard_swish")
#: Output-width choices of the five stages of the default space.
STAGE_WIDTHS = ((8, 12, 16), (12, 16, 20), (16, 20, 24), (20, 24, 32), (24, 32, 40))
#: Stride of the first block of each stage in the default space.
STAGE_STRIDES = (2, 1, 2, 1, 1)


class McuFamily(BackboneFamily):
    """MobileNetV3-style backbone family (the `"mcu"` kind of the space JSON).

    Genes (all categorical), in this (encoding) order: `resolution`, `stem_width` and, per stage
    s = 1..len(strides), `s{s}_depth`, `s{s}_kernel`, `s{s}_expand`, `s{s}_width`, `s{s}_se`, `s{s}_act`.

    Args:
        genes: The backbone genes (names as above, any order: they are put in the order above).
        n_exit_points: Candidate exit points, one after each of the first `n_exit_points` stages.
        settings: `{"stem_stride": int, "strides": [first-block stride per stage]}`.

    Raises:
        GenomeError: the settings lack `stem_stride` / `strides`, there are more exit points than stages,
            or the gene names are not the ones above.
    """

    kind = "mcu"
    supports_supernet = True

    def __init__(self, genes: Sequence[Gene], n_exit_points: int = 4, settings: Optional[Mapping[str, Any]] = None):
        self.n_exit_points = int(n_exit_points)
        self.settings: Dict[str, Any] = dict(settings or {})
        if "stem_stride" not in self.settings or "strides" not in self.settings:
            raise GenomeError(f"the mcu family needs settings stem_stride and strides, got {self.settings}")
        n_stages = len(self.settings["strides"])
        if self.n_exit_points > n_stages:
            raise GenomeError(f"{self.n_exit_points} exit points but only {n_stages} stages")
        names = gene_names(n_stages)
        by_name = {g.name: g for g in genes}
        if set(by_name) != set(names) or len(by_name) != len(list(genes)):
            missing, extra = sorted(set(names) - set(by_name)), sorted(set(by_name) - set(names))
            raise GenomeError(f"the mcu family with {n_stages} stages needs the genes {names} once each "
                              f"(missing {missing}, unknown {extra})")
        self.genes = [by_name[n] for n in names]

    @classmethod
    def default(cls, input_shape: Sequence[int], early_exits: bool = True) -> "McuFamily":
        """The default family for an input shape (what `SearchSpace.mcu` uses).

        Args:
            input_shape: (height, width, channels) of the raw images.
            early_exits: False gives no candidate exit point (the static, single-exit space).

        Returns:
            The family: resolution choices of about 100/86/72 % of the input height, stem width {8, 16},
            five stages, a stride-2 stem when the input is at least 24 pixels.
        """
        h, w, _ = (int(s) for s in input_shape)
        res = sorted({_even(h), _even(h * 0.86), _even(h * 0.72)}, reverse=True)
        genes = [Gene("resolution", tuple(res)), Gene("stem_width", (8, 16))]
        for s in range(5):
            genes += [Gene(f"s{s + 1}_depth", (2, 3, 4)), Gene(f"s{s + 1}_kernel", (3, 5, 7)),
                      Gene(f"s{s + 1}_expand", (3, 4, 6)), Gene(f"s{s + 1}_width", STAGE_WIDTHS[s]),
                      Gene(f"s{s + 1}_se", (False, True)), Gene(f"s{s + 1}_act", ACTIVATIONS)]
        settings = {"stem_stride": 2 if min(h, w) >= 24 else 1, "strides": list(STAGE_STRIDES)}
        return cls(genes, 4 if early_exits else 0, settings)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "McuFamily":
        """The family described by a space JSON: its genes (put in encoding order), exit points, settings.

        The default family and custom ones (other gene values, strides) both round-trip, whatever the key
        order of the JSON (config.json is written with sorted keys).

        Args:
            d: The space JSON (`SearchSpace.to_dict()`).

        Returns:
            The family.

        Raises:
            GenomeError: the genes or settings are not those of an mcu family.
            KeyError: `d` lacks `backbone_genes`, `n_exit_points` or `settings`.
        """
        try:
            genes = [Gene(str(n), tuple(v)) for n, v in d["backbone_genes"].items()]
        except (AttributeError, TypeError) as exc:
            raise GenomeError(f"malformed backbone_genes in the space JSON ({exc})") from None
        return cls(genes, int(d["n_exit_points"]), d["settings"])

    def exit_feature_shapes(self, space: SpaceView, genome: Genome) -> List[Shape]:
        """(H, W, C) after each of the first `n_exit_points` stages (arithmetic, no graph is built).

        Args:
            space: The space (its input shape).
            genome: A genome with valid backbone genes.

        Returns:
            One shape per candidate exit point.
        """
        p = genome.params
        h = p["resolution"]
        w = max(1, round(space.input_shape[1] * h / space.input_shape[0]))
        s = self.settings["stem_stride"]
        h, w = math.ceil(h / s), math.ceil(w / s)
        shapes = []
        for st, stride in enumerate(self.settings["strides"]):
            h, w = math.ceil(h / stride), math.ceil(w / stride)
            shapes.append((h, w, p[f"s{st + 1}_width"]))
        return shapes[: self.n_exit_points]

    def backbone_macs(self, space: SpaceView, genome: Genome) -> Tuple[List[int], int]:
        """Backbone MACs by arithmetic (what `profile_macs` counts on the built model: convolutions,
        depthwise convolutions and dense layers; normalisation, activations, pooling and adds cost 0).

        Args:
            space: The space (input shape, classes).
            genome: A genome with valid backbone genes.

        Returns:
            (cumulative MACs at the end of each candidate exit point's stage, MACs of the whole backbone
            with the final classifier).
        """
        p = genome.params
        h = p["resolution"]
        w = max(1, round(space.input_shape[1] * h / space.input_shape[0]))
        s = self.settings["stem_stride"]
        h, w = math.ceil(h / s), math.ceil(w / s)
        c = p["stem_width"]
        total = h * w * c * 9 * space.input_shape[2]
        points = []
        for st, stride in enumerate(self.settings["strides"]):
            g = f"s{st + 1}"
            k, e, c_out = p[f"{g}_kernel"], p[f"{g}_expand"], p[f"{g}_width"]
            for b in range(p[f"{g}_depth"]):
                c_mid = c * e
                ho, wo = (math.ceil(h / stride), math.ceil(w / stride)) if b == 0 else (h, w)
                total += h * w * c * c_mid + ho * wo * c_mid * k * k + ho * wo * c_mid * c_out
                if p[f"{g}_se"]:
                    total += 2 * c_mid * max(4, c_mid // 4)
                h, w, c = ho, wo, c_out
            points.append(total)
        return points[: self.n_exit_points], total + c * space.num_classes

    def build(self, space: SpaceView, genome: Genome, name: str) -> keras.Model:
        """Rescaling, [Resizing], stem, MBConv stages with `exit_k_point` identities and heads, final GAP+Dense.

        Args:
            space: The space (input shape, classes, confidence).
            genome: A valid genome.
            name: The Keras model name.

        Returns:
            The flat functional EENN.
        """
        p = genome.params
        h_in, w_in, _ = space.input_shape
        inp = keras.Input(shape=space.input_shape, name="image")
        x = layers.Rescaling(1.0 / 255.0, name="rescale")(inp)
        if p["resolution"] != h_in:
            w = max(1, round(w_in * p["resolution"] / h_in))
            x = layers.Resizing(p["resolution"], w, interpolation="bilinear", name="downscale")(x)
        s = self.settings["stem_stride"]
        x = layers.Conv2D(p["stem_width"], 3, strides=s, padding="same", use_bias=False, name="stem_conv")(x)
        x = layers.BatchNormalization(name="stem_bn")(x)
        x = _act(p["s1_act"], "stem_act")(x)
        outputs = []
        k = 0
        for st, stride in enumerate(self.settings["strides"]):
            g = f"s{st + 1}"
            for b in range(p[f"{g}_depth"]):
                x = mbconv(x, p[f"{g}_width"], p[f"{g}_kernel"], p[f"{g}_expand"], stride if b == 0 else 1,
                           p[f"{g}_se"], p[f"{g}_act"], name=f"{g}_b{b}")
            if st < self.n_exit_points and genome.exits[st].enabled:
                x = layers.Identity(name=naming.point_name(k))(x)
                outputs += attach_exit_head(x, k, genome.exits[st], space.num_classes, space.confidence)
                k += 1
        v = layers.GlobalAveragePooling2D(name="final_gap")(x)
        outputs.append(layers.Dense(space.num_classes, name=naming.FINAL)(v))
        return keras.Model(inp, outputs, name=name)

    def __repr__(self) -> str:
        return f"McuFamily(genes={len(self.genes)}, n_exit_points={self.n_exit_points}, settings={self.settings})"


def gene_names(n_stages: int = len(STAGE_STRIDES)) -> List[str]:
    """Names of the mcu family's genes, in encoding order.

    Args:
        n_stages: Number of stages.

    Returns:
        `["resolution", "stem_width", "s1_depth", "s1_kernel", "s1_expand", "s1_width", "s1_se", "s1_act",
        "s2_depth", ...]`.
    """
    names = ["resolution", "stem_width"]
    for s in range(1, n_stages + 1):
        names += [f"s{s}_{g}" for g in ("depth", "kernel", "expand", "width", "se", "act")]
    return names


def _act(kind: str, name: str) -> layers.Layer:
    return layers.ReLU(name=name) if kind == "relu" else layers.Activation("hard_swish", name=name)


def mbconv(x: Any, c_out: int, kernel: int, expand: int, stride: int, se: bool, act: str, name: str) -> Any:
    """MobileNetV3 inverted-residual block: 1x1 expand, depthwise kxk, optional SE, 1x1 project.

    Args:
        x: Symbolic (N, H, W, C_in) input.
        c_out: Output channels.
        kernel: Depthwise kernel size.
        expand: Expansion ratio (hidden channels = C_in * expand).
        stride: Depthwise stride.
        se: Whether to add squeeze-excite.
        act: "relu" or "hard_swish".
        name: Prefix of the block's layer names.

    Returns:
        The block output (with a residual Add when stride is 1 and C_in == c_out).
    """
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


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)

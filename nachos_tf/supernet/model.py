"""The weight-sharing network: one set of weights for the largest choice of every gene, masked forward.

Every subnet runs through the same max-size graph: channels a subnet does not have are zeroed by
0/1 masks after each normalisation, blocks beyond its depth are bypassed with `tf.where`, its kxk
depthwise kernel is a masked window of the 7x7 kernel, activation / SE / residual are selected with
`tf.where` on gate tensors. Selection is exact (no blending arithmetic), so the forward pass of a
subnet equals the plain model `build_eenn` builds for it, to float rounding. Ops are the ones the
Keras layers of the builder call (`keras.ops.conv`, `depthwise_conv`, `batch_normalization`, ...).

All exit-head variants (head kind x pool) are computed at every exit point, at the max head width
masked to the subnet's: training trains every head on every subnet, and one graph serves all.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import keras
import tensorflow as tf
from keras import ops

from .gates import SupernetSpec, gates, window_mask
from .kernels import dw_kernel_tf, transform_shapes

BN_EPS = 1e-3  # keras.layers.BatchNormalization defaults
BN_MOMENTUM = 0.99
BN_MODES = ("train", "batch", "moving", "recal")
# batch stats + momentum update | batch stats only | moving stats | batch stats become the moving ones


class SupernetNet(keras.Model):
    """Shared weights (named like the builder's layers, ``<layer>/<weight>``) and the masked forward pass.

    With `kernel_transform`, every block of a stage with elastic kernels also has OFA's kernel-transformation
    matrices (`nachos_tf.supernet.kernels`, identity at first): its smaller kernels are transformed centres.
    """

    def __init__(self, spec: SupernetSpec, kernel_transform: bool = False, **kw):
        super().__init__(name="supernet", **kw)
        object.__setattr__(self, "spec", spec)  # plain data, not tracked by Keras
        object.__setattr__(self, "vars", {})  # name -> variable (tracked once, through add_weight)
        object.__setattr__(self, "kernel_transform", bool(kernel_transform))
        self._make_weights()
        self.built = True

    # ------------------------------------------------------------------ weights
    def _w(self, name: str, shape, init: str = "glorot_uniform", trainable: bool = True):
        v = self.add_weight(name=name.replace("/", "__"), shape=tuple(int(s) for s in shape),
                            initializer=init, trainable=trainable)
        self.vars[name] = v
        return v

    def _bn(self, name: str, c: int) -> None:
        self._w(f"{name}/gamma", (c,), "ones")
        self._w(f"{name}/beta", (c,), "zeros")
        self._w(f"{name}/moving_mean", (c,), "zeros", trainable=False)
        self._w(f"{name}/moving_variance", (c,), "ones", trainable=False)

    def _make_weights(self) -> None:
        sp = self.spec
        cin = sp.input_shape[2]
        self._w("stem_conv/kernel", (3, 3, cin, sp.stem_max))
        self._bn("stem_bn", sp.stem_max)
        for s in range(sp.n_stages):
            km, wm = sp.kernel_max(s), sp.width_max(s)
            for b in range(sp.depth_max(s)):
                n, ci, cm, se = f"s{s + 1}_b{b}", sp.cin_max(s, b), sp.cmid_max(s, b), sp.se_max(s, b)
                self._w(f"{n}_expand/kernel", (1, 1, ci, cm))
                self._bn(f"{n}_expand_bn", cm)
                self._w(f"{n}_dw/kernel", (km, km, cm, 1))
                self._bn(f"{n}_dw_bn", cm)
                self._w(f"{n}_se_reduce/kernel", (1, 1, cm, se))
                self._w(f"{n}_se_reduce/bias", (se,), "zeros")
                self._w(f"{n}_se_expand/kernel", (1, 1, se, cm))
                self._w(f"{n}_se_expand/bias", (cm,), "zeros")
                self._w(f"{n}_project/kernel", (1, 1, cm, wm))
                self._bn(f"{n}_project_bn", wm)
        nc, hw = sp.num_classes, sp.head_width_max
        for p in range(sp.n_points):
            c = sp.width_max(p)
            for h in sp.heads:
                pre = f"p{p}_{h}"
                if h == "gap_dense":
                    self._dense(pre, c)
                    continue
                self._w(f"{pre}_conv/kernel", (1, 1, c, hw) if h == "conv_gap_dense" else (3, 3, c, hw))
                self._bn(f"{pre}_bn", hw)
                if h == "conv_gap_dense":
                    self._dense(pre, hw)
                else:
                    for ph, pw in sp.nachos_shapes(p):
                        self._dense(f"{pre}_{ph}x{pw}", ph * pw * hw)
        self._w("final/kernel", (sp.width_max(sp.n_stages - 1), nc))
        self._w("final/bias", (nc,), "zeros")
        if self.kernel_transform:
            for name, shape in transform_shapes(sp).items():
                self._w(name, shape, "identity")

    def _dense(self, pre: str, fan_in: int) -> None:
        self._w(f"{pre}_dense/kernel", (fan_in, self.spec.num_classes))
        self._w(f"{pre}_dense/bias", (self.spec.num_classes,), "zeros")
        if self.spec.confidence:
            self._w(f"{pre}_conf/kernel", (fan_in, 1))
            self._w(f"{pre}_conf/bias", (1,), "zeros")

    # ------------------------------------------------------------------ ops
    def _batchnorm(self, x, name: str, mode: str, keep=None):
        """BN as keras.layers.BatchNormalization; batch-statistics modes use TF's fused kernel (fast).
        `keep`: in "recal" mode, a bool tensor: write the statistics only when true (BN weights shared by
        several head variants take the statistics of the subnet's own variant)."""
        v = self.vars
        if mode == "moving":
            return ops.batch_normalization(x, v[f"{name}/moving_mean"], v[f"{name}/moving_variance"], axis=-1,
                                           offset=v[f"{name}/beta"], scale=v[f"{name}/gamma"], epsilon=BN_EPS)
        y, mean, var = tf.compat.v1.nn.fused_batch_norm(x, v[f"{name}/gamma"], v[f"{name}/beta"],
                                                        epsilon=BN_EPS, is_training=True)
        if mode in ("train", "recal"):  # the fused kernel returns the unbiased variance; Keras keeps the biased one
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
            var = tf.stop_gradient(var * (n - 1.0) / tf.maximum(n, 1.0))
            mm, mv = v[f"{name}/moving_mean"], v[f"{name}/moving_variance"]
            m = BN_MOMENTUM if mode == "train" else 0.0   # "recal": exact statistics of this batch (momentum 0)
            new_m, new_v = mm * m + tf.stop_gradient(mean) * (1.0 - m), mv * m + var * (1.0 - m)
            if keep is not None:
                new_m, new_v = tf.where(keep, new_m, mm), tf.where(keep, new_v, mv)
            mm.assign(new_m)
            mv.assign(new_v)
        return y

    @staticmethod
    def _act(x, hswish):
        """ReLU or hard-swish, chosen by a gate (only the chosen one runs)."""
        return tf.cond(hswish, lambda: keras.activations.hard_swish(x), lambda: keras.activations.relu(x))

    def _conv(self, x, name: str, strides: int = 1, bias: bool = False):
        y = ops.conv(x, self.vars[f"{name}/kernel"], strides=strides, padding="same")
        return ops.add(y, self.vars[f"{name}/bias"]) if bias else y

    def _dense_out(self, v, pre: str) -> Tuple[Any, Any]:
        w = self.vars
        logits = ops.add(ops.matmul(v, w[f"{pre}_dense/kernel"]), w[f"{pre}_dense/bias"])
        if not self.spec.confidence:
            return logits, None
        conf = ops.sigmoid(ops.add(ops.matmul(v, w[f"{pre}_conf/kernel"]), w[f"{pre}_conf/bias"]))
        return logits, conf[:, 0]

    # ------------------------------------------------------------------ forward
    def forward(self, x, code, mode: str = "moving", only_chosen: bool = False) -> Dict[str, Any]:
        """Masked forward pass of the subnet `code` (resolution included; one graph for all subnets).

        Args:
            x: raw images (N, H, W, C), pixel values 0..255 (the builder's Rescaling is applied here).
            code: int32 tensor [spec.code_length] (see `gates`).
            mode: "train" (batch statistics, moving statistics updated), "batch" (batch statistics
                only), "moving" (inference: moving statistics) or "recal" (batch statistics, which
                replace the moving ones: BN re-estimation of this subnet on this batch).
            only_chosen: run only the subnet's own head at each enabled exit point (evaluation): the
                variants axis of "logits" / "conf" then has size 1 (zeros at a disabled point).

        Returns:
            dict with "final" (N, classes), "logits" (N, points, variants, classes), "conf" (N, points,
            variants) or None, "gates" (the subnet's gate tensors).
        """
        sp = self.spec
        g = gates(sp, code)
        x = ops.cast(x, "float32") * (1.0 / 255.0)
        resize = tf.gather(tf.constant([sp.resolution_size(r) != tuple(sp.input_shape[:2])
                                        for r in sp.resolutions]), g["res"])
        x = tf.cond(resize, lambda: tf.image.resize(x, g["size"], method="bilinear", antialias=False),
                    lambda: tf.identity(x))
        x = self._conv(x, "stem_conv", strides=sp.stem_stride)
        x = self._act(self._batchnorm(x, "stem_bn", mode), g["stages"][0]["act"]) * g["stem"]
        logits, confs = [], []
        for s in range(sp.n_stages):
            st = g["stages"][s]
            for b, blk in enumerate(st["blocks"]):
                if b == 0:
                    x = self._block(x, s, b, st, blk, mode)
                else:  # blocks beyond the subnet's depth are skipped (not computed)
                    x = tf.cond(blk["on"], lambda x=x, b=b, blk=blk: self._block(x, s, b, st, blk, mode),
                                lambda x=x: tf.identity(x))
            if s < sp.n_points:
                lg, cf = self._heads(x, s, g["heads"][s], mode, g["exit_variant"][s], g["exit_on"][s], only_chosen)
                logits.append(lg)
                confs.append(cf)
        v = ops.mean(x, axis=[1, 2])
        final = ops.add(ops.matmul(v, self.vars["final/kernel"]), self.vars["final/bias"])
        return {"final": final, "gates": g,
                "logits": ops.stack(logits, axis=1) if logits else None,
                "conf": ops.stack(confs, axis=1) if (confs and sp.confidence) else None}

    def _block(self, x, s: int, b: int, st, blk, mode: str):
        sp = self.spec
        n = f"s{s + 1}_b{b}"
        stride = sp.strides[s] if b == 0 else 1
        act = st["act"]
        y = self._act(self._batchnorm(self._conv(x, f"{n}_expand"), f"{n}_expand_bn", mode), act) * blk["mid"]
        shp = tf.shape(y)
        mask = window_mask(tf, shp[1], shp[2], st["kernel"], sp.kernel_max(s), stride)
        k = (dw_kernel_tf(tf, self.vars, n, st["kernel"], sp.kernels[s]) if self.kernel_transform
             else self.vars[f"{n}_dw/kernel"]) * mask[:, :, None, None]
        y = ops.depthwise_conv(y, k, strides=stride, padding="same")
        y = self._act(self._batchnorm(y, f"{n}_dw_bn", mode), act) * blk["mid"]
        def squeeze_excite(y):
            sq = ops.mean(y, axis=[1, 2], keepdims=True)
            sq = ops.relu(self._conv(sq, f"{n}_se_reduce", bias=True)) * blk["se_mask"]
            return y * keras.activations.hard_sigmoid(self._conv(sq, f"{n}_se_expand", bias=True))

        y = tf.cond(st["se"], lambda: squeeze_excite(y), lambda: tf.identity(y))
        y = self._batchnorm(self._conv(y, f"{n}_project"), f"{n}_project_bn", mode) * st["width"]
        if stride != 1:
            return y
        ci, co = sp.cin_max(s, b), sp.width_max(s)
        xr = x[..., :co] if ci >= co else tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, co - ci]])
        return tf.where(blk["residual"], xr + y, y)

    def _heads(self, x, p: int, wmask, mode: str, chosen=None, exit_on=None, only_chosen: bool = False):
        """Head variants at exit point p: logits (N, V, classes), conf (N, V) or None.

        `chosen`: the subnet's variant index (in "recal" mode only its BN statistics are written). With
        `only_chosen` only that variant runs (and nothing when `exit_on` is 0): V = 1.
        """
        sp = self.spec
        if only_chosen:
            def run(vi):
                def fn():
                    lg, cf = self._variant(x, p, vi, wmask, mode, None)
                    return lg, (cf if cf is not None else tf.zeros_like(lg[:, 0]))
                return fn

            def skip():
                n = tf.shape(x)[0]
                return tf.zeros((n, sp.num_classes)), tf.zeros((n,))

            lg, cf = tf.cond(exit_on > 0, lambda: tf.switch_case(chosen, [run(vi) for vi in range(len(sp.variants))]),
                             skip)
            return lg[:, None, :], (cf[:, None] if sp.confidence else None)
        logits, confs = [], []
        for vi in range(len(sp.variants)):
            keep = None if chosen is None or mode != "recal" else tf.equal(chosen, vi)
            lg, cf = self._variant(x, p, vi, wmask, mode, keep)
            logits.append(lg)
            confs.append(cf)
        conf = ops.stack(confs, axis=1) if sp.confidence else None
        return ops.stack(logits, axis=1), conf

    def _variant(self, x, p: int, vi: int, wmask, mode: str, keep):
        """(logits, conf or None) of head variant vi at exit point p."""
        h, pool = self.spec.variants[vi]
        pre = f"p{p}_{h}"
        if h == "gap_dense":
            return self._dense_out(ops.mean(x, axis=[1, 2]), pre)
        xp = ops.average_pool(x, pool, strides=pool, padding="same") if pool > 1 else x
        y = ops.relu(self._batchnorm(self._conv(xp, f"{pre}_conv"), f"{pre}_bn", mode, keep)) * wmask[vi]
        if h == "conv_gap_dense":
            return self._dense_out(ops.mean(y, axis=[1, 2]), pre)
        return self._flatten_dense(y, p, pre)

    def _flatten_dense(self, y, p: int, pre: str):
        """Flatten + dense of the nachos head: the dense kernel of y's (dynamic) pooled spatial size."""
        sp = self.spec
        shapes = sp.nachos_shapes(p)
        shp = tf.shape(y)
        hit = tf.logical_and(tf.equal(tf.constant([a for a, _ in shapes]), shp[1]),
                             tf.equal(tf.constant([b for _, b in shapes]), shp[2]))
        idx = tf.argmax(tf.cast(hit, tf.int32), output_type=tf.int32)

        def branch(ph: int, pw: int):
            def fn():
                lg, cf = self._dense_out(ops.reshape(y, (-1, ph * pw * sp.head_width_max)), f"{pre}_{ph}x{pw}")
                return (lg, cf) if cf is not None else (lg, tf.zeros_like(lg[:, 0]))
            return fn

        if len(shapes) == 1:
            lg, cf = branch(*shapes[0])()
        else:
            lg, cf = tf.switch_case(idx, [branch(a, b) for a, b in shapes])
        return lg, (cf if sp.confidence else None)

    def call(self, x, training=False):
        """Largest subnet at the top resolution (for Keras summary-like use)."""
        code = tf.constant(self.spec.extreme_code(True))
        return self.forward(x, code, "train" if training else "moving")["final"]

    # ------------------------------------------------------------------ helpers
    def weight_names(self) -> List[str]:
        return list(self.vars)

    def numpy_weights(self) -> Dict[str, Any]:
        return {k: v.numpy() for k, v in self.vars.items()}

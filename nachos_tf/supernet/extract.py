"""Extraction: genome -> the plain Keras model `build_eenn` builds, with weights sliced from the supernet.

Slicing follows the masked forward pass of `model.py`: leading channels of every tensor, the first d
blocks of a stage, the kxk window of the 7x7 depthwise kernel at the offset TF's "same" padding
needs (`gates.window_offset`; with OFA's kernel transformation, the transformed kernel of
`kernels.dw_kernel_np`), the flatten head's dense kernel of the subnet's pooled spatial size
with its leading channels. Then `reestimate_bn` replaces the BN moving statistics (which in the
supernet are a mixture over every subnet trained) by statistics of the subnet itself on a few
thousand training images.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import keras
import numpy as np

from ..errors import SupernetError
from .gates import SupernetSpec, window_offset
from .kernels import dw_kernel_np, transform_name

_BN = ("gamma", "beta", "moving_mean", "moving_variance")


def _bn(W: Dict[str, np.ndarray], name: str, c: int) -> List[np.ndarray]:
    return [W[f"{name}/{k}"][:c] for k in _BN]


def subnet_weights(spec: SupernetSpec, W: Dict[str, np.ndarray], genome: Any) -> Dict[str, List[np.ndarray]]:
    """Layer name (as in `build_eenn`) -> its weight list, sliced from the supernet weights `W`.

    Args:
        spec: the supernet spec.
        W: supernet weights by name (`SupernetNet.numpy_weights()`).
        genome: a valid genome of the space.

    Returns:
        A dict of layer name -> list of arrays in the order `layer.set_weights` expects.
    """
    p = genome.params
    res = int(p["resolution"])
    sizes = spec.stage_sizes(res)
    out: Dict[str, List[np.ndarray]] = {}
    sw = int(p["stem_width"])
    out["stem_conv"] = [W["stem_conv/kernel"][..., :sw]]
    out["stem_bn"] = _bn(W, "stem_bn", sw)
    prev = sw
    for s in range(spec.n_stages):
        g = f"s{s + 1}"
        depth, k, e, c_out = (int(p[f"{g}_{x}"]) for x in ("depth", "kernel", "expand", "width"))
        km = spec.kernel_max(s)
        for b in range(depth):
            n = f"{g}_b{b}"
            c_in = prev if b == 0 else c_out
            c_mid = c_in * e
            stride = spec.strides[s] if b == 0 else 1
            (nh, nw) = sizes[s][0] if b == 0 else sizes[s][1]
            oh, ow = window_offset(nh, k, km, stride), window_offset(nw, k, km, stride)
            out[f"{n}_expand"] = [W[f"{n}_expand/kernel"][:, :, :c_in, :c_mid]]
            out[f"{n}_expand_bn"] = _bn(W, f"{n}_expand_bn", c_mid)
            if transform_name(n, min(spec.kernels[s])) in W:      # OFA's kernel transformation
                if (oh, ow) != ((km - k) // 2,) * 2:
                    raise SupernetError(f"{n}: the {k}x{k} window is not centred; transformed kernels need it")
                out[f"{n}_dw"] = [dw_kernel_np(W, n, k, spec.kernels[s])[:, :, :c_mid, :]]
            else:
                out[f"{n}_dw"] = [W[f"{n}_dw/kernel"][oh:oh + k, ow:ow + k, :c_mid, :]]
            out[f"{n}_dw_bn"] = _bn(W, f"{n}_dw_bn", c_mid)
            if p[f"{g}_se"]:
                r = max(4, c_mid // 4)
                out[f"{n}_se_reduce"] = [W[f"{n}_se_reduce/kernel"][:, :, :c_mid, :r], W[f"{n}_se_reduce/bias"][:r]]
                out[f"{n}_se_expand"] = [W[f"{n}_se_expand/kernel"][:, :, :r, :c_mid], W[f"{n}_se_expand/bias"][:c_mid]]
            out[f"{n}_project"] = [W[f"{n}_project/kernel"][:, :, :c_mid, :c_out]]
            out[f"{n}_project_bn"] = _bn(W, f"{n}_project_bn", c_out)
        prev = c_out
    kk = 0
    for pt in range(spec.n_points):
        e = genome.exits[pt]
        if not e.enabled:
            continue
        c, w, pre, x = int(p[f"s{pt + 1}_width"]), int(e.width), f"p{pt}_{e.head}", f"exit_{kk}"
        if e.head == "gap_dense":
            dense, fan = pre, c
        else:
            out[f"{x}_conv"] = [W[f"{pre}_conv/kernel"][:, :, :c, :w]]
            out[f"{x}_bn"] = _bn(W, f"{pre}_bn", w)
            dense, fan = pre, w
        for suffix, layer in (("dense", x), ("conf", f"{x}_conf")):
            if suffix == "conf" and not spec.confidence:
                continue
            if e.head == "nachos":
                ph, pw = spec.pooled_size(res, pt, e.pool)
                kern = W[f"{pre}_{ph}x{pw}_{suffix}/kernel"]
                kern = kern.reshape(ph, pw, spec.head_width_max, -1)[:, :, :w, :].reshape(ph * pw * w, -1)
                bias = W[f"{pre}_{ph}x{pw}_{suffix}/bias"]
            else:
                kern, bias = W[f"{dense}_{suffix}/kernel"][:fan], W[f"{dense}_{suffix}/bias"]
            out[layer] = [kern, bias]
        kk += 1
    c5 = int(p[f"s{spec.n_stages}_width"])
    out["final"] = [W["final/kernel"][:c5], W["final/bias"]]
    return out


def load_subnet_weights(model: keras.Model, weights: Dict[str, List[np.ndarray]]) -> None:
    """Set every weighted layer of `model` from `weights`; any mismatch is an error, never skipped.

    Raises:
        SupernetError: a weighted layer without sliced weights, an unused slice or a shape mismatch.
    """
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise SupernetError(f"extraction: no supernet weights for layer {layer.name!r}")
        got = weights[layer.name]
        want = [tuple(v.shape) for v in layer.weights]
        if [tuple(a.shape) for a in got] != want:
            raise SupernetError(f"extraction: layer {layer.name!r} wants shapes {want}, "
                                f"sliced {[a.shape for a in got]}")
        layer.set_weights(got)
        used.add(layer.name)
    extra = sorted(set(weights) - used)
    if extra:
        raise SupernetError(f"extraction: sliced weights for layers the model lacks: {extra}")


def reestimate_bn(model: keras.Model, x: np.ndarray, batch_size: Optional[int] = None) -> int:
    """Replace every BatchNormalization layer's moving statistics by the subnet's own statistics on `x`.

    A forward pass in training mode (every BN normalises with batch statistics, as when training);
    with `batch_size=None` the whole of `x` is one batch and the moving statistics become its exact
    mean/variance (momentum 0), else the cumulative average over the batches (momentum (i)/(i+1)).
    Momentum is restored afterwards, so the model's config (and saved file) is unchanged.

    Returns:
        The number of BatchNormalization layers re-estimated.
    """
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    if not bns or len(x) == 0:
        return len(bns)
    saved = [l.momentum for l in bns]
    bs = len(x) if batch_size is None else int(batch_size)
    try:
        for i, start in enumerate(range(0, len(x), bs)):
            for l in bns:
                l.momentum = i / (i + 1.0)
            model(x[start:start + bs], training=True)
    finally:
        for l, m in zip(bns, saved):
            l.momentum = m
    return len(bns)


def bn_images(data: Any, n: int, seed: int = 0) -> np.ndarray:
    """`n` training images for BN re-estimation: an array as is (its first n) or a Dataset's x_train
    (a seeded random subset, the same for every call with the same seed)."""
    if isinstance(data, np.ndarray):
        return data[:n]
    x = getattr(data, "x_train", None)
    if x is None:
        raise SupernetError("bn_data must be an image array or a Dataset with x_train")
    if len(x) <= n:
        return np.asarray(x)
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))
    return np.asarray(x[idx])


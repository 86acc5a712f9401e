"""Elastic depthwise kernels with Once-For-All's kernel transformation (optional).

Without it, a subnet's k x k depthwise kernel is the centre of the block's 7x7 one: the small kernels have no
weights of their own, and what the largest subnet needs from the centre taps decides what the smaller ones get.
OFA (Cai et al., ICLR 2020, "elastic kernel size") adds, per block and per smaller size, a learned k^2 x k^2
matrix shared by the block's channels: the 5x5 kernel is the centre 5x5 of the 7x7 one times its matrix, the
3x3 kernel the centre 3x3 of that 5x5 times its own. The matrices start as the identity (so a supernet given
them computes what it computed before) and are trained with the rest; the extracted model gets the transformed kernel as its plain
k x k weights (the same network as without, other numbers).

Both code paths are here, the in-graph one (`dw_kernel_tf`, every size computed, the subnet's chosen by its
kernel gate) and the numpy one of extraction (`dw_kernel_np`); the tests check they agree through whole models.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

__all__ = ["transform_name", "smaller_kernels", "is_transform", "transform_shapes", "dw_kernel_np", "dw_kernel_tf"]

TRANSFORM = "transform"


def transform_name(block: str, k: int) -> str:
    """Weight name of block `block`'s matrix that makes its k x k kernel (e.g. ``s1_b0_dw/transform_5``)."""
    return f"{block}_dw/{TRANSFORM}_{int(k)}"


def is_transform(name: str) -> bool:
    """Whether a supernet weight name is a kernel-transformation matrix."""
    return name.rsplit("/", 1)[-1].startswith(TRANSFORM + "_")


def smaller_kernels(kernels: Sequence[int]) -> List[int]:
    """The kernel sizes below the largest, largest first (each made from the one before it)."""
    return sorted({int(k) for k in kernels}, reverse=True)[1:]


def _centre(kernel: Any, k: int) -> Any:
    c = (int(kernel.shape[0]) - k) // 2
    return kernel[c:c + k, c:c + k]


def dw_kernel_np(weights: Mapping[str, np.ndarray], block: str, k: int, kernels: Sequence[int]) -> np.ndarray:
    """The k x k depthwise kernel (k, k, C, 1) of one block, from the supernet's weights (numpy).

    Args:
        weights: supernet weights by name (``<block>_dw/kernel`` of shape (k_max, k_max, C, 1) and, when the
            supernet has them, the transformation matrices).
        block: block name, e.g. ``s1_b0``.
        k: the subnet's kernel size.
        kernels: the stage's kernel choices.

    Returns:
        The centre k x k of the big kernel, passed through the matrices of every size from the largest down to k
        when the supernet has them.
    """
    cur = np.asarray(weights[f"{block}_dw/kernel"])
    for size in smaller_kernels(kernels):
        if size < k:
            break
        crop = _centre(cur, size)
        name = transform_name(block, size)
        if name in weights:                # taps x channels; each channel's row of taps times the matrix
            c = crop.shape[2]
            crop = (np.asarray(weights[name]).T @ crop.reshape(size * size, c)).reshape(size, size, c, 1)
        cur = crop
    return _centre(cur, k)


def dw_kernel_tf(tf: Any, variables: Mapping[str, Any], block: str, kernel: Any, kernels: Sequence[int]) -> Any:
    """In-graph k_max x k_max depthwise kernel of one block for the subnet's kernel gate (transformed sizes).

    Args:
        tf: the tensorflow module.
        variables: the supernet's variables by name (with the block's transformation matrices).
        block: block name.
        kernel: int32 scalar tensor, the subnet's kernel size.
        kernels: the stage's kernel choices.

    Returns:
        (k_max, k_max, C, 1): the transformed k x k kernel in the centre, zeros around it (the window mask of the
        caller keeps it that way).
    """
    big = variables[f"{block}_dw/kernel"]
    km = int(big.shape[0])
    c = int(big.shape[2])
    out = big
    cur = big
    for size in smaller_kernels(kernels):
        taps = tf.reshape(_centre(cur, size), (size * size, c))          # taps x channels, as dw_kernel_np
        crop = tf.reshape(tf.matmul(variables[transform_name(block, size)], taps, transpose_a=True),
                          (size, size, c, 1))
        pad = (km - size) // 2
        out = tf.where(tf.equal(kernel, size), tf.pad(crop, [[pad, pad], [pad, pad], [0, 0], [0, 0]]), out)
        cur = crop
    return out


def transform_shapes(spec: Any) -> Dict[str, tuple]:
    """Name -> shape of every transformation matrix of a supernet spec (blocks of stages with elastic kernels)."""
    out: Dict[str, tuple] = {}
    for s in range(spec.n_stages):
        for b in range(spec.depth_max(s)):
            for k in smaller_kernels(spec.kernels[s]):
                out[transform_name(f"s{s + 1}_b{b}", k)] = (k * k, k * k)
    return out

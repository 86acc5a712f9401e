"""Importance sorting of the supernet's channels, as Once-For-All does before a dimension becomes elastic.

A subnet uses the *leading* channels of every elastic dimension, so before subnets narrower than the
largest one are trained, the channels are put in order of importance (the L1 norm of the weights that
read them, largest first): the narrow subnets then start from the channels that matter most. Every
weight touching a permuted channel is permuted with it, together with the optimizer's slots, so the
largest subnet computes exactly what it computed before.

- `sort_channels`: the expanded (middle) channels of every block (OFA's elastic expansion ratio).
- `sort_widths`: the stem's and the stages' output channels (elastic stem and stage widths, which OFA
  does not have). A stride-1 first block whose input width can equal its output width adds its input to
  its output channel by channel (the residual), so the channel spaces it joins share one order; that
  order only moves channels inside the segments between the joined spaces' sizes, so every space keeps
  the same set of leading channels at each of those sizes.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from .gates import SupernetSpec
from .model import SupernetNet

_BN = ("gamma", "beta", "moving_mean", "moving_variance")


def sort_channels(net: SupernetNet, optimizer: Any = None) -> int:
    """Sort every block's expanded channels by importance (L1 norm of the projection weights, largest
    first), permuting every weight that touches them and the optimizer's slots.

    Function-preserving for the largest subnet.

    Args:
        net: the supernet's network.
        optimizer: its optimizer (Adam-style slots are permuted too), or None.

    Returns:
        The number of blocks permuted.
    """
    sp, v = net.spec, net.vars
    n_blocks = 0
    for s in range(sp.n_stages):
        for b in range(sp.depth_max(s)):
            n = f"s{s + 1}_b{b}"
            imp = np.abs(v[f"{n}_project/kernel"].numpy()).sum(axis=(0, 1, 3))
            axes = {f"{n}_expand/kernel": 3, f"{n}_dw/kernel": 2, f"{n}_se_reduce/kernel": 2,
                    f"{n}_se_expand/kernel": 3, f"{n}_se_expand/bias": 0, f"{n}_project/kernel": 2}
            axes.update({f"{n}_{bn}/{k}": 0 for bn in ("expand_bn", "dw_bn") for k in _BN})
            _permute(net, axes, np.argsort(-imp, kind="stable"), optimizer)
            n_blocks += 1
    return n_blocks


def width_groups(spec: SupernetSpec) -> List[List[int]]:
    """The channel spaces that share one channel order: -1 is the stem's output, s >= 0 stage s's output.

    Stage s joins the group of the space before it when its first block has stride 1 and some input width
    equals some output width (that block's residual then adds the two channel by channel).

    Args:
        spec: the supernet's layout.

    Returns:
        Groups of consecutive space indices, in network order.
    """
    groups = [[-1]]
    for s in range(spec.n_stages):
        prev = spec.stem_widths if s == 0 else spec.widths[s - 1]
        if spec.strides[s] == 1 and set(prev) & set(spec.widths[s]):
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def _space(spec: SupernetSpec, s: int) -> Tuple[int, Dict[str, int], Dict[str, int]]:
    """(size, producers, consumers) of channel space s: variable name -> axis indexing its channels."""
    if s < 0:
        return (spec.stem_max, {"stem_conv/kernel": 3, **{f"stem_bn/{k}": 0 for k in _BN}},
                {"s1_b0_expand/kernel": 2})
    prod: Dict[str, int] = {}
    cons: Dict[str, int] = {}
    for b in range(spec.depth_max(s)):
        n = f"s{s + 1}_b{b}"
        prod[f"{n}_project/kernel"] = 3
        prod.update({f"{n}_project_bn/{k}": 0 for k in _BN})
        if b > 0:
            cons[f"{n}_expand/kernel"] = 2
    if s + 1 < spec.n_stages:
        cons[f"s{s + 2}_b0_expand/kernel"] = 2
    else:
        cons["final/kernel"] = 0
    if s < spec.n_points:
        for h in spec.heads:
            if h == "gap_dense":
                cons[f"p{s}_{h}_dense/kernel"] = 0
                if spec.confidence:
                    cons[f"p{s}_{h}_conf/kernel"] = 0
            else:
                cons[f"p{s}_{h}_conv/kernel"] = 2
    return spec.width_max(s), prod, cons


def sort_widths(net: SupernetNet, optimizer: Any = None) -> int:
    """Sort the stem's and every stage's output channels by importance (summed L1 norm of the weights that
    read them: the next blocks' expansions, the exit heads, the final classifier), largest first, one
    order per `width_groups` group, permuting every weight that touches them and the optimizer's slots.

    Function-preserving for the largest subnet, and for every subnet whose stem and stage widths are
    each the largest width of some space of its group.

    Args:
        net: the supernet's network.
        optimizer: its optimizer (Adam-style slots are permuted too), or None.

    Returns:
        The number of channel spaces permuted (stem and stages).
    """
    sp, v = net.spec, net.vars
    n = 0
    for group in width_groups(sp):
        spaces = [_space(sp, s) for s in group]
        size = max(m for m, _, _ in spaces)
        imp = np.zeros(size)
        for m, _, cons in spaces:
            for name, ax in cons.items():
                w = np.abs(v[name].numpy())
                imp[:m] += w.sum(axis=tuple(a for a in range(w.ndim) if a != ax))
        perm = np.arange(size)
        bounds = sorted({0} | {m for m, _, _ in spaces})
        for lo, hi in zip(bounds, bounds[1:]):
            perm[lo:hi] = lo + np.argsort(-imp[lo:hi], kind="stable")
        for m, prod, cons in spaces:
            _permute(net, {**prod, **cons}, perm[:m], optimizer)
            n += 1
    return n


def _permute(net: SupernetNet, axes: Dict[str, int], perm: np.ndarray, optimizer: Any) -> None:
    for name, ax in axes.items():
        var = net.vars[name]
        var.assign(np.take(var.numpy(), perm, axis=ax))
        for slot in _slots(optimizer, var):
            slot.assign(np.take(slot.numpy(), perm, axis=ax))


def _slots(optimizer: Any, var: Any) -> List[Any]:
    """Adam-style per-variable slots (momentums, velocities) of `var`, if the optimizer has them."""
    if optimizer is None or not getattr(optimizer, "built", False):
        return []
    try:
        i = optimizer._get_variable_index(var)
    except (KeyError, AttributeError):
        return []
    return [getattr(optimizer, a)[i] for a in ("_momentums", "_velocities") if hasattr(optimizer, a)]

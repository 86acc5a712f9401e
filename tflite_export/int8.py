"""The device's int8 arithmetic: input quantisation, exit rules on int8 scores, threshold quantisation.

One set of exit rules: the names come from `nachos_tf.policy.RULES` (the float simulation), and this
module gives each rule its int8 form, mirrored line by line by the exported `nachos_decision.cc`:

* max_softmax: exit iff max_i q_i >= T, with T the smallest int8 value whose dequantised
  probability is >= the float threshold (so the int8 decision equals the float decision on
  dequantised values; 128 = never);
* margin: exit iff q_top1 - q_top2 >= T, T the smallest integer difference d with d * scale >= the
  float threshold (0..255; 256 = never);
* entropy: exit iff sum_i p_i log p_i >= threshold (minus the entropy, as in nachos_tf.policy),
  summed in float32 in class order from a 256-entry table of p log p per int8 value;
* confidence (NACHOS): b_k dequantised from a 256-entry table, stay *= (1 - b_k), D_k = 1 - stay
  in float32, exit iff D_k >= threshold.

Float thresholds are rounded up to float32 (the smallest float32 >= t), which keeps "float32 score
>= t" identical. Tables replace logf so that Python and C agree to the bit on every vector.
Pure numpy: no TensorFlow, no TFLM.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from nachos_tf.errors import ExportError
from nachos_tf.policy import RULES

__all__ = ["RULES", "RULE_IDS", "NEVER_MAX_SOFTMAX", "NEVER_MARGIN", "check_rule", "threshold_f32",
           "threshold_int", "score_table", "exit_decision", "exit_params", "quantize_input"]

RULE_IDS: Dict[str, int] = {r: i for i, r in enumerate(RULES)}   # = the C enum nachos::Rule
NEVER_MAX_SOFTMAX = 128      # no int8 value reaches it
NEVER_MARGIN = 256           # no int8 difference reaches it


def check_rule(rule: str) -> str:
    """`rule` itself if it is one of RULES.

    Args:
        rule: an exit rule name.

    Returns:
        The rule name.

    Raises:
        ExportError: the rule is unknown.
    """
    if rule not in RULES:
        raise ExportError(f"unknown exit rule {rule!r}; choose one of {', '.join(RULES)}")
    return rule


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float -> int8 exactly as the C helper does: floor(x / scale + 0.5) + zp in float32, clamped.

    Args:
        x: raw float inputs (as the Keras model takes them).
        scale: the input tensor's scale.
        zero_point: the input tensor's zero point.

    Returns:
        An int8 array of the same shape.
    """
    x = np.asarray(x, dtype=np.float32)
    q = np.floor(x / np.float32(scale) + np.float32(0.5)).astype(np.int64) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def threshold_f32(t: float) -> float:
    """The smallest float32 >= t (inf stays inf): for float32 scores s, s >= t iff s >= threshold_f32(t).

    Args:
        t: a float threshold.

    Returns:
        The float32 threshold, as a Python float.

    Raises:
        ExportError: t is NaN.
    """
    t = float(t)
    if math.isnan(t):
        raise ExportError("a threshold is NaN")
    if math.isinf(t):
        return t
    f = np.float32(t)
    if float(f) < t:
        f = np.nextafter(f, np.float32(np.inf))
    return float(f)


def threshold_int(rule: str, t: float, scale: float, zero_point: int) -> Optional[int]:
    """Integer threshold on int8 probabilities for max_softmax and margin (None for the other rules).

    Chosen by exhausting the 256 (or 256 differences) possible values, so `q >= T` is exactly
    `dequantised(q) >= t` with dequantised = (q - zero_point) * scale in double precision.

    Args:
        rule: the exit rule.
        t: the float threshold.
        scale: scale of the exit's int8 probabilities.
        zero_point: their zero point.

    Returns:
        The integer threshold (NEVER_MAX_SOFTMAX / NEVER_MARGIN if no value reaches t), or None.

    Raises:
        ExportError: unknown rule or NaN threshold.
    """
    check_rule(rule)
    t = float(t)
    if math.isnan(t):
        raise ExportError("a threshold is NaN")
    scale = float(np.float32(scale))
    if rule == "max_softmax":
        for q in range(-128, 128):
            if (q - int(zero_point)) * scale >= t:
                return q
        return NEVER_MAX_SOFTMAX
    if rule == "margin":
        for d in range(0, 256):
            if d * scale >= t:
                return d
        return NEVER_MARGIN
    return None


def score_table(rule: str, scale: float, zero_point: int) -> Optional[np.ndarray]:
    """256-entry float32 table indexed by q + 128: p log p (entropy) or dequantised b (confidence).

    Args:
        rule: the exit rule.
        scale: scale of the int8 values the table is indexed by.
        zero_point: their zero point.

    Returns:
        The table, or None for rules that need none (max_softmax, margin).

    Raises:
        ExportError: unknown rule.
    """
    check_rule(rule)
    q = np.arange(-128, 128, dtype=np.float64)
    p = (q - int(zero_point)) * float(np.float32(scale))
    if rule == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return v.astype(np.float32)
    if rule == "confidence":
        return p.astype(np.float32)
    return None


def exit_decision(rule: str, probs_q: np.ndarray, conf_q: Optional[int], t_int: Optional[int],
                  t_f32: float, table: Optional[np.ndarray], stay: np.float32) -> Tuple[bool, np.float32]:
    """One exit's decision on its int8 outputs, exactly as nachos_decision.cc computes it.

    Args:
        rule: the exit rule.
        probs_q: the exit's int8 probabilities.
        conf_q: its int8 confidence (rule "confidence" only).
        t_int: integer threshold (max_softmax, margin).
        t_f32: float32 threshold (entropy, confidence).
        table: the rule's score table (entropy, confidence).
        stay: the running float32 product prod(1 - b_j) of the confidence rule (1 at stage 0).

    Returns:
        (exit here?, updated stay).

    Raises:
        ExportError: unknown rule.
    """
    q = np.asarray(probs_q).reshape(-1).astype(np.int32)
    if rule == "max_softmax":
        return bool(int(q.max()) >= t_int), stay
    if rule == "margin":
        top1 = -129
        top2 = -129
        for v in q.tolist():          # same scan as the C code (ties: top2 == top1)
            if v > top1:
                top2, top1 = top1, v
            elif v > top2:
                top2 = v
        return bool(top1 - top2 >= t_int), stay
    if rule == "entropy":
        s = np.float32(0.0)
        for v in q.tolist():
            s = np.float32(s + table[v + 128])
        return bool(s >= np.float32(t_f32)), stay
    if rule == "confidence":
        b = table[int(conf_q) + 128]
        stay = np.float32(stay * np.float32(np.float32(1.0) - b))
        d = np.float32(np.float32(1.0) - stay)
        return bool(d >= np.float32(t_f32)), stay
    raise ExportError(f"unknown exit rule {rule!r}")


def exit_params(rule: str, threshold: float, probs_quant: Sequence, conf_quant: Optional[Sequence]) -> dict:
    """Device parameters of one early exit: integer threshold, float32 threshold and score table.

    Args:
        rule: the exit rule.
        threshold: the float threshold.
        probs_quant: (scale, zero_point) of the exit's int8 probabilities.
        conf_quant: (scale, zero_point) of its int8 confidence, or None.

    Returns:
        {"t_int", "t_f32", "table"}.

    Raises:
        ExportError: unknown rule, NaN threshold, or rule "confidence" without a confidence output.
    """
    check_rule(rule)
    s, z = float(probs_quant[0]), int(probs_quant[1])
    if rule == "confidence":
        if conf_quant is None:
            raise ExportError("rule 'confidence' needs a confidence output at every early exit")
        table = score_table(rule, conf_quant[0], conf_quant[1])
    else:
        table = score_table(rule, s, z)
    return {"t_int": threshold_int(rule, threshold, s, z), "t_f32": threshold_f32(threshold), "table": table}

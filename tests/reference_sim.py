"""Independent per-sample reference simulation of early exiting (plain Python loops, no numpy tricks).

Written separately from ``nachos_tf.policy`` so tests can check the vectorised simulation against
it; reusable on real per-exit outputs (Keras, TFLite, TFLM): pass lists of per-exit probability
rows and, for the ``confidence`` rule, per-early-exit sigmoid confidences.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence


def reference_score(row: Sequence[float], rule: str, conf_so_far: Optional[Sequence[float]] = None) -> float:
    """Score of one sample at one early exit. ``conf_so_far``: confidences b_0..b_k (confidence rule)."""
    row = [float(v) for v in row]
    if rule == "max_softmax":
        return max(row)
    if rule == "margin":
        s = sorted(row, reverse=True)
        return s[0] - s[1]
    if rule == "entropy":
        return sum(p * math.log(p) for p in row if p > 0)
    if rule == "confidence":  # D_k = sum_i b_i prod_{j<i}(1 - b_j) = 1 - prod_{j<=k}(1 - b_j)
        total, keep_going = 0.0, 1.0
        for b in conf_so_far:
            total += float(b) * keep_going
            keep_going *= 1.0 - float(b)
        return total
    raise ValueError(rule)


def _argmax(row: Sequence[float]) -> int:
    best = 0
    for c in range(1, len(row)):
        if row[c] > row[best]:
            best = c
    return best


def reference_simulate(probs, labels, thresholds, exit_macs, rule: str = "max_softmax",
                       confidences=None) -> Dict[str, object]:
    """Loop over samples and exits: leave at the first early exit with score >= threshold.

    Returns exit_index, correct (lists), exit_counts, exit_rates, accuracy, expected_macs.
    """
    n_exits = len(probs)
    n = len(labels)
    exit_index: List[int] = []
    correct: List[bool] = []
    for i in range(n):
        chosen = n_exits - 1
        for k in range(n_exits - 1):
            conf = [confidences[j][i] for j in range(k + 1)] if rule == "confidence" else None
            if reference_score(probs[k][i], rule, conf) >= thresholds[k]:
                chosen = k
                break
        exit_index.append(chosen)
        correct.append(_argmax(probs[chosen][i]) == int(labels[i]))
    counts = [exit_index.count(k) for k in range(n_exits)]
    return {
        "exit_index": exit_index,
        "correct": correct,
        "exit_counts": counts,
        "exit_rates": [c / n for c in counts],
        "accuracy": sum(correct) / n,
        "expected_macs": sum(c * float(m) for c, m in zip(counts, exit_macs)) / n,
    }

"""Exit rules: the confidence score of each rule, and thresholds as strict JSON.

Every score is "higher = more confident", so a sample exits at the first early exit whose score is
``>=`` its threshold.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .checks import bad_arg, check_confidences, check_probs

__all__ = ["RULES", "check_rule", "softmax", "score_matrix", "exit_scores", "score_range",
           "thresholds_to_json", "thresholds_from_json", "exported_stages"]

#: Exit rules. Every score is "higher = more confident", so a sample exits when score >= threshold.
RULES: Tuple[str, ...] = ("max_softmax", "margin", "entropy", "confidence")


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise bad_arg(f"unknown exit rule {rule!r}; choose one of {', '.join(RULES)}")
    return rule


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax, for callers holding logits rather than probabilities.

    Args:
        logits: array of logits.
        axis: the class axis.

    Returns:
        float64 probabilities of the same shape, summing to 1 along ``axis``.
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _score(p: np.ndarray, rule: str) -> np.ndarray:
    if rule == "max_softmax":
        return p.max(axis=1)
    if rule == "margin":
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if rule == "entropy":  # minus the entropy, so that >= still means "confident"
        return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    raise AssertionError(rule)


def score_matrix(probs: List[np.ndarray], rule: str, confidences) -> np.ndarray:
    n_early, n = len(probs) - 1, probs[0].shape[0]
    if rule == "confidence":
        b = check_confidences(confidences, n_early, n)
        if n_early == 0:
            return np.zeros((0, n))
        # NACHOS cumulative confidence D_k = 1 - prod_{j<=k}(1 - b_j), computed as in the NACHOS
        # code, D_k = sum_{i<=k} b_i prod_{j<i}(1 - b_j), so that D_0 == b_0 exactly
        b = np.stack(b)
        stay = np.cumprod(1.0 - b, axis=0)
        terms = b.copy()
        terms[1:] *= stay[:-1]
        return np.cumsum(terms, axis=0)
    return np.stack([_score(p, rule) for p in probs[:-1]]) if n_early else np.zeros((0, n))


def exit_scores(probs: Sequence[np.ndarray], rule: str = "max_softmax",
                confidences: Optional[Sequence[np.ndarray]] = None) -> List[np.ndarray]:
    """One (N,) confidence score per early exit (the final exit needs none); higher = more confident.

    Rules: ``max_softmax`` top-1 probability; ``margin`` top-1 minus top-2 probability (EDANAS);
    ``entropy`` minus the Shannon entropy (nats), in [-log C, 0]; ``confidence`` the NACHOS cumulative
    confidence ``D_k = 1 - prod_{j<=k}(1 - b_j)`` of the learned per-exit confidences ``b_j``.

    Args:
        probs: (N, classes) softmax arrays, one per exit, final last (or a stacked array).
        rule: one of :data:`RULES`.
        confidences: for rule ``confidence``, one (N,) sigmoid array per early exit.

    Returns:
        One (N,) float64 score array per early exit.

    Raises:
        DataError: malformed probabilities or confidences.
        ConstraintError: unknown rule.
    """
    p = check_probs(probs)
    return list(score_matrix(p, check_rule(rule), confidences))


def score_range(rule: str, num_classes: int) -> Tuple[float, float]:
    """Range of a rule's scores; the grid method maps [0, 1] onto it."""
    if rule == "entropy":
        return -math.log(num_classes), 0.0
    return 0.0, 1.0


def thresholds_to_json(thresholds: Sequence[float]) -> List[Any]:
    """Thresholds as strict-JSON values: floats, with +-inf written as "inf" / "-inf".

    Args:
        thresholds: one threshold per early exit.

    Returns:
        A list of floats and the strings "inf" / "-inf".
    """
    return ["inf" if t == np.inf else "-inf" if t == -np.inf else float(t) for t in thresholds]


def thresholds_from_json(values: Sequence[Any]) -> np.ndarray:
    """Inverse of ``thresholds_to_json``; ValueError (one line, the offending value) unless ``values`` is a list
    of numbers or the strings "inf" / "-inf".

    Args:
        values: what :func:`thresholds_to_json` wrote.

    Returns:
        float64 thresholds (with +-inf).

    Raises:
        ValueError: ``values`` is not a list of numbers (no NaN, no bool) or "inf" / "-inf".
    """
    ok = isinstance(values, (list, tuple)) and all(
        (isinstance(v, (int, float)) and not isinstance(v, bool) and not np.isnan(v)) or v in ("inf", "-inf")
        for v in values)
    if not ok:
        shown = repr(values) if len(repr(values)) <= 60 else repr(values)[:57] + "..."
        raise ValueError(f"thresholds must be a list of numbers or \"inf\" / \"-inf\", got {shown}")
    return np.array([float(v) for v in values], dtype=np.float64)


def exported_stages(thresholds: Sequence[Any]) -> int:
    """How many stages a staged export of an EENN keeps at these thresholds: an early exit whose threshold is
    -inf takes every image that reaches it, so the stages after it never run and are not exported.

    Args:
        thresholds: one threshold per early exit (floats, or what :func:`thresholds_to_json` wrote).

    Returns:
        The index of the first early exit with threshold -inf, plus one; else the number of exits
        (``len(thresholds) + 1``).

    Raises:
        ValueError: ``thresholds`` is not a list of numbers or "inf" / "-inf".
    """
    t = thresholds_from_json(list(thresholds))
    cut = np.flatnonzero(t == -np.inf)
    return int(cut[0]) + 1 if len(cut) else len(t) + 1

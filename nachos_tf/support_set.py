"""Support-set calibration (NACHOS): the S matrix of early-exit accuracy per class, measured every epoch
on a class-balanced set of training samples held out of that epoch's batches.

``epoch_schedule`` draws each epoch's shuffled training indices and, if asked, its support indices;
``SupportSetCalibration`` (a Keras callback) fills ``CalibrationState.S`` at the start of every epoch after
the warm-up and switches the calibration term of the loss on (``nachos_tf.losses.calibration_term``).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import keras

from .predict import predict_exits

__all__ = ["CalibrationState", "SupportSetCalibration", "support_accuracy", "balanced_support_indices",
           "epoch_schedule"]


class CalibrationState:
    """Support-set accuracies S and the 0/1 switch the loss reads; plain object so Keras does not track it.

    Args:
        num_classes: rows of S.
        num_early: early exits (columns of S; at least one column is kept so the variable has a shape).
    """

    def __init__(self, num_classes: int, num_early: int):
        self.S = tf.Variable(tf.zeros((num_classes, max(num_early, 1))), trainable=False, name="support_accuracy")
        self.on = tf.Variable(0.0, trainable=False, name="calibration_on")


class SupportSetCalibration(keras.callbacks.Callback):
    """At the start of every epoch, S[c, i] = accuracy of early exit i on that epoch's held-out support
    samples of class c (they are left out of the epoch's training batches); switched on after the warm-up.

    Args:
        eenn: the functional EENN being trained (its last output group is the final exit).
        x: every training sample, one tensor (indexed by ``support``).
        y: their labels.
        support: (epochs, n_support) indices of each epoch's support set (`epoch_schedule`).
        state: the `CalibrationState` the loss reads.
        num_classes: number of classes.
        warmup: epochs with the calibration term off (S not measured).
        batch_size: batch size of the support-set prediction.
    """

    def __init__(self, eenn: keras.Model, x: tf.Tensor, y: np.ndarray, support: np.ndarray,
                 state: CalibrationState, num_classes: int, warmup: int, batch_size: int):
        super().__init__()
        self.eenn, self.x, self.y, self.support = eenn, x, y, support
        self.state, self.num_classes, self.warmup, self.batch_size = state, num_classes, warmup, batch_size
        self.history: List[np.ndarray] = []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch < self.warmup:
            self.state.on.assign(0.0)
            return
        idx = self.support[epoch]
        probs, _ = predict_exits(self.eenn, tf.gather(self.x, idx), self.batch_size)
        y = self.y[idx]
        S = support_accuracy(probs[:-1], y, self.num_classes)
        self.state.S.assign(S if S.size else np.zeros(self.state.S.shape, np.float32))
        self.state.on.assign(1.0)
        self.history.append(S)


def support_accuracy(early_probs: Sequence[np.ndarray], y: np.ndarray, num_classes: int) -> np.ndarray:
    """S[c, i]: accuracy of early exit i on the samples of class c (0 for a class with no sample).

    Args:
        early_probs: one (n, num_classes) probability array per early exit.
        y: the n labels, in 0..num_classes-1.
        num_classes: number of classes.

    Returns:
        float32 array (num_classes, len(early_probs)).
    """
    y = np.asarray(y).reshape(-1)
    S = np.zeros((num_classes, len(early_probs)), np.float32)
    counts = np.bincount(y, minlength=num_classes)
    for i, pr in enumerate(early_probs):
        correct = (np.argmax(pr, axis=-1) == y).astype(np.float64)
        hits = np.bincount(y, weights=correct, minlength=num_classes)
        S[:, i] = np.where(counts > 0, hits / np.maximum(counts, 1), 0.0)
    return S


def balanced_support_indices(y: np.ndarray, fraction: float, num_classes: int,
                             rng: np.random.Generator) -> np.ndarray:
    """A class-balanced sample of about ``fraction`` of the indices: the same count from every class.

    A class keeps at least one sample for training (classes with fewer than 2 samples give none).

    Args:
        y: labels of the candidate samples.
        fraction: share of all samples to hold out (split evenly over the classes).
        num_classes: number of classes.
        rng: the random generator (the draw is seeded through it).

    Returns:
        Sorted int64 indices into ``y``.
    """
    y = np.asarray(y).reshape(-1)
    per_class = max(1, int(round(fraction * len(y))) // num_classes)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        if len(members) < 2:
            continue
        chosen.append(rng.choice(members, size=min(per_class, len(members) - 1), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def epoch_schedule(n: int, epochs: int, rng: np.random.Generator, y: Optional[np.ndarray] = None,
                   support_fraction: Optional[float] = None, num_classes: int = 0
                   ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Per-epoch shuffled training indices and, if asked, the held-out support indices of each epoch.

    Args:
        n: number of training samples.
        epochs: number of epochs (E).
        rng: the random generator.
        y: labels (needed with ``support_fraction``).
        support_fraction: share held out per epoch as the support set (`balanced_support_indices`); None: none.
        num_classes: number of classes (with ``support_fraction``).

    Returns:
        (orders, supports): int32 (E, n_train) training indices, and int32 (E, n_support) support indices or
        None; an epoch's support indices are absent from its training indices.
    """
    if support_fraction is None:
        return np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int32), None
    orders, supports = [], []
    for _ in range(epochs):
        sup = balanced_support_indices(y, support_fraction, num_classes, rng)
        keep = np.ones(n, bool)
        keep[sup] = False
        orders.append(rng.permutation(np.flatnonzero(keep)))
        supports.append(sup)
    return np.stack(orders).astype(np.int32), np.stack(supports).astype(np.int32)

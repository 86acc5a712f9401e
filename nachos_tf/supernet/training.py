"""Training the supernet with Keras `fit`: largest-first warm-up, then the sandwich rule with in-place
distillation.

Phase "largest" (warm-up epochs): only the largest subnet (max resolution), cross-entropy on the labels
at the final classifier and every exit-head variant, plus the class-balanced BCE of the confidences.
Then the expanded channels of every block are sorted by importance (`sorting.py`: L1 norm of the projection
weights, as OFA does; function-preserving for the largest subnet). Phase "sandwich": every step
trains the largest (labels), the smallest (min resolution) and `n_random` random subnets (one random
resolution per step), the others distilled from the largest at every exit (KL on temperature-softened
logits, same head variant). With `loss=LossConfig(kind="nachos")` every subnet also gets the NACHOS
loss on a random exit configuration (exit probabilities from the confidences; the MAC term is not used).

One traced step serves every subnet: subnet codes come from the data pipeline as tensors, the random
subnets' resolution is part of their code (spatial sizes are dynamic in the graph). Only the
largest subnet updates the BN moving statistics (the others normalise with batch statistics; every
extracted subnet re-estimates its own). Codes and batch order come from
`numpy.random.default_rng([seed, epoch])`, so a restart from an epoch checkpoint repeats exactly what
an uninterrupted run does.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..losses import distillation_kl
from .gates import SupernetSpec
from .model import SupernetNet

_EPS = 1e-7


class TwoPhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Constant LR (linear ramp over the first `ramp` steps) for `warm_steps`, then cosine to `alpha*lr`."""

    def __init__(self, lr: float, warm_steps: int, total_steps: int, alpha: float = 0.02, ramp: int = 200):
        self.lr, self.warm, self.total, self.alpha, self.ramp = float(lr), int(warm_steps), int(total_steps), \
            float(alpha), int(ramp)

    def __call__(self, step):
        t = tf.cast(step, tf.float32)
        ramp = tf.minimum(1.0, (t + 1.0) / float(max(1, self.ramp)))
        frac = tf.clip_by_value((t - self.warm) / float(max(1, self.total - self.warm)), 0.0, 1.0)
        cos = self.alpha + (1.0 - self.alpha) * 0.5 * (1.0 + tf.cos(math.pi * frac))
        return self.lr * tf.where(t < self.warm, ramp, cos)

    def get_config(self) -> Dict[str, Any]:
        return {"lr": self.lr, "warm_steps": self.warm, "total_steps": self.total, "alpha": self.alpha,
                "ramp": self.ramp}


def _balanced_bce(b, target):
    """Class-balanced BCE (as `nachos_tf.losses.balanced_bce`) over axis 0, vectorised over the rest."""
    b = tf.clip_by_value(b, _EPS, 1.0 - _EPS)
    t = tf.stop_gradient(target)
    bce = -(t * tf.math.log(b) + (1.0 - t) * tf.math.log(1.0 - b))
    w = t / tf.maximum(tf.reduce_sum(t, 0), 1.0) + (1.0 - t) / tf.maximum(tf.reduce_sum(1.0 - t, 0), 1.0)
    return tf.reduce_sum(w * bce, 0) / tf.maximum(tf.reduce_sum(w, 0), _EPS)


class SupernetTrainer(keras.Model):
    """Keras trainer of a `SupernetNet`; `phase` "largest" or "sandwich" (fixed per instance)."""

    def __init__(self, net: SupernetNet, phase: str, n_random: int = 2, kd_temperature: float = 1.0,
                 head_weight: float = 1.0, conf_weight: float = 0.5, loss: Any = None,
                 elastic: Optional[Sequence[str]] = None):
        super().__init__(name=f"supernet_trainer_{phase}")
        self.net = net
        sp: SupernetSpec = net.spec
        object.__setattr__(self, "spec", sp)
        self.phase, self.n_random, self.T = phase, int(n_random), float(kd_temperature)
        self.head_weight, self.conf_weight = float(head_weight), float(conf_weight)
        object.__setattr__(self, "nachos", loss if (loss is not None and loss.kind == "nachos") else None)
        self._largest = sp.extreme_code(True)
        self._smallest = sp.extreme_code(False)
        if elastic is not None:  # progressive shrinking: the smallest subnet of the elastic genes only
            self._smallest = sp.restrict(self._smallest, elastic)
        self._n_exit_genes = 2 * sp.n_points
        names = ["loss", "acc_largest"] + (["acc_smallest", "acc_random"] if phase == "sandwich" else [])
        self._trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.traces = 0  # how many times train_step was traced (tests check it stays 1)
        self.built = True

    @property
    def metrics(self):
        return list(self._trackers.values())

    # ------------------------------------------------------------------ losses
    def _label_loss(self, o, y):
        y = tf.cast(y, tf.int32)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=o["final"]))
        if o["logits"] is not None:
            yy = tf.broadcast_to(y[:, None, None], tf.shape(o["logits"])[:3])
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yy, logits=o["logits"])  # (N, P, V)
            loss += self.head_weight * tf.reduce_sum(tf.reduce_mean(ce, axis=[0, 2]))
        return loss

    def _kd_loss(self, o, t):
        def kl(s_logits, t_logits):
            return distillation_kl(s_logits, t_logits, self.T)

        loss = tf.reduce_mean(kl(o["final"], t["final"]))
        if o["logits"] is not None:
            loss += self.head_weight * tf.reduce_sum(tf.reduce_mean(kl(o["logits"], t["logits"]), axis=[0, 2]))
        return loss

    def _conf_loss(self, o, y):
        if o["conf"] is None or self.conf_weight == 0:
            return 0.0
        y = tf.cast(y, tf.int64)
        correct = tf.cast(tf.equal(tf.argmax(o["logits"], axis=-1), y[:, None, None]), tf.float32)
        return self.conf_weight * tf.reduce_sum(tf.reduce_mean(_balanced_bce(o["conf"], correct), axis=-1))

    def _nachos_loss(self, o, y):
        """NACHOS classification + confidence-prior terms on the subnet's sampled exit configuration."""
        from ..losses import classification_term, exit_probabilities

        if self.nachos is None or o["logits"] is None:
            return 0.0
        g = o["gates"]
        onehot = tf.one_hot(g["exit_variant"], len(self.spec.variants))  # (P, V)
        logits = tf.einsum("npvc,pv->npc", o["logits"], onehot)
        if o["conf"] is not None:
            b = tf.einsum("npv,pv->np", o["conf"], onehot)
        else:
            b = tf.reduce_max(tf.nn.softmax(logits), axis=-1)
        b = b * g["exit_on"][None, :]
        p = exit_probabilities([b[:, i] for i in range(self.spec.n_points)])
        cls = classification_term([logits[:, i] for i in range(self.spec.n_points)] + [o["final"]], y, p)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64)[:, None]), tf.float32)
        prior = tf.reduce_sum(_balanced_bce(b, correct) * g["exit_on"])
        return self.nachos.w_cls * cls + self.nachos.w_conf * prior

    def _acc(self, logits, y):
        return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64)), tf.float32))

    # ------------------------------------------------------------------ steps
    def _code(self, base: np.ndarray, codes):
        """A fixed code with the exit configuration of the step's first random code (NACHOS option)."""
        n = self.spec.code_length - self._n_exit_genes - 1
        return tf.concat([tf.constant(base[:n]), tf.cast(codes[0, n:-1], tf.int32), tf.constant(base[-1:])], 0)

    def _step_losses(self, x, y, codes, mode: str):
        """Loss of one step: largest on the labels, then (sandwich) smallest and random ones distilled.

        `mode` is the BN mode of the largest subnet ("train" updates the moving statistics; the other
        subnets always normalise with batch statistics and leave the moving statistics alone).
        """
        t = self.net.forward(x, self._code(self._largest, codes), mode)
        total = self._label_loss(t, y) + self._conf_loss(t, y) + self._nachos_loss(t, y)
        accs = {"acc_largest": self._acc(t["final"], y)}
        if self.phase != "sandwich":
            return total, accs
        teacher = {"final": tf.stop_gradient(t["final"]),
                   "logits": None if t["logits"] is None else tf.stop_gradient(t["logits"])}

        def student(o):
            return self._kd_loss(o, teacher) + self._conf_loss(o, y) + self._nachos_loss(o, y)

        s = self.net.forward(x, self._code(self._smallest, codes), "batch")
        total += student(s)
        accs["acc_smallest"] = self._acc(s["final"], y)
        acc = 0.0
        for j in range(self.n_random):
            o = self.net.forward(x, codes[j], "batch")
            total += student(o)
            acc += self._acc(o["final"], y) / self.n_random
        accs["acc_random"] = tf.convert_to_tensor(acc, tf.float32)
        return total, accs

    def train_step(self, data):
        self.traces += 1
        inp, y = data
        with tf.GradientTape() as tape:
            total, accs = self._step_losses(inp["x"], y, inp["codes"], "train")
        w = self.net.trainable_variables
        grads = tape.gradient(total, w)
        self.optimizer.apply_gradients(zip(grads, w))
        return self._update(total, accs)

    def test_step(self, data):
        inp, y = data
        total, accs = self._step_losses(inp["x"], y, inp["codes"], "batch")
        return self._update(total, accs)

    def _update(self, total, accs):
        self._trackers["loss"].update_state(total)
        for k, v in accs.items():
            if k in self._trackers:
                self._trackers[k].update_state(v)
        return {m.name: m.result() for m in self.metrics}


# ---------------------------------------------------------------------- data pipeline
def epoch_plan(spec: SupernetSpec, n: int, epoch: int, seed: int, batch_size: int, n_random: int,
               elastic: Optional[Sequence[str]] = None):
    """(batch indices (steps, batch), subnet codes (steps, k, L)) of one epoch; seeded by (seed, epoch)
    alone, so resuming at any epoch repeats the same plan. With `elastic` (gene groups), the random codes
    keep only those genes random and the others at the largest subnet's values."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    steps = n // batch_size
    order = rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)
    k = max(1, n_random)
    draw = spec.random_code if elastic is None else (lambda r: spec.restrict(spec.random_code(r), elastic))
    codes = np.stack([np.stack([draw(rng) for _ in range(k)]) for _ in range(steps)]).astype(np.int32)
    return order, codes


def make_dataset(x: tf.Tensor, y: tf.Tensor, plans: List, augment: Optional[str] = None,
                 seed: int = 0) -> tf.data.Dataset:
    """Batches gathered from the in-memory tensors following the epoch plans."""
    order = np.concatenate([p[0] for p in plans])
    codes = np.concatenate([p[1] for p in plans])
    ds = tf.data.Dataset.from_tensor_slices((order, codes)).enumerate()

    def gather(step, t):
        idx, c = t
        xb = tf.gather(x, idx)
        if augment == "shift":
            xb = _shift(xb, seed, step)
        return {"x": xb, "codes": c}, tf.gather(y, idx)

    return ds.map(gather).prefetch(2)


def _shift(x, seed: int, step):
    """Random translation by up to 10 % (stateless, seeded by (seed, step)), zero fill."""
    h, w = int(x.shape[1]), int(x.shape[2])
    dh, dw = max(1, round(0.1 * h)), max(1, round(0.1 * w))
    s = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    off = tf.random.stateless_uniform([tf.shape(x)[0], 2], seed=s)
    oy = tf.cast(tf.floor(off[:, 0] * (2 * dh + 1)), tf.int32)
    ox = tf.cast(tf.floor(off[:, 1] * (2 * dw + 1)), tf.int32)
    xp = tf.pad(x, [[0, 0], [dh, dh], [dw, dw], [0, 0]])
    x = tf.gather(xp, oy[:, None] + tf.range(h)[None, :], axis=1, batch_dims=1)
    return tf.gather(x, ox[:, None] + tf.range(w)[None, :], axis=2, batch_dims=1)

"""Multi-exit losses: the NACHOS loss with its two regularisers, and the plain CE-sum baseline.

Notation (one sample n, exits i = 0..K-1 in depth order, the final exit last):

* ``b_i``  sigmoid confidence of early exit i (the model's ``exit_i_conf`` output); the final exit has b = 1;
* ``p_i = b_i * prod_{j<i} (1 - b_j)``  the probability of leaving the network at exit i (sums to 1);
* ``C_i``  the staged MAC cost of exit i (``nachos_tf.macs.profile_macs(model).exit_macs``);
* ``CE_i`` the cross-entropy of exit i's logits.

The NACHOS loss is ``w_cls * L_cls + w_conf * L_conf + w_mac * R_mac + w_cal * R_cal`` with

* ``L_cls = mean_n sum_i p_{n,i} CE_{n,i}`` (gradients reach both the classifiers and the confidences);
* ``L_conf`` = sum over early exits of a class-balanced binary cross-entropy between b_i and the
  0/1 target "exit i predicts the label" (positives and negatives weigh half each, per batch);
* ``R_mac = max(0, mean_n sum_i p_{n,i} C_i - M_max) / |C_final - M_max|``, active only when the full
  network costs more than the budget M_max;
* ``R_cal = mean_{n,i} (b_{n,i} - S[y_n, i])^2`` where S[c, i] is the accuracy of early exit i on the
  support samples of class c (computed once per epoch by ``nachos_tf.train``; 0 until then).

Where this follows the issue rather than the NACHOS paper / the authors' code:

* the authors' code computes R_mac as a detached number (``.item()``-style), so it adds a constant to
  the loss and cannot move the confidences. Here it is a differentiable function of the b's; the
  paper-code behaviour is kept behind ``LossConfig(mac_term_detached=True)`` for an ablation;
* C_i is the staged cost including the heads of exits 0..i-1 (see DESIGN.md), not backbone + own head;
* the confidence prior is balanced within each batch (no running class frequencies).

Models without confidence outputs (a space without the binary branch): b_i is taken as the
**max-softmax** of exit i's logits (the confidence the ``max_softmax`` exit rule thresholds), so
every NACHOS term keeps its meaning and its gradient; ``LossConfig(no_confidence="ce_sum")`` falls
back to the CE-sum baseline instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from .errors import ConstraintError

__all__ = ["LossConfig", "eenn_loss", "exit_probabilities", "classification_term", "confidence_prior_term",
           "balanced_bce", "mac_term", "expected_macs", "calibration_term", "ce_sum_term",
           "per_exit_cross_entropy", "max_softmax_confidences", "exit_correct", "stack_confidences",
           "distillation_kl"]

_EPS = 1e-7
KINDS = ("nachos", "ce_sum")
TERMS = ("cls", "conf", "mac", "cal")


@dataclass(frozen=True)
class LossConfig:
    """Which multi-exit loss to train with, and its weights.

    Attributes:
        kind: ``"nachos"`` (classification weighted by exit probabilities + confidence prior + regularisers)
            or ``"ce_sum"`` (SDN/BranchyNet baseline: sum_i exit_weights[i] * CE_i).
        mac_budget: M_max in MACs (same unit as the profiler's exit_macs); needed when ``use_mac_term``.
        use_mac_term: Whether the NACHOS loss includes the MAC budget term R_mac.
        use_calibration: Whether the NACHOS loss includes the support-set calibration term R_cal.
        mac_term_detached: Stop R_mac's gradient (the NACHOS authors' code), for an ablation.
        w_cls: Weight of the classification term L_cls.
        w_conf: Weight of the confidence prior term L_conf.
        w_mac: Weight of the MAC term R_mac.
        w_cal: Weight of the calibration term R_cal.
        exit_weights: Per-exit weights of the ``"ce_sum"`` loss (``None``: all 1).
        calibration_warmup: Head-phase epochs before the support-set term switches on.
        support_fraction: Share of the training set held out each epoch as the class-balanced support set.
        no_confidence: What b is for a model without confidence outputs: ``"max_softmax"`` or ``"ce_sum"``.
        name: A label of the configuration (ignored when comparing configurations).

    Raises:
        ConstraintError: A field is out of range (unknown kind, negative weight, MAC term without a
            positive mac_budget, support_fraction outside (0, 1), negative warm-up, unknown no_confidence).
    """

    kind: str = "nachos"
    mac_budget: Optional[float] = None
    use_mac_term: bool = True
    use_calibration: bool = True
    mac_term_detached: bool = False
    w_cls: float = 1.0
    w_conf: float = 1.0
    w_mac: float = 1.0
    w_cal: float = 1.0
    exit_weights: Optional[Tuple[float, ...]] = None
    calibration_warmup: int = 1
    support_fraction: float = 0.1
    no_confidence: str = "max_softmax"
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConstraintError(f"LossConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for w in ("w_cls", "w_conf", "w_mac", "w_cal"):
            if not getattr(self, w) >= 0:
                raise ConstraintError(f"LossConfig.{w} must be >= 0, got {getattr(self, w)!r}")
        if self.exit_weights is not None:
            object.__setattr__(self, "exit_weights", tuple(float(w) for w in self.exit_weights))
            if any(not w >= 0 for w in self.exit_weights):
                raise ConstraintError(f"LossConfig.exit_weights must be >= 0, got {self.exit_weights}")
        if self.kind == "nachos" and self.use_mac_term:
            if self.mac_budget is None or not self.mac_budget > 0:
                raise ConstraintError(
                    "the NACHOS MAC term needs mac_budget > 0 (M_max, in MACs); "
                    "use LossConfig.nachos_nc() or use_mac_term=False for no budget")
        if not 0.0 < self.support_fraction < 1.0:
            raise ConstraintError(f"support_fraction must be in (0, 1), got {self.support_fraction}")
        if self.calibration_warmup < 0:
            raise ConstraintError("calibration_warmup must be >= 0")
        if self.no_confidence not in ("max_softmax", "ce_sum"):
            raise ConstraintError("no_confidence must be 'max_softmax' or 'ce_sum'")

    # ----- presets -------------------------------------------------------------------------
    @classmethod
    def nachos(cls, mac_budget: float, **kw: Any) -> "LossConfig":
        """Full NACHOS loss: MAC budget term and support-set calibration.

        Args:
            mac_budget: M_max in MACs (> 0).
            **kw: Other `LossConfig` fields, overriding the preset.

        Returns:
            The configuration.

        Raises:
            ConstraintError: A field is out of range.
        """
        return cls(**{"kind": "nachos", "mac_budget": mac_budget, "use_mac_term": True,
                      "use_calibration": True, "name": "nachos", **kw})

    @classmethod
    def nachos_np(cls, mac_budget: float, **kw: Any) -> "LossConfig":
        """Ablation NACHOS_NP: no support-set calibration term.

        Args:
            mac_budget: M_max in MACs (> 0).
            **kw: Other `LossConfig` fields, overriding the preset.

        Returns:
            The configuration.

        Raises:
            ConstraintError: A field is out of range.
        """
        return cls(**{"kind": "nachos", "mac_budget": mac_budget, "use_mac_term": True,
                      "use_calibration": False, "name": "nachos_np", **kw})

    @classmethod
    def nachos_nc(cls, **kw: Any) -> "LossConfig":
        """Ablation NACHOS_NC: no constraints, so no MAC term (calibration kept).

        Args:
            **kw: Other `LossConfig` fields, overriding the preset.

        Returns:
            The configuration.

        Raises:
            ConstraintError: A field is out of range.
        """
        return cls(**{"kind": "nachos", "mac_budget": None, "use_mac_term": False,
                      "use_calibration": True, "name": "nachos_nc", **kw})

    @classmethod
    def ce_sum(cls, exit_weights: Optional[Sequence[float]] = None, **kw: Any) -> "LossConfig":
        """SDN/BranchyNet baseline: weighted sum of per-exit cross-entropies.

        Args:
            exit_weights: One weight per exit, in depth order (``None``: all 1).
            **kw: Other `LossConfig` fields, overriding the preset.

        Returns:
            The configuration.

        Raises:
            ConstraintError: A field is out of range (e.g. a negative exit weight).
        """
        return cls(**{"kind": "ce_sum", "use_mac_term": False, "use_calibration": False,
                      "exit_weights": None if exit_weights is None else tuple(exit_weights),
                      "name": "ce_sum", **kw})

    def with_(self, **changes: Any) -> "LossConfig":
        """A copy with some fields changed (validated again).

        Args:
            **changes: The `LossConfig` fields to change and their new values.

        Returns:
            The changed copy.

        Raises:
            ConstraintError: A changed field is out of range.
        """
        return replace(self, **changes)

    @property
    def needs_macs(self) -> bool:
        """Whether training needs the per-exit staged MACs."""
        return self.kind == "nachos" and self.use_mac_term

    @property
    def needs_support_set(self) -> bool:
        """Whether training holds out a support set each epoch."""
        return self.kind == "nachos" and self.use_calibration and self.w_cal > 0

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON form (for run directories).

        Returns:
            Every field by name, ``exit_weights`` as a list (or ``None``).
        """
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["exit_weights"] = None if self.exit_weights is None else list(self.exit_weights)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LossConfig":
        """Inverse of ``to_dict``.

        Args:
            d: A dict as written by ``to_dict``.

        Returns:
            The configuration.

        Raises:
            ConstraintError: A field is out of range.
        """
        return cls(**d)


# ----- pure tensor functions (each can be gradient-checked on its own) -------------------------

def _flat(t) -> tf.Tensor:
    return tf.reshape(tf.cast(t, tf.float32), [-1])


def _labels(y) -> tf.Tensor:
    return tf.reshape(tf.cast(y, tf.int32), [-1])


def stack_confidences(confidences: Sequence) -> tf.Tensor:
    """Early-exit confidences [(N,1) or (N,)] * (K-1) -> (N, K-1) float32."""
    return tf.stack([_flat(c) for c in confidences], axis=1)


def max_softmax_confidences(logits: Sequence) -> List[tf.Tensor]:
    """b_i = max softmax of each given exit's logits (the fallback for models without a binary branch)."""
    return [tf.reduce_max(tf.nn.softmax(tf.cast(z, tf.float32), axis=-1), axis=-1) for z in logits]


def exit_probabilities(confidences: Sequence) -> tf.Tensor:
    """p_{n,i} = b_i prod_{j<i}(1-b_j) for i < K-1 and prod_j (1-b_j) for the final exit: (N, K)."""
    b = stack_confidences(confidences)
    survive = tf.math.cumprod(1.0 - b, axis=1, exclusive=True)
    p_early = b * survive
    p_final = tf.reduce_prod(1.0 - b, axis=1, keepdims=True)
    return tf.concat([p_early, p_final], axis=1)


def distillation_kl(student_logits, teacher_logits, temperature: float = 1.0) -> tf.Tensor:
    """Per-sample KL(softmax(teacher / T) || softmax(student / T)) over the last axis, times T^2 (knowledge
    distillation; used by supernet training and by `train_eenn`'s teacher)."""
    t = tf.cast(teacher_logits, tf.float32) / temperature
    s = tf.cast(student_logits, tf.float32) / temperature
    d = tf.nn.softmax(t) * (tf.nn.log_softmax(t) - tf.nn.log_softmax(s))
    return tf.reduce_sum(d, axis=-1) * (temperature ** 2)


def per_exit_cross_entropy(logits: Sequence, y) -> tf.Tensor:
    """Sparse softmax cross-entropy of every exit: (N, K)."""
    y = _labels(y)
    return tf.stack([tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.cast(z, tf.float32))
                     for z in logits], axis=1)


def classification_term(logits: Sequence, y, p: tf.Tensor) -> tf.Tensor:
    """mean_n sum_i p_{n,i} CE_{n,i}: the expected loss at the exit each sample leaves from."""
    ce = per_exit_cross_entropy(logits, y)
    return tf.reduce_mean(tf.reduce_sum(p * ce, axis=1))


def exit_correct(logits: Sequence, y) -> tf.Tensor:
    """1.0 where exit i's argmax equals the label, else 0.0: (N, len(logits)), no gradient."""
    y = _labels(y)
    return tf.stack([tf.cast(tf.equal(tf.argmax(z, axis=-1, output_type=tf.int32), y), tf.float32)
                     for z in logits], axis=1)


def balanced_bce(b: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Class-balanced BCE of one exit: each present class (target 0 / 1) weighs equally, whatever its count.

    Each sample is weighted 1 / (count of its target class in the batch); the weights are normalised so
    that the result is the mean of the per-class mean BCEs (the plain mean if only one class occurs).
    """
    b = tf.clip_by_value(_flat(b), _EPS, 1.0 - _EPS)
    t = tf.stop_gradient(_flat(target))
    bce = -(t * tf.math.log(b) + (1.0 - t) * tf.math.log(1.0 - b))
    n_pos = tf.reduce_sum(t)
    n_neg = tf.reduce_sum(1.0 - t)
    w = t / tf.maximum(n_pos, 1.0) + (1.0 - t) / tf.maximum(n_neg, 1.0)
    return tf.reduce_sum(w * bce) / tf.maximum(tf.reduce_sum(w), _EPS)


def confidence_prior_term(early_logits: Sequence, confidences: Sequence, y) -> tf.Tensor:
    """Sum over early exits of the class-balanced BCE between b_i and [exit i predicts the label]."""
    if len(confidences) == 0:
        return tf.constant(0.0)
    correct = exit_correct(early_logits, y)
    b = stack_confidences(confidences)
    return tf.add_n([balanced_bce(b[:, i], correct[:, i]) for i in range(len(confidences))])


def expected_macs(p: tf.Tensor, exit_macs: Sequence[float]) -> tf.Tensor:
    """Soft expected MACs mean_n sum_i p_{n,i} C_i (differentiable in p)."""
    c = tf.constant([float(m) for m in exit_macs], tf.float32)
    return tf.reduce_mean(tf.reduce_sum(p * c[None, :], axis=1))


def mac_term(p: tf.Tensor, exit_macs: Sequence[float], mac_budget: float, detached: bool = False) -> tf.Tensor:
    """max(0, E[MACs] - M_max) / |C_final - M_max|, zero when the full network fits the budget.

    ``detached=True`` stops its gradient (the NACHOS authors' code), so it only shifts the loss value.
    """
    exit_macs = [float(m) for m in exit_macs]
    if len(exit_macs) != int(p.shape[-1]):
        raise ConstraintError(f"exit_macs has {len(exit_macs)} entries but the model has {p.shape[-1]} exits")
    e = expected_macs(p, exit_macs)
    c_final, budget = exit_macs[-1], float(mac_budget)
    if c_final <= budget:  # inactive: the whole network already meets the budget
        term = 0.0 * e
    else:
        term = tf.nn.relu(e - budget) / abs(c_final - budget)
    return tf.stop_gradient(term) if detached else term


def calibration_term(confidences: Sequence, y, support_accuracy) -> tf.Tensor:
    """MSE(b_n, S[y_n, :]) over samples and early exits; S is (num_classes, K-1) support-set accuracy."""
    if len(confidences) == 0:
        return tf.constant(0.0)
    b = stack_confidences(confidences)
    target = tf.stop_gradient(tf.gather(tf.cast(support_accuracy, tf.float32), _labels(y)))
    return tf.reduce_mean(tf.square(b - target))


def ce_sum_term(logits: Sequence, y, exit_weights: Optional[Sequence[float]] = None) -> tf.Tensor:
    """SDN/BranchyNet baseline: sum_i w_i mean_n CE_{n,i} (w_i = 1 by default)."""
    ce = per_exit_cross_entropy(logits, y)
    k = len(logits)
    w = [1.0] * k if exit_weights is None else [float(v) for v in exit_weights]
    if len(w) != k:
        raise ConstraintError(f"exit_weights has {len(w)} entries but the model has {k} exits")
    return tf.reduce_sum(tf.reduce_mean(ce, axis=0) * tf.constant(w, tf.float32))


def eenn_loss(config: LossConfig, y, logits: Sequence, confidences: Optional[Sequence] = None,
              exit_macs: Optional[Sequence[float]] = None, support_accuracy=None,
              calibration_weight=1.0) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """Total loss and its terms for one batch.

    logits: every exit's logits in depth order, final last. confidences: the early exits' sigmoid
    outputs (K-1 of them) or None (then see ``LossConfig.no_confidence``). support_accuracy: S, shape
    (num_classes, K-1), or None (no calibration term). calibration_weight: a 0/1 scalar (a variable
    while training) that switches the calibration term on after the warm-up.
    Returns ``(total, {"cls", "conf", "mac", "cal", "exp_macs"})``; unused terms are 0.
    """
    zero = tf.constant(0.0)
    terms = {"cls": zero, "conf": zero, "mac": zero, "cal": zero, "exp_macs": zero}
    logits = list(logits)
    has_conf = confidences is not None and len(confidences) > 0 and all(c is not None for c in confidences)
    if config.kind == "ce_sum" or (not has_conf and config.no_confidence == "ce_sum" and len(logits) > 1):
        terms["cls"] = ce_sum_term(logits, y, config.exit_weights)
        if exit_macs is not None and has_conf:
            terms["exp_macs"] = tf.stop_gradient(expected_macs(exit_probabilities(confidences), exit_macs))
        return terms["cls"], terms
    if has_conf:
        conf = list(confidences)
    else:
        conf = max_softmax_confidences(logits[:-1])
    if len(conf) != len(logits) - 1:
        raise ConstraintError(f"{len(conf)} confidences for {len(logits)} exits (expected one per early exit)")
    p = exit_probabilities(conf) if conf else tf.ones_like(_flat(logits[0][:, :1]))[:, None]
    terms["cls"] = classification_term(logits, y, p)
    terms["conf"] = confidence_prior_term(logits[:-1], conf, y)
    total = config.w_cls * terms["cls"] + config.w_conf * terms["conf"]
    if exit_macs is not None:
        terms["exp_macs"] = tf.stop_gradient(expected_macs(p, exit_macs))
    if config.use_mac_term and config.w_mac > 0:
        if exit_macs is None:
            raise ConstraintError("the MAC term needs exit_macs (the staged MACs of every exit)")
        terms["mac"] = mac_term(p, exit_macs, config.mac_budget, detached=config.mac_term_detached)
        total = total + config.w_mac * terms["mac"]
    if config.use_calibration and support_accuracy is not None and conf:
        terms["cal"] = tf.cast(calibration_weight, tf.float32) * calibration_term(conf, y, support_accuracy)
        total = total + config.w_cal * terms["cal"]
    return total, terms

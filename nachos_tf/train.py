"""Training an EENN with Keras ``fit``: the NACHOS two-phase schedule, support-set calibration, seeding.

``train_eenn`` wraps the user's functional EENN in a small trainer ``keras.Model`` whose
``train_step``/``test_step`` compute the multi-exit loss of ``nachos_tf.losses``; the EENN itself is
left a plain functional model (the trainer only shares its layers), ready for ``save`` / export.

Schedule (as in NACHOS): phase ``"backbone"`` trains the backbone and the final classifier
(``backbone_loss="final"``, heads frozen) or every exit with a CE sum (``"ce_sum"``); phase ``"heads"``
trains the exits (and confidences) with the configured loss, with the backbone frozen or not.
Each phase uses Keras progress output, user callbacks and optional early stopping on validation
loss (``restore_best_weights``). Inside a callback, ``self.model`` is the trainer; the EENN is
``self.model.eenn``.

Data: the arrays already in memory are turned into one tensor each; batches are gathered by index
(``tf.gather``) from a per-epoch index schedule, so nothing is copied twice and the support set is
simply a set of indices left out of that epoch's schedule. The model is fed the raw arrays: it is
expected to scale its own input (e.g. a ``Rescaling`` layer, as ``build_eenn`` does).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import keras

from .errors import ConstraintError, DataError
from .losses import LossConfig, distillation_kl, eenn_loss
from .naming import exit_layout
from .optim import LeanAdam
from .predict import exit_outputs, predict_exits  # noqa: F401  (also importable from here, their home before)
from .support_set import CalibrationState, SupportSetCalibration, epoch_schedule
from .support_set import balanced_support_indices, support_accuracy  # noqa: F401  (importable from here, their home before)

__all__ = ["train_eenn", "TrainHistory", "predict_exits", "exit_outputs", "EENNTrainer", "SupportSetCalibration",
           "support_accuracy", "balanced_support_indices", "PHASES"]

PHASES = ("backbone", "heads")
#: Learning-rate schedules of `train_eenn` (per phase).
LR_SCHEDULES = ("constant", "cosine")
Augment = Union[None, str, Callable[[tf.Tensor], tf.Tensor]]


@dataclass
class TrainHistory:
    """What ``train_eenn`` did: per-phase Keras logs, epochs run, early stops and the last support accuracy.

    Attributes:
        phases: Keras ``fit`` logs per phase (``"backbone"``, ``"heads"``): key -> one value per epoch.
        epochs_run: Epochs run per phase.
        stopped_early: Whether early stopping ended each phase.
        support_accuracy: Last support-set accuracy S (classes x early exits), or None if never switched on.
        exit_macs: Staged MACs per exit used by the loss, or None.
        loss: The head-phase `LossConfig` as a dict.
        seconds: Wall-clock training time in seconds.
    """

    phases: Dict[str, Dict[str, List[float]]] = field(default_factory=dict)
    epochs_run: Dict[str, int] = field(default_factory=dict)
    stopped_early: Dict[str, bool] = field(default_factory=dict)
    support_accuracy: Optional[List[List[float]]] = None
    exit_macs: Optional[List[float]] = None
    loss: Optional[Dict] = None
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON form.

        Returns:
            Every field by name.
        """
        return {"phases": self.phases, "epochs_run": self.epochs_run, "stopped_early": self.stopped_early,
                "support_accuracy": self.support_accuracy, "exit_macs": self.exit_macs,
                "loss": self.loss, "seconds": self.seconds}

    def last(self, key: str, phase: str = "heads") -> Optional[float]:
        """Last logged value of ``key`` in a phase.

        Args:
            key: A Keras log key, e.g. ``"loss"`` or ``"val_loss"``.
            phase: ``"backbone"`` or ``"heads"``.

        Returns:
            The value, or None if absent.
        """
        vals = self.phases.get(phase, {}).get(key)
        return vals[-1] if vals else None


class EENNTrainer(keras.Model):
    """Trainer around an EENN: computes the multi-exit loss in ``train_step`` / ``test_step``.

    mode ``"final"``: CE of the final exit only; ``"ce_sum"``: CE sum over exits; ``"loss"``: ``config``.
    """

    def __init__(self, eenn: keras.Model, config: LossConfig, mode: str = "loss",
                 exit_macs: Optional[Sequence[float]] = None, calibration: Optional[CalibrationState] = None,
                 distill: Optional[Tuple[float, float]] = None):
        super().__init__(name="eenn_trainer")
        self._distill = None if distill is None else (float(distill[0]), float(distill[1]))
        self.eenn = eenn
        self._layout = exit_layout(eenn)
        self._mode = mode
        self._config = config if mode == "loss" else LossConfig.ce_sum()
        self._exit_macs = None if exit_macs is None else [float(m) for m in exit_macs]
        self._cal = [calibration]  # list: keep Keras from tracking the variables as weights
        names = ["loss"]
        if mode == "loss" and config.kind == "nachos":
            names += ["cls_loss", "conf_loss", "mac_loss", "cal_loss"]
        has_conf = any(s.conf_index is not None for s in self._layout)
        if self._exit_macs is not None and mode == "loss" and (config.kind == "nachos" or has_conf):
            names.append("exp_macs")
        if self._distill is not None:
            names.append("kd_loss")
        self._trackers = {n: keras.metrics.Mean(name=n) for n in names}
        exits = self._layout if mode != "final" else self._layout[-1:]
        self._accs = {s.name: keras.metrics.SparseCategoricalAccuracy(name=f"{s.name}_acc") for s in exits}
        self.built = True

    def call(self, x, training=False):
        return self.eenn(x, training=training)

    @property
    def metrics(self):
        return list(self._trackers.values()) + list(self._accs.values())

    def _split(self, outs):
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        logits = [outs[s.logits_index] for s in self._layout]
        confs = [outs[s.conf_index] if s.conf_index is not None else None for s in self._layout[:-1]]
        return logits, (confs if confs and all(c is not None for c in confs) else None)

    def _kd(self, logits, teacher) -> tf.Tensor:
        """Distillation: KL(teacher || student) on temperature-softened classes, times T^2, averaged over
        the exits this phase trains (the final one only in the backbone phase)."""
        used = logits[-1:] if self._mode == "final" else logits
        kls = [tf.reduce_mean(distillation_kl(z, teacher, self._distill[1])) for z in used]
        return tf.add_n(kls) / float(len(used))

    def _loss(self, y, outs, teacher=None):
        logits, confs = self._split(outs)
        if self._mode == "final":
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.reshape(tf.cast(y, tf.int32), [-1]), logits=tf.cast(logits[-1], tf.float32))
            total, terms = tf.reduce_mean(ce), {}
        else:
            cal = self._cal[0]
            total, terms = eenn_loss(self._config, y, logits, confs, exit_macs=self._exit_macs,
                                     support_accuracy=None if cal is None else cal.S,
                                     calibration_weight=1.0 if cal is None else cal.on)
        if self.eenn.losses:
            total = total + tf.add_n([tf.cast(l, tf.float32) for l in self.eenn.losses])
        if self._distill is not None and teacher is not None:
            terms = dict(terms, kd=self._kd(logits, teacher))
            total = total + self._distill[0] * terms["kd"]
        return total, terms, logits

    def _update(self, y, total, terms, logits):
        self._trackers["loss"].update_state(total)
        for key, name in (("cls", "cls_loss"), ("conf", "conf_loss"), ("mac", "mac_loss"),
                          ("cal", "cal_loss"), ("exp_macs", "exp_macs"), ("kd", "kd_loss")):
            if name in self._trackers and key in terms:
                self._trackers[name].update_state(terms[key])
        by_name = {s.name: z for s, z in zip(self._layout, logits)}
        for name, acc in self._accs.items():
            acc.update_state(y, by_name[name])
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y = data[0], data[1]
        teacher = data[2] if len(data) > 2 else None      # teacher logits (train_eenn's teacher_logits)
        with tf.GradientTape() as tape:
            outs = self.eenn(x, training=True)
            total, terms, logits = self._loss(y, outs, teacher)
        weights = self.trainable_weights
        grads = tape.gradient(total, weights)
        self.optimizer.apply_gradients([(g, w) for g, w in zip(grads, weights) if g is not None])
        return self._update(y, total, terms, logits)

    def test_step(self, data):
        x, y = data[0], data[1]
        outs = self.eenn(x, training=False)
        total, terms, logits = self._loss(y, outs)
        return self._update(y, total, terms, logits)


def _augment_fn(augment: Augment, seed: int) -> Optional[Callable]:
    """Batch augmentation (x, step) -> x: ``"flip"`` (horizontal), ``"shift"`` (±10 % translation), combos
    joined by ``+``, or a callable x -> x. Stateless random ops seeded by (seed, step): reproducible."""
    if augment is None:
        return None
    if callable(augment):
        return lambda x, step: augment(x)
    kinds = [a.strip() for a in str(augment).split("+") if a.strip()]
    bad = [k for k in kinds if k not in ("flip", "shift")]
    if bad:
        raise ConstraintError(f"unknown augmentation {bad}; use 'flip', 'shift', 'flip+shift' or a callable")

    def fn(x, step):
        if x.shape.rank != 4:
            raise DataError("flip/shift augmentation needs image batches (N, H, W, C)")
        b = tf.shape(x)[0]
        if "flip" in kinds:
            s = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64) * 2])
            flip = tf.random.stateless_uniform([b], seed=s) < 0.5
            x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
        if "shift" in kinds:
            h, w = int(x.shape[1]), int(x.shape[2])
            dh, dw = max(1, round(0.1 * h)), max(1, round(0.1 * w))
            s = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64) * 2 + 1])
            off = tf.random.stateless_uniform([b, 2], seed=s, minval=0, maxval=1)
            oy = tf.cast(tf.floor(off[:, 0] * (2 * dh + 1)), tf.int32)
            ox = tf.cast(tf.floor(off[:, 1] * (2 * dw + 1)), tf.int32)
            xp = tf.pad(x, [[0, 0], [dh, dh], [dw, dw], [0, 0]])
            rows = oy[:, None] + tf.range(h)[None, :]
            cols = ox[:, None] + tf.range(w)[None, :]
            x = tf.gather(xp, rows, axis=1, batch_dims=1)
            x = tf.gather(x, cols, axis=2, batch_dims=1)
        return x

    return fn


def _train_dataset(x: tf.Tensor, y: tf.Tensor, order: np.ndarray, batch_size: int,
                   augment: Optional[Callable], teacher: Optional[tf.Tensor] = None) -> tf.data.Dataset:
    """Batches gathered by index from the in-memory tensors following the per-epoch order (no copies);
    (x, y) or, with teacher logits, (x, y, teacher)."""
    ds = tf.data.Dataset.from_tensor_slices(order)
    ds = ds.flat_map(lambda idx: tf.data.Dataset.from_tensor_slices(idx).batch(batch_size))
    ds = ds.enumerate()

    def gather(step, idx):
        xb = tf.gather(x, idx)
        if augment is not None:
            xb = augment(xb, step)
        if teacher is not None:
            return xb, tf.gather(y, idx), tf.gather(teacher, idx)
        return xb, tf.gather(y, idx)

    return ds.map(gather).prefetch(tf.data.AUTOTUNE)


def _backbone_layer_names(model: keras.Model) -> set:
    """Layers the final exit depends on (backbone + final classifier)."""
    final = model.outputs[exit_layout(model)[-1].logits_index]
    return {l.name for l in keras.Model(model.inputs, final).layers}


def _resolve_exit_macs(model: keras.Model, exit_macs, required: bool) -> Optional[List[float]]:
    n_exits = len(exit_layout(model))
    if exit_macs is None:
        try:
            from .macs import profile_macs  # written by another part of the project
        except ImportError:
            if required:
                raise ConstraintError("the MAC term needs exit_macs (nachos_tf.macs is not available)") from None
            return None
        exit_macs = profile_macs(model).exit_macs
    exit_macs = [float(m) for m in exit_macs]
    if len(exit_macs) != n_exits:
        raise ConstraintError(f"exit_macs has {len(exit_macs)} entries, the model has {n_exits} exits")
    return exit_macs


def _arrays(data, train_limit: Optional[int], rng: np.random.Generator):
    for f in ("x_train", "y_train"):
        if getattr(data, f, None) is None:
            raise DataError(f"the dataset has no {f}")
    x, y = data.x_train, np.asarray(data.y_train).reshape(-1)
    if len(x) != len(y):
        raise DataError(f"x_train has {len(x)} samples but y_train has {len(y)}")
    num_classes = int(getattr(data, "num_classes", 0) or (int(y.max()) + 1))
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"labels must be in 0..{num_classes - 1}")
    keep = None
    if train_limit is not None and train_limit < len(y):
        keep = np.sort(rng.choice(len(y), size=int(train_limit), replace=False))
        x, y = x[keep], y[keep]  # one copy of the subset, the full array is untouched
    xv, yv = getattr(data, "x_val", None), getattr(data, "y_val", None)
    val = None
    if xv is not None and yv is not None and len(xv) > 0:
        val = (np.asarray(xv, np.float32), np.asarray(yv).reshape(-1).astype(np.int32))
    return x, y.astype(np.int32), num_classes, val, keep


def _teacher_tensor(teacher_logits, n: int, num_classes: int, keep, weight: float,
                    temperature: float) -> Optional[tf.Tensor]:
    """The checked teacher logits of the training samples used (None: no distillation)."""
    if teacher_logits is None:
        return None
    t = np.asarray(teacher_logits, np.float32)
    if t.shape != (n, num_classes):
        raise DataError(f"teacher_logits must have shape ({n}, {num_classes}) (one row per training sample), "
                        f"got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise DataError("teacher_logits has non-finite values")
    if not (np.isfinite(weight) and weight >= 0) or not (np.isfinite(temperature) and temperature > 0):
        raise ConstraintError("distill_weight must be >= 0 and distill_temperature > 0")
    return tf.convert_to_tensor(t if keep is None else t[keep])


def train_eenn(model: keras.Model, data: Any, loss: Optional[LossConfig] = None, epochs: int = 5,
               head_epochs: Optional[int] = None, batch_size: int = 64, learning_rate: float = 1e-3,
               head_learning_rate: Optional[float] = None, freeze_backbone: bool = False,
               backbone_loss: str = "final", exit_macs: Optional[Sequence[float]] = None,
               augment: Augment = None, early_stopping_patience: Optional[int] = None, seed: int = 0,
               callbacks: Optional[List[keras.callbacks.Callback]] = None, verbose: int = 1,
               train_limit: Optional[int] = None, deterministic: bool = True,
               teacher_logits: Optional[np.ndarray] = None, distill_weight: float = 1.0,
               distill_temperature: float = 1.0, lr_schedule: str = "constant") -> TrainHistory:
    """Train an EENN in place with the NACHOS schedule.

    Args:
        model: The functional EENN (outputs named as `nachos_tf.naming` expects).
        data: A `Dataset`, or any object with ``x_train``, ``y_train`` (optional ``x_val``, ``y_val``, ``num_classes``).
        loss: The head-phase loss (default ``LossConfig.ce_sum()``).
        epochs: Backbone-phase epochs (0 skips it).
        head_epochs: Exit-phase epochs (default ``epochs``).
        batch_size: Training (and validation) batch size.
        learning_rate: Adam learning rate of the backbone phase (and of the head phase by default).
        head_learning_rate: Adam learning rate of the head phase (default ``learning_rate``).
        freeze_backbone: Keep the backbone (every layer the final exit depends on) fixed in the head phase.
        backbone_loss: ``"final"`` (final exit only, heads frozen) or ``"ce_sum"`` (all exits).
        exit_macs: Staged MACs per exit (profiled when omitted and needed).
        augment: ``"flip"``, ``"shift"``, both joined by ``+``, a callable x -> x, or None.
        early_stopping_patience: None = off, else EarlyStopping on val_loss (loss without validation data), best
            weights restored.
        seed: Seed of Keras, the epoch schedules and the augmentation.
        callbacks: Extra Keras callbacks of both phases.
        verbose: Keras progress verbosity (0: silent).
        train_limit: Train on a seeded random subset of that many samples.
        deterministic: Also enable TF op determinism (process-wide).
        teacher_logits: (N, classes) logits of a teacher (e.g. a supernet's largest subnet) for ``data.x_train``:
            every trained exit is also distilled from it.
        distill_weight: Weight of KL(softmax(teacher / T) || softmax(exit / T)) T^2 added to the loss.
        distill_temperature: The distillation temperature T.
        lr_schedule: ``"constant"`` (default) or ``"cosine"``: each phase's learning rate decays to zero over its
            steps (`keras.optimizers.schedules.CosineDecay`).

    Returns:
        The ``TrainHistory``.

    Raises:
        ConstraintError: Bad schedule, learning-rate schedule, augmentation or distillation settings, or exit_macs
            not one per exit.
        DataError: Malformed training labels or teacher logits.
    """
    t0 = time.time()
    loss = LossConfig.ce_sum() if loss is None else loss
    if backbone_loss not in ("final", "ce_sum"):
        raise ConstraintError("backbone_loss must be 'final' or 'ce_sum'")
    head_epochs = epochs if head_epochs is None else head_epochs
    if epochs < 0 or head_epochs < 0 or batch_size < 1:
        raise ConstraintError("epochs, head_epochs must be >= 0 and batch_size >= 1")
    if lr_schedule not in LR_SCHEDULES:
        raise ConstraintError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(seed)
    x_np, y_np, num_classes, val, keep = _arrays(data, train_limit, rng)
    teacher = _teacher_tensor(teacher_logits, len(data.x_train), num_classes, keep, distill_weight,
                              distill_temperature)
    distill = None if teacher is None else (distill_weight, distill_temperature)
    layout = exit_layout(model)
    num_early = len(layout) - 1
    macs = _resolve_exit_macs(model, exit_macs, required=loss.needs_macs and head_epochs > 0)
    aug = _augment_fn(augment, seed)
    x_t = tf.convert_to_tensor(x_np)  # the one in-TF copy of the training set; batches are gathered from it
    if x_t.dtype != tf.float32:
        x_t = tf.cast(x_t, tf.float32)
    y_t = tf.convert_to_tensor(y_np, tf.int32)
    val_ds = None
    if val is not None:
        val_ds = tf.data.Dataset.from_tensor_slices(val).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    history = TrainHistory(exit_macs=macs, loss=loss.to_dict())
    backbone = _backbone_layer_names(model)
    saved_trainable = {l.name: l.trainable for l in model.layers}
    cal_state = CalibrationState(num_classes, num_early)

    def run_phase(name: str, n_epochs: int, trainer: EENNTrainer, lr: float, extra: List) -> None:
        use_sup = name == "heads" and loss.needs_support_set and num_early > 0
        order, support = epoch_schedule(len(y_np), n_epochs, rng, y_np,
                                         loss.support_fraction if use_sup else None, num_classes)
        cbs = list(extra)
        if use_sup:
            cbs.append(SupportSetCalibration(model, x_t, y_np, support, cal_state, num_classes,
                                             loss.calibration_warmup, batch_size))
        stopper = None
        if early_stopping_patience is not None:
            # the calibration term joins the loss after the warm-up: compare epochs from then on only
            stopper = keras.callbacks.EarlyStopping(monitor="val_loss" if val_ds is not None else "loss",
                                                    patience=early_stopping_patience,
                                                    restore_best_weights=True, verbose=verbose,
                                                    start_from_epoch=loss.calibration_warmup if use_sup else 0)
            cbs.append(stopper)
        cbs += list(callbacks or [])
        steps = math.ceil(order.shape[1] / batch_size)
        rate = lr if lr_schedule == "constant" else \
            keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps * n_epochs))
        trainer.compile(optimizer=LeanAdam(rate), jit_compile=False)   # keras Adam, bit-identical, traced faster
        # create the optimizer slots now, so that tf.function does not trace the step twice
        trainer.optimizer.build(trainer.trainable_variables)
        if verbose:
            print(f"[nachos-tf] phase {name}: {n_epochs} epochs, {order.shape[1]} samples/epoch")
        h = trainer.fit(_train_dataset(x_t, y_t, order, batch_size, aug, teacher), epochs=n_epochs,
                        steps_per_epoch=steps, validation_data=val_ds, callbacks=cbs, verbose=verbose,
                        shuffle=False)
        history.phases[name] = {k: [float(v) for v in vs] for k, vs in h.history.items()}
        history.epochs_run[name] = len(next(iter(h.history.values()), []))
        history.stopped_early[name] = bool(stopper is not None and stopper.stopped_epoch > 0)

    try:
        if epochs > 0:
            if backbone_loss == "final":
                for l in model.layers:
                    if l.name not in backbone:
                        l.trainable = False
            trainer = EENNTrainer(model, loss, mode="final" if backbone_loss == "final" else "ce_sum",
                                  distill=distill)
            run_phase("backbone", epochs, trainer, learning_rate, [])
            for l in model.layers:
                l.trainable = saved_trainable[l.name]
        if head_epochs > 0:
            if freeze_backbone:
                for l in model.layers:
                    if l.name in backbone:
                        l.trainable = False
            trainer = EENNTrainer(model, loss, mode="loss", exit_macs=macs, calibration=cal_state,
                                  distill=distill)
            run_phase("heads", head_epochs, trainer, head_learning_rate or learning_rate, [])
            if loss.needs_support_set and num_early > 0 and float(cal_state.on.numpy()) > 0:
                history.support_accuracy = cal_state.S.numpy().tolist()
    finally:
        for l in model.layers:
            l.trainable = saved_trainable[l.name]
    history.seconds = time.time() - t0
    return history

"""`train_supernet`: the two phases on Keras `fit`, epoch checkpoints, resume, the saved result."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from ..errors import SupernetError
from .api import Supernet
from .gates import elastic_groups
from .kernels import transform_shapes
from .store import (SupernetMismatchError, assign_weights, data_fingerprint, read_weights, space_fingerprint,
                    weights_fingerprint, write_weights)
from .sorting import sort_channels, sort_widths
from .training import SupernetTrainer, TwoPhaseSchedule, epoch_plan, make_dataset

CKPT_DIR = "checkpoint"


def _settings(**kw) -> Dict[str, Any]:
    loss = kw.pop("loss")
    kw["loss"] = None if loss is None else loss.to_dict()
    return kw


class _Checkpoint(keras.callbacks.Callback):
    """After every epoch: history, then weights + optimizer state + state.json in `folder` (atomic)."""

    def __init__(self, sn: Supernet, optimizer: Any, folder: Optional[Path], state: Dict[str, Any]):
        super().__init__()
        self.sn, self.opt, self.folder, self.state = sn, optimizer, folder, state
        self._t0 = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        rec = {k: float(v) for k, v in (logs or {}).items()}
        rec["epoch"], rec["seconds"], rec["phase"] = epoch + 1, round(time.time() - self._t0, 2), self.state["phase"]
        self.state["history"].append(rec)
        self.state["epochs_done"] = epoch + 1
        save_checkpoint(self.folder, self.sn, self.opt, self.state)


def save_checkpoint(folder: Optional[Path], sn: Supernet, optimizer: Any, state: Dict[str, Any]) -> None:
    """Write the resumable state (no-op without a folder)."""
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_weights(folder / "weights.h5", sn.net.numpy_weights())
    write_weights(folder / "optimizer.h5", {f"v{i:04d}": v.numpy() for i, v in enumerate(optimizer.variables)})
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, folder / "state.json")


def _load_checkpoint(folder: Path, sn: Supernet, optimizer: Any) -> None:
    assign_weights(sn.net, read_weights(folder / "weights.h5"), str(folder))
    opt = read_weights(folder / "optimizer.h5")
    if len(opt) != len(optimizer.variables):
        raise SupernetError(f"{folder}: optimizer state has {len(opt)} variables, expected {len(optimizer.variables)}")
    for i, v in enumerate(optimizer.variables):
        a = opt[f"v{i:04d}"]
        if tuple(a.shape) != tuple(v.shape):
            raise SupernetError(f"{folder}: optimizer variable {i} has shape {a.shape}, expected {tuple(v.shape)}")
        v.assign(a)


def _subset(x: np.ndarray, y: np.ndarray, limit: Optional[int], seed: int):
    if limit is None or limit >= len(y):
        return x, y
    idx = np.sort(np.random.default_rng([seed, 1]).choice(len(y), size=int(limit), replace=False))
    return x[idx], y[idx]


def prior_record(init_from: Optional[Supernet], space: Any, data: Any) -> Optional[Dict[str, Any]]:
    """The training record of the supernet a run continues from, as kept under ``info["init_from"]``.

    Args:
        init_from: the trained supernet being continued (None: a fresh run).
        space: the search space of the run.
        data: the run's dataset.

    Returns:
        Its settings, epochs, history, command and own ``init_from`` (whatever of these it holds), plus the
        sha256 of its weights; None without `init_from`.

    Raises:
        SupernetError: `init_from` is not a Supernet.
        SupernetMismatchError: it was made for another space or trained on other data.
    """
    if init_from is None:
        return None
    if not isinstance(init_from, Supernet):
        raise SupernetError(f"init_from must be a Supernet, got {type(init_from).__name__}")
    if space_fingerprint(init_from.space) != space_fingerprint(space):
        raise SupernetMismatchError("init_from: that supernet was made for another search space")
    info = init_from.info
    if info.get("data_fingerprint") not in (None, data_fingerprint(data)):
        raise SupernetMismatchError("init_from: that supernet was trained on other data")
    rec = {k: info[k] for k in ("settings", "epochs_done", "history", "command", "init_from") if k in info}
    rec["weights_sha256"] = weights_fingerprint(init_from.net.numpy_weights())
    return rec


def train_supernet(space: Any, data: Any, epochs: int = 30, warmup_epochs: Optional[int] = None,
                   folder: Union[None, str, Path] = None, batch_size: int = 128, n_random: int = 2,
                   learning_rate: float = 2e-3, kd_temperature: float = 1.0, head_weight: float = 1.0,
                   conf_weight: float = 0.5, loss: Any = None, sort_channels_after_warmup: bool = True,
                   augment: Optional[str] = None, train_limit: Optional[int] = None, val_limit: int = 2000,
                   seed: int = 0, verbose: Union[int, str] = 1,
                   callbacks: Optional[List[keras.callbacks.Callback]] = None,
                   init_from: Optional[Supernet] = None, elastic: Optional[Sequence[str]] = None,
                   sort_channels_first: bool = False, sort_widths_first: bool = False,
                   kernel_transform: Optional[bool] = None) -> Supernet:
    """Train a weight-sharing supernet for `space` on `data` (largest-first warm-up, then sandwich).

    Args:
        space: a `SearchSpace.mcu` space.
        data: a `nachos_tf.data.Dataset` (x_train/y_train; x_val/y_val for the progress bar's val metrics).
        epochs: total epochs (warm-up included).
        warmup_epochs: epochs training the largest subnet alone (default: 20 % of `epochs`, at least 1
            when epochs >= 2, else 0).
        folder: where epoch checkpoints (`folder/checkpoint/`) and the result (`supernet.weights.h5`,
            `supernet.json`) go; re-running with the same folder and settings continues where it stopped.
        batch_size, learning_rate: Adam, constant LR in the warm-up, cosine decay in the sandwich phase.
        n_random: random subnets per step besides the largest and the smallest.
        kd_temperature: temperature of the in-place distillation KL.
        head_weight, conf_weight: weights of the exit-head losses and of the confidences' BCE.
        loss: optional `LossConfig(kind="nachos")`: adds the NACHOS loss on a random exit configuration.
        sort_channels_after_warmup: OFA-style importance sorting of expanded channels before sandwich.
        augment: None or "shift" (random ±10 % translations).
        train_limit: train on a seeded random subset of that many images (tests, quick runs).
        val_limit: validation images shown in the progress bar metrics (0: none).
        seed: seeds weights, batch order and subnet sampling (same seed and thread count -> same weights).
        verbose: Keras progress verbosity.
        callbacks: extra Keras callbacks.
        init_from: continue from this trained supernet's weights (same space and data) instead of a
            random initialisation, with a fresh optimizer and LR schedule (e.g. more epochs on more
            images; use `warmup_epochs=0`). Its training record is kept under `info["init_from"]`, so
            the cost of the result counts both trainings; the settings record its weights' sha256.
        elastic: gene groups (names from `ELASTIC_GROUPS`) the sandwich phase samples; the others stay at
            their largest value in every subnet (one stage of OFA's progressive shrinking, see
            `train_progressive`). None: every gene is elastic.
        sort_channels_first: sort expanded channels by importance before the first epoch of this call
            (with `init_from`: before expansion becomes elastic, as progressive shrinking does).
        sort_widths_first: likewise sort the stem's and stages' output channels (`sort_widths`), before the
            stem and stage widths become elastic.
        kernel_transform: give the smaller depthwise kernels OFA's learned transformation matrices
            (`nachos_tf.supernet.kernels`); from an `init_from` without them they start as the identity, so the
            supernet first computes what `init_from` did. None: as `init_from` (False without one).

    Returns:
        The trained `Supernet` (also saved in `folder` when given).

    Raises:
        SupernetMismatchError: `folder` holds a checkpoint made with other settings, space or data.
        SupernetError, DataError: malformed inputs (also an unknown elastic gene group).
    """
    t_start = time.time()
    if epochs < 0 or batch_size < 1 or n_random < 0:
        raise SupernetError("epochs >= 0, batch_size >= 1 and n_random >= 0 are required")
    if elastic is not None:
        elastic = elastic_groups(elastic)
    warm = (max(1, round(0.2 * epochs)) if epochs >= 2 else 0) if warmup_epochs is None else int(warmup_epochs)
    warm = min(warm, epochs)
    prior = prior_record(init_from, space, data)
    has_kt = bool(init_from is not None and init_from.kernel_transform)
    kernel_transform = has_kt if kernel_transform is None else bool(kernel_transform)
    if has_kt and not kernel_transform:
        raise SupernetError("init_from has kernel-transformation matrices; kernel_transform=False would drop them")
    settings = _settings(epochs=int(epochs), warmup_epochs=warm, batch_size=int(batch_size), n_random=int(n_random),
                         learning_rate=float(learning_rate), kd_temperature=float(kd_temperature),
                         head_weight=float(head_weight), conf_weight=float(conf_weight), loss=loss,
                         sort_channels=bool(sort_channels_after_warmup), augment=augment, train_limit=train_limit,
                         val_limit=int(val_limit), seed=int(seed))
    if prior is not None:
        settings["init_from"] = prior["weights_sha256"]
    if elastic is not None:                 # recorded only when set, so older checkpoints still resume
        settings["elastic"] = list(elastic)
    if sort_channels_first:
        settings["sort_channels_first"] = True
    if sort_widths_first:
        settings["sort_widths_first"] = True
    if kernel_transform:
        settings["kernel_transform"] = True
    x, y = _subset(np.asarray(data.x_train), np.asarray(data.y_train).reshape(-1), train_limit, seed)
    if len(y) < batch_size:
        raise SupernetError(f"{len(y)} training images, fewer than one batch of {batch_size}")
    keras.utils.set_random_seed(int(seed))
    sn = Supernet(space, seed=seed, kernel_transform=kernel_transform)
    if init_from is not None:
        start = init_from.net.numpy_weights()
        if kernel_transform and not has_kt:           # the matrices start as the identity
            start.update({k: np.eye(shape[0], dtype=np.float32) for k, shape in transform_shapes(sn.spec).items()})
        assign_weights(sn.net, start, "init_from")
    spec = sn.spec
    folder = None if folder is None else Path(folder)
    ckpt = None if folder is None else folder / CKPT_DIR
    fp = {"space_fingerprint": space_fingerprint(space), "data_fingerprint": data_fingerprint(data)}
    state: Dict[str, Any] = {"settings": settings, **fp, "epochs_done": 0, "sorted": False,
                             **({"widths_sorted": False} if sort_widths_first else {}), "history": [],
                             "phase": "largest", **({"init_from": prior} if prior is not None else {})}
    steps = len(y) // batch_size
    total_steps = steps * epochs
    optimizer = keras.optimizers.Adam(TwoPhaseSchedule(learning_rate, steps * warm, total_steps))
    optimizer.build(sn.net.trainable_variables)
    if ckpt is not None and (ckpt / "state.json").is_file():
        old = json.loads((ckpt / "state.json").read_text())
        for key in ("settings", "space_fingerprint", "data_fingerprint"):
            if old.get(key) != state[key]:
                raise SupernetMismatchError(f"{ckpt}: checkpoint made with other {key.replace('_', ' ')}; "
                                            "use another folder or delete it")
        _load_checkpoint(ckpt, sn, optimizer)
        state.update({k: old[k] for k in ("epochs_done", "sorted", "history", "phase", "widths_sorted") if k in old})
        if verbose:
            print(f"[nachos-tf] supernet: resuming from {ckpt} after {state['epochs_done']} epochs")
    x_t, y_t = tf.constant(x, tf.float32), tf.constant(y, tf.int32)
    val = None
    if val_limit and getattr(data, "x_val", None) is not None and len(data.y_val):
        xv, yv = np.asarray(data.x_val[:val_limit]), np.asarray(data.y_val[:val_limit]).reshape(-1)
        vb = min(500, len(yv))
        plan = epoch_plan(spec, len(yv), 10**6, seed, vb, n_random, elastic)  # fixed, not a training epoch
        val = make_dataset(tf.constant(xv, tf.float32), tf.constant(yv, tf.int32), [plan])
    sorts = [(key, fn) for flag, key, fn in ((sort_channels_first, "sorted", sort_channels),
                                             (sort_widths_first, "widths_sorted", sort_widths))
             if flag and not state[key]]
    if sorts and state["epochs_done"] == 0:
        for key, fn in sorts:
            fn(sn.net, optimizer)
            state[key] = True
        save_checkpoint(ckpt, sn, optimizer, state)
    for phase, start, end in (("largest", 0, warm), ("sandwich", warm, epochs)):
        if state["epochs_done"] >= end or end == start:
            continue
        state["phase"] = phase
        if phase == "sandwich" and sort_channels_after_warmup and warm > 0 and not state["sorted"]:
            sort_channels(sn.net, optimizer)
            state["sorted"] = True
            save_checkpoint(ckpt, sn, optimizer, state)
        trainer = SupernetTrainer(sn.net, phase, n_random=n_random, kd_temperature=kd_temperature,
                                  head_weight=head_weight, conf_weight=conf_weight, loss=loss, elastic=elastic)
        trainer.compile(optimizer=optimizer, jit_compile=False)
        first = max(start, state["epochs_done"])
        plans = [epoch_plan(spec, len(y), e, seed, batch_size, n_random, elastic) for e in range(first, end)]
        ds = make_dataset(x_t, y_t, plans, augment=augment, seed=seed)
        if verbose:
            print(f"[nachos-tf] supernet phase {phase}: epochs {first + 1}..{end} of {epochs}, {steps} steps each")
        trainer.fit(ds, epochs=end, initial_epoch=first, steps_per_epoch=steps,
                    validation_data=val,
                    callbacks=[_Checkpoint(sn, optimizer, ckpt, state)] + list(callbacks or []),
                    verbose=verbose, shuffle=False)
        sn.info["traces"] = trainer.traces
    sn.info.update({"settings": settings, **fp, "epochs_done": state["epochs_done"], "sorted": state["sorted"],
                    **({"widths_sorted": state["widths_sorted"]} if "widths_sorted" in state else {}),
                    "history": state["history"], "seconds_this_call": round(time.time() - t_start, 1),
                    **({"init_from": prior} if prior is not None else {})})
    if folder is not None:
        sn.save(folder)
    return sn

"""The proxy evaluator: train every candidate briefly from scratch, calibrate its thresholds on validation.

The candidate is built and trained (NACHOS loss) on a seeded, class-balanced subset of the training split,
thresholds are calibrated on a validation subset (`policy.calibrate`, method "pareto"), and its objectives
are (validation error, expected MACs at those thresholds). MACs are exact (profiler); a candidate whose
first exit alone exceeds max_macs is rejected untrained. Training is seeded from (run seed, genome key)
and runs with the run's TensorFlow thread count in every process, so a candidate gets the same result
locally, in a worker process, on a Dask worker or after a resume. `finalize` is the same code path with
the budget's final settings on more data.
"""
from __future__ import annotations

import math
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ...errors import ConstraintError
from ...genome import Genome
from ...records import CandidateRecord, FinalRecord
from .base import EvalContext, register_evaluator
from .common import (CALIBRATIONS, COST_MODELS, believed_costs, calibrate_model, candidate_record, candidate_seed,
                     exit_rule, final_record, over_budget_at_first_exit)

if TYPE_CHECKING:
    from ...data import Dataset

#: Candidates per worker process of the proxy evaluator (see `ProxyEvaluator`): about 1.1 GB of growth at most.
DEFAULT_TASKS_PER_PROCESS = 16

__all__ = ["ProxyEvaluator", "build_candidate", "train_built", "train_candidate", "set_bn_momentum",
           "proxy_subset"]


def proxy_subset(data, budget, seed: int):
    """The class-balanced train / validation subsets candidates are trained and calibrated on (no test)."""
    return data.subset(train=budget.proxy_train, val=budget.proxy_val, test=0, seed=int(seed))


def build_candidate(space, genome: Genome, seed: int):
    """Build a genome with weights initialised from `seed`; returns (model, staged exit MACs)."""
    import keras

    from ...builder import build_eenn
    from ...macs import profile_macs

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)            # weight initialisation happens at build time
    model = build_eenn(space, genome)
    return model, [int(m) for m in profile_macs(model).exit_macs]


def set_bn_momentum(model, steps: int) -> float:
    """Let BatchNorm moving statistics forget their initial values within the last ~10 % of training.

    With Keras' default momentum 0.99, a proxy training of ~100 steps leaves the moving mean/variance
    mostly at their initial 0/1, and the deep backbone answers at chance level in inference mode while
    its training accuracy is fine. Momentum 1 - 10/steps (at most 0.99) fixes that at no cost.
    """
    import keras

    momentum = float(min(0.99, max(0.5, 1.0 - 10.0 / max(1, steps))))
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
        stack.extend(getattr(layer, "layers", []) or [])
    return momentum


def train_built(model, exit_macs: Sequence[float], data, loss, seed: int, epochs: int, head_epochs: int,
                batch_size: int, learning_rate: float, teacher_logits=None, lr_schedule: str = "constant") -> float:
    """Train a built EENN in place on `data`'s train split (deterministic for `seed`); returns seconds.
    `teacher_logits` (one row per training image): distil every trained exit from them; `lr_schedule`: as
    `train_eenn`'s."""
    from ...train import train_eenn

    set_bn_momentum(model, math.ceil(len(data.y_train) / batch_size) * (epochs + head_epochs))
    # no validation split during proxy training: it would only be logged, and costs time
    train_data = types.SimpleNamespace(x_train=data.x_train, y_train=data.y_train, num_classes=data.num_classes)
    hist = train_eenn(model, train_data, loss=loss, epochs=epochs, head_epochs=head_epochs, batch_size=batch_size,
                      learning_rate=learning_rate, exit_macs=list(exit_macs), seed=seed, verbose=0,
                      teacher_logits=teacher_logits, lr_schedule=lr_schedule)
    return float(hist.seconds)


def train_candidate(space, genome: Genome, data, loss, seed: int, epochs: int, head_epochs: int,
                    batch_size: int, learning_rate: float):
    """Build and train a genome deterministically for `seed`; returns (model, staged exit MACs, seconds)."""
    model, exit_macs = build_candidate(space, genome, seed)
    seconds = train_built(model, exit_macs, data, loss, seed, epochs, head_epochs, batch_size, learning_rate)
    return model, exit_macs, seconds


@register_evaluator
class ProxyEvaluator:
    """Brief training from scratch per candidate (the NACHOS-style low-fidelity proxy).

    Args:
        calibration: "pareto" (ours: the most accurate admissible point of the exact trade-off curve) or
            "grid" (the NACHOS paper's grid + repair, for ablations).
        cost_model: "staged" (ours: what the device pays) or "paper" (NACHOS: an exit's own head only); the
            search then optimises what this evaluator believes, the final figures use the staged costs.
        tasks_per_process: candidates are trained in worker processes replaced after this many candidates
            each (None: in the search process, as long as it runs). TensorFlow never frees the graphs it
            traces for a model's training (tensorflow/tensorflow#124972): about 70 MB per candidate here,
            which ended multi-hour searches in the kernel's OOM killer. A fresh process costs a few seconds
            (TensorFlow's import); results do not depend on this setting, so it is not part of the fingerprint.

    Raises:
        ConstraintError: an unknown calibration or cost model, or tasks_per_process not a whole number >= 1.
    """

    name = "proxy"

    def __init__(self, calibration: str = "pareto", cost_model: str = "staged",
                 tasks_per_process: Optional[int] = DEFAULT_TASKS_PER_PROCESS):
        if tasks_per_process is not None and (isinstance(tasks_per_process, bool)
                                              or not isinstance(tasks_per_process, int) or tasks_per_process < 1):
            raise ConstraintError(f"tasks_per_process must be a whole number >= 1 or None, got {tasks_per_process!r}")
        self.tasks_per_process = tasks_per_process
        if calibration not in CALIBRATIONS:
            raise ConstraintError(f"unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}")
        if cost_model not in COST_MODELS:
            raise ConstraintError(f"unknown cost model {cost_model!r}; choose one of {', '.join(COST_MODELS)}")
        self.calibration, self.cost_model = calibration, cost_model
        self.context: EvalContext = None  # type: ignore[assignment]

    # ---------------------------------------------------------------- protocol
    def to_dict(self) -> Dict[str, Any]:
        """Name and settings (the run fingerprint).

        Returns:
            {"name": "proxy", "calibration": ..., "cost_model": ...}.
        """
        return {"name": self.name, "calibration": self.calibration, "cost_model": self.cost_model}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProxyEvaluator":
        """The evaluator a config.json describes.

        Args:
            d: its `to_dict()` (calibration and cost_model optional).

        Returns:
            The ProxyEvaluator.

        Raises:
            ConstraintError: an unknown calibration or cost model.
        """
        return cls(**{k: d[k] for k in ("calibration", "cost_model") if k in d})

    def setup(self, context: EvalContext) -> None:
        """Nothing to prepare once: every candidate is trained from scratch.

        Args:
            context: the run's evaluation context (kept for `evaluate` and `finalize`).
        """
        self.context = context

    def proxy_data(self) -> Dataset:
        """The seeded proxy subset (built once per process).

        Returns:
            The class-balanced train / validation subsets of the run's data (`proxy_subset`).
        """
        c = self.context
        if "proxy" not in c.cache:
            c.cache["proxy"] = proxy_subset(c.dataset(), c.budget, c.seed)
        return c.cache["proxy"]

    def evaluate(self, genome: Genome) -> CandidateRecord:
        """Train the candidate on the proxy subset, calibrate on its validation subset.

        Args:
            genome: the candidate.

        Returns:
            Its search-stage record (rejected untrained when its first exit alone exceeds max_macs).
        """
        c = self.context
        t0 = time.time()
        seed = candidate_seed(c.seed, genome)
        model, exit_macs = build_candidate(c.space, genome, seed)
        pruned = over_budget_at_first_exit(genome, exit_macs, model.count_params(), c.constraints, seed, t0)
        if pruned is not None:
            return pruned
        data = self.proxy_data()
        model, costs, train_s = self._train(model, exit_macs, data, seed, final=False)
        rule = exit_rule(c.space)
        cal = calibrate_model(model, costs, data.x_val, data.y_val, rule, c.constraints, self.calibration,
                              tolerance=c.budget.accuracy_tolerance, crossfit=c.budget.crossfit, seed=c.seed)
        return candidate_record(genome, model, cal, exit_macs, c.constraints, rule, data.x_train[:64], seed,
                                train_s, t0)

    def finalize(self, record: CandidateRecord, out_dir: Path) -> FinalRecord:
        """Re-train from scratch with the final budget, re-calibrate on validation, measure on test, save.

        Args:
            record: the candidate's search-stage record.
            out_dir: the folder its model is saved in.

        Returns:
            Its final record (`dropped` when it misses a constraint).
        """
        c = self.context
        t0 = time.time()
        genome = Genome.from_dict(record.genome)
        seed = candidate_seed(c.seed, genome)
        data = c.dataset()
        b = c.budget
        train_data = data.subset(train=b.final_train, val=0, test=0, seed=int(c.seed)) \
            if b.final_train is not None else data
        model, exit_macs = build_candidate(c.space, genome, seed)
        model, costs, train_s = self._train(model, exit_macs, train_data, seed, final=True)
        return final_record(record, model, data, exit_macs, costs, exit_rule(c.space), c.target, self.calibration,
                            seed, out_dir, train_s, t0, final_macs=c.budget.final_macs,
                            tolerance=c.budget.accuracy_tolerance)

    # ---------------------------------------------------------------- the one training path
    def _train(self, model, exit_macs: List[int], data, seed: int, final: bool) -> Tuple[Any, List[float], float]:
        b = self.context.budget
        costs = believed_costs(model, exit_macs, self.cost_model)
        epochs, head = (b.final_epochs, b.final_head_epochs) if final else (b.epochs, b.head_epochs)
        train_s = train_built(model, costs, data, self.context.loss, seed, epochs, head, b.batch_size,
                              b.learning_rate, lr_schedule=b.final_schedule if final else "constant")
        return model, costs, train_s

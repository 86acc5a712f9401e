"""The search: NSGA-II (pymoo) over the genome encoding, under accuracy / expected-MAC / memory constraints.

Pieces, each replaceable:

* `Constraints` and `Budget`: typed settings (what must hold; how much compute each candidate gets).
* `evaluate_candidate(genome, space, data, constraints, budget, seed)`: the low-fidelity proxy. The
  candidate is built and trained briefly (NACHOS loss) on a seeded, class-balanced subset of the training
  split, thresholds are calibrated on a validation subset (`policy.calibrate`, method "pareto"), and its
  objectives are (validation error, expected MACs at those thresholds). MACs are exact (profiler);
  a candidate whose first exit alone exceeds max_macs is rejected untrained. Training is seeded from
  (run seed, genome key) and runs with the run's TensorFlow thread count in every process, so a
  candidate gets the same result locally, in a worker process, on a Dask worker or after a resume.
* `EENNProblem`: a pymoo `Problem` (F = [error, expected MACs], G <= 0 for each active constraint)
  whose batches go through a `CandidatePool`: look-up in the run's archive first, then evaluation on a
  backend (this process, N local processes, or a Dask cluster), each result appended to
  ``archive.jsonl`` as it finishes.
* `search(...)`: NSGA-II via `pymoo.optimize.minimize`, then the admissible Pareto set is re-trained
  with the budget's final settings, re-calibrated on validation, measured on test and saved.

Resume replays: the same seeded NSGA-II runs again and every genome already in the archive is answered
from it without training, so the populations, and the result, are those of an uninterrupted run.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import platform
import sys
import time
import types
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import results as R
from .errors import ConstraintError, NachosError, NoAdmissibleSolutionError, RunDirError
from .space import Genome, SearchSpace

__all__ = ["Constraints", "Budget", "DataRef", "EENNProblem", "GenomeRepair", "CandidatePool", "search",
           "resume_search", "evaluate_candidate", "finalize_candidate", "build_candidate", "train_candidate",
           "calibrate_model", "candidate_seed", "proxy_subset", "default_loss", "exit_rule", "pin_threads",
           "explain_no_admissible", "load_run", "report", "SearchResult", "Solution", "BUDGETS"]

load_run = R.load_run
report = R.report
SearchResult = R.SearchResult
Solution = R.Solution

Progress = Optional[Callable[[str], Any]]


# --------------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------------

def _number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ConstraintError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ConstraintError(f"{name} must be finite, got {v}")
    return v


@dataclass(frozen=True)
class Constraints:
    """What an admissible EENN must meet (uNAS-style typed bounds, plus the EENN's expected-MAC budget).

    min_accuracy: top-1 accuracy of the thresholded EENN on validation, in (0, 1].
    max_macs: expected MACs per image (staged exit costs weighted by exit rates), > 0.
    max_flash / max_ram: int8 model bytes / peak TFLM arena bytes, measured on the int8 export (optional).
    """

    min_accuracy: float
    max_macs: float
    max_flash: Optional[int] = None
    max_ram: Optional[int] = None

    def __post_init__(self) -> None:
        acc = _number("min_accuracy", self.min_accuracy)
        if not 0.0 < acc <= 1.0:
            raise ConstraintError(f"min_accuracy must be in (0, 1] (a fraction, e.g. 0.88), got {acc:g}")
        macs = _number("max_macs", self.max_macs)
        if macs <= 0:
            raise ConstraintError(f"max_macs must be > 0, got {macs:g}")
        object.__setattr__(self, "min_accuracy", acc)
        object.__setattr__(self, "max_macs", macs)
        for name in ("max_flash", "max_ram"):
            v = getattr(self, name)
            if v is not None:
                v = _number(name, v)
                if v < 1 or v != int(v):
                    raise ConstraintError(f"{name} must be a positive whole number of bytes, got {v:g}")
                object.__setattr__(self, name, int(v))

    @property
    def active(self) -> List[str]:
        """Names of the constraints in force, in G order: accuracy, macs, [flash], [ram]."""
        return ["accuracy", "macs"] + [n for n, v in (("flash", self.max_flash), ("ram", self.max_ram)) if v]

    def violations(self, accuracy: float, expected_macs: float, flash: Optional[float] = None,
                   ram: Optional[float] = None) -> Dict[str, Optional[float]]:
        """Normalised constraint values (pymoo convention: <= 0 means met), relative to each bound:
        accuracy (min_acc - acc) / min_acc, macs (E[MACs] - max) / max, flash and ram likewise."""
        g: Dict[str, Optional[float]] = {
            "accuracy": (self.min_accuracy - accuracy) / self.min_accuracy,
            "macs": (expected_macs - self.max_macs) / self.max_macs, "flash": None, "ram": None}
        for name, bound, value in (("flash", self.max_flash, flash), ("ram", self.max_ram, ram)):
            if bound:
                if value is None:
                    raise ConstraintError(f"constraint max_{name} is set but the {name} size was not measured")
                g[name] = (float(value) - bound) / bound
        return g

    def relaxed(self, accuracy_slack: float) -> "Constraints":
        """The same bounds with the accuracy floor lowered by `accuracy_slack` (the search-time floor)."""
        if not accuracy_slack:
            return self
        return replace(self, min_accuracy=max(1e-6, self.min_accuracy - float(accuracy_slack)))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Constraints":
        return cls(**{k: d.get(k) for k in ("min_accuracy", "max_macs", "max_flash", "max_ram")})


@dataclass(frozen=True)
class Budget:
    """Fidelity of the search: NSGA-II size, proxy training per candidate, final re-training.

    proxy_train / proxy_val: class-balanced training / validation subset sizes for candidate evaluation
    (None = whole split); epochs / head_epochs: the two `train_eenn` phases (backbone with CE, then the
    NACHOS loss on every exit). final_*: the same for re-training the admissible front; max_final caps
    how many front members are re-trained (spread evenly along the front by MACs; one member dropped
    after re-training is replaced by the most accurate one left).
    accuracy_slack: a short proxy training underestimates the accuracy a candidate reaches after the
    final training, so during the search the accuracy floor is lowered by this much (a fraction); the
    admissible set is then checked against the true floor after re-training (misses are dropped).
    """

    name: str = "custom"
    population: int = 8
    generations: int = 3
    proxy_train: Optional[int] = 6000
    proxy_val: Optional[int] = 2000
    epochs: int = 1
    head_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 3e-3
    final_train: Optional[int] = 20000
    final_epochs: int = 2
    final_head_epochs: int = 2
    max_final: int = 4
    accuracy_slack: float = 0.0

    def __post_init__(self) -> None:
        for f in ("population", "generations", "batch_size", "max_final"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConstraintError(f"budget {f} must be a whole number >= 1, got {v!r}")
        if self.population < 2:
            raise ConstraintError("budget population must be >= 2 (NSGA-II needs pairs to mate)")
        for f in ("proxy_train", "proxy_val", "final_train"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 10):
                raise ConstraintError(f"budget {f} must be None (whole split) or >= 10 samples, got {v!r}")
        for f in ("epochs", "head_epochs", "final_epochs", "final_head_epochs"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConstraintError(f"budget {f} must be a whole number >= 0, got {v!r}")
        if self.epochs + self.head_epochs < 1 or self.final_epochs + self.final_head_epochs < 1:
            raise ConstraintError("a budget must train for at least one epoch (search and final)")
        if not _number("learning_rate", self.learning_rate) > 0:
            raise ConstraintError("budget learning_rate must be > 0")
        if not 0.0 <= _number("accuracy_slack", self.accuracy_slack) < 1.0:
            raise ConstraintError(f"budget accuracy_slack must be in [0, 1), got {self.accuracy_slack!r}")

    @classmethod
    def preset(cls, name: str) -> "Budget":
        """`quick` (< 10 min on 2 CPU cores for Fashion-MNIST), `standard`, `thorough`."""
        try:
            return BUDGETS[name]
        except KeyError:
            raise ConstraintError(f"unknown budget {name!r}; choose one of {', '.join(BUDGETS)}") from None

    @classmethod
    def resolve(cls, budget: Union[str, "Budget"], generations: Optional[int] = None,
                population: Optional[int] = None) -> "Budget":
        """A preset name or a Budget, with generations / population overridden when given."""
        b = cls.preset(budget) if isinstance(budget, str) else budget
        if not isinstance(b, Budget):
            raise ConstraintError(f"budget must be a preset name or a Budget, got {budget!r}")
        changes = {k: v for k, v in (("generations", generations), ("population", population)) if v is not None}
        return replace(b, **changes) if changes else b

    def with_(self, **changes) -> "Budget":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Budget":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def evaluation_settings(self) -> Dict[str, Any]:
        """The fields a candidate's result depends on (population and generations do not)."""
        d = self.to_dict()
        for k in ("name", "population", "generations"):
            d.pop(k)
        return d


BUDGETS: Dict[str, Budget] = {
    "quick": Budget("quick", population=4, generations=2, proxy_train=3000, proxy_val=1000, epochs=0,
                    head_epochs=2, final_train=None, final_epochs=0, final_head_epochs=2, max_final=1,
                    accuracy_slack=0.15),
    "standard": Budget("standard", population=16, generations=8, proxy_train=15000, proxy_val=None, epochs=2,
                       head_epochs=3, final_train=None, final_epochs=5, final_head_epochs=5, max_final=8),
    "thorough": Budget("thorough", population=24, generations=15, proxy_train=None, proxy_val=None, epochs=4,
                       head_epochs=6, final_train=None, final_epochs=10, final_head_epochs=10, max_final=12),
}


@dataclass(frozen=True)
class DataRef:
    """A dataset by name and path, so that every worker process rebuilds it locally (no arrays shipped)."""

    name: str = "fashion_mnist"
    path: Optional[str] = None
    val_fraction: float = 0.1
    seed: int = 0

    def load(self):
        """The `nachos_tf.data.Dataset` (cached per process)."""
        key = ("ref", self)
        if key not in _WORKER_CACHE:
            from .data import load

            _WORKER_CACHE[key] = load(self.name, self.path, self.val_fraction, self.seed)
        return _WORKER_CACHE[key]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


_WORKER_CACHE: Dict[Any, Any] = {}   # per process: datasets and proxy subsets already built


# --------------------------------------------------------------------------------------------------
# candidate evaluation (the low-fidelity proxy)
# --------------------------------------------------------------------------------------------------

def candidate_seed(run_seed: int, genome: Genome) -> int:
    """Training seed of a candidate: a stable hash of (run seed, genome key), the same in every process."""
    h = hashlib.sha256(f"{int(run_seed)}|{genome.key()}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def proxy_subset(data, budget: Budget, seed: int):
    """The class-balanced train / validation subsets candidates are trained and calibrated on (no test)."""
    return data.subset(train=budget.proxy_train, val=budget.proxy_val, test=0, seed=int(seed))


def default_loss(constraints: Constraints):
    """The NACHOS loss with the search's MAC budget."""
    from .losses import LossConfig

    return LossConfig.nachos(mac_budget=constraints.max_macs)


def exit_rule(space: SearchSpace) -> str:
    """Exit rule of the space's EENNs: the learned confidence (NACHOS) when it has one, else max-softmax."""
    return "confidence" if space.confidence and space.n_exit_points > 0 else "max_softmax"


def build_candidate(space: SearchSpace, genome: Genome, seed: int):
    """Build a genome with weights initialised from `seed`; returns (model, staged exit MACs)."""
    import keras

    from .builder import build_eenn
    from .macs import profile_macs

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)            # weight initialisation happens at build time
    model = build_eenn(space, genome)
    return model, [int(m) for m in profile_macs(model).exit_macs]


def train_built(model, exit_macs: Sequence[float], data, loss, seed: int, epochs: int, head_epochs: int,
                batch_size: int, learning_rate: float) -> float:
    """Train a built EENN in place on `data`'s train split (deterministic for `seed`); returns seconds."""
    from .train import train_eenn

    set_bn_momentum(model, math.ceil(len(data.y_train) / batch_size) * (epochs + head_epochs))
    # no validation split during proxy training: it would only be logged, and costs time
    train_data = types.SimpleNamespace(x_train=data.x_train, y_train=data.y_train, num_classes=data.num_classes)
    hist = train_eenn(model, train_data, loss=loss, epochs=epochs, head_epochs=head_epochs, batch_size=batch_size,
                      learning_rate=learning_rate, exit_macs=list(exit_macs), seed=seed, verbose=0)
    return float(hist.seconds)


def train_candidate(space: SearchSpace, genome: Genome, data, loss, seed: int, epochs: int, head_epochs: int,
                    batch_size: int, learning_rate: float):
    """Build and train a genome deterministically for `seed`; returns (model, staged exit MACs, seconds)."""
    model, exit_macs = build_candidate(space, genome, seed)
    seconds = train_built(model, exit_macs, data, loss, seed, epochs, head_epochs, batch_size, learning_rate)
    return model, exit_macs, seconds


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


COST_MODELS = ("staged", "paper")


def believed_costs(model, exit_macs: Sequence[float], cost_model: str) -> List[float]:
    """Per-exit costs that training and calibration use: "staged" (ours, what the device pays: backbone
    plus every head up to the exit) or "paper" (NACHOS: backbone plus the exit's own head only)."""
    if cost_model == "staged":
        return [float(m) for m in exit_macs]
    if cost_model == "paper":
        from .macs import paper_exit_macs, profile_macs

        return [float(m) for m in paper_exit_macs(profile_macs(model))]
    raise ConstraintError(f"unknown cost model {cost_model!r}; choose one of {', '.join(COST_MODELS)}")


def figures(sim) -> Dict[str, Any]:
    """The {accuracy, exit_rates, expected_macs} triple of a `policy.SimResult`."""
    return {"accuracy": float(sim.accuracy), "exit_rates": [float(r) for r in sim.exit_rates],
            "expected_macs": float(sim.expected_macs)}


def calibrate_model(model, exit_macs: Sequence[float], x, y, rule: str, constraints: Constraints,
                    method: str = "pareto"):
    """Thresholds on (x, y) by `policy.calibrate`: with "pareto" (ours) the most accurate admissible
    point of the exact trade-off curve; "grid" is the NACHOS grid + repair (for ablations)."""
    from .policy import calibrate
    from .train import predict_exits

    probs, confs = predict_exits(model, x)
    return calibrate(probs, y, exit_macs, rule=rule, confidences=confs if rule == "confidence" else None,
                     max_macs=constraints.max_macs, min_accuracy=constraints.min_accuracy, method=method)


def int8_measure(model, x_repr, need_ram: bool) -> Dict[str, Optional[int]]:
    """The int8 staged export's flash bytes (sum of the stage .tflite files) and, if `need_ram`, the
    TFLM arena bytes the exported runner allocates (measured on the micro interpreter).

    tflite_export is imported lazily: the search depends on it only when max_flash / max_ram is set.
    """
    from nachos_tf import naming
    from tflite_export.c_export import convert_eenn

    n_early = len(naming.exit_layout(model)) - 1
    manifest, blobs = convert_eenn(model, x_repr, "max_softmax", [0.5] * n_early,
                                   num_samples=min(64, len(x_repr)), measure_arena=need_ram)
    return {"flash_bytes": int(sum(len(b) for b in blobs)),
            "arena_bytes": int(manifest["arena_bytes"]) if need_ram else None}


def evaluate_candidate(genome: Genome, space: SearchSpace, data, constraints: Constraints, budget: Budget,
                       seed: int, loss=None, *, calibration: str = "pareto",
                       cost_model: str = "staged") -> Dict[str, Any]:
    """Proxy evaluation of one genome: train on `data`'s train split, calibrate on its val split.

    Returns the archive fields: metrics (accuracy, error, expected_macs, exit_rates, params, macs, int8
    sizes), normalised constraint values, feasibility, rule, thresholds, exit_macs, seconds. Deterministic
    for (genome, seed); replace this function to change the evaluator (e.g. a supernet).
    calibration / cost_model: "grid" / "paper" reproduce the NACHOS paper's choices for ablations; the
    search then optimises what that evaluator believes (its expected MACs use `believed_costs`).
    """
    from .policy import thresholds_to_json

    t0 = time.time()
    cseed = candidate_seed(seed, genome)
    loss = default_loss(constraints) if loss is None else loss
    model, exit_macs = build_candidate(space, genome, cseed)
    if exit_macs[0] > constraints.max_macs:      # every image pays for exit 0: provably over budget
        return _pruned(exit_macs, model, constraints, cseed, time.time() - t0)
    costs = believed_costs(model, exit_macs, cost_model)
    train_s = train_built(model, costs, data, loss, cseed, budget.epochs, budget.head_epochs,
                          budget.batch_size, budget.learning_rate)
    rule = exit_rule(space)
    cal = calibrate_model(model, costs, data.x_val, data.y_val, rule, constraints, calibration)
    sizes = {"flash_bytes": None, "arena_bytes": None}
    if constraints.max_flash or constraints.max_ram:
        sizes = int8_measure(model, data.x_train[:64], need_ram=bool(constraints.max_ram))
    sim = cal.result
    g = constraints.violations(sim.accuracy, sim.expected_macs, sizes["flash_bytes"], sizes["arena_bytes"])
    metrics = dict(figures(sim), error=1.0 - float(sim.accuracy), total_macs=int(exit_macs[-1]),
                   params=int(model.count_params()), **sizes)
    return {"seed": cseed, "metrics": metrics, "constraints": g,
            "feasible": all(v <= 0 for v in g.values() if v is not None), "rule": rule,
            "thresholds": thresholds_to_json(cal.thresholds), "exit_macs": [float(m) for m in exit_macs],
            "train_seconds": round(train_s, 3), "seconds": round(time.time() - t0, 3)}


def _pruned(exit_macs: Sequence[float], model, constraints: Constraints, cseed: int,
            seconds: float) -> Dict[str, Any]:
    """Archive fields of a candidate not trained because its first exit alone exceeds max_macs.

    Its expected MACs are at least that staged cost whatever the thresholds, so it is infeasible;
    objectives: error 1 (not measured) and that lower bound; accuracy counts as not shown.
    """
    g = {"accuracy": 1.0, "macs": (float(exit_macs[0]) - constraints.max_macs) / constraints.max_macs,
         "flash": None if constraints.max_flash is None else 0.0, "ram": None if constraints.max_ram is None else 0.0}
    metrics = {"accuracy": None, "error": 1.0, "expected_macs": float(exit_macs[0]), "exit_rates": None,
               "total_macs": int(exit_macs[-1]), "params": int(model.count_params()), "flash_bytes": None,
               "arena_bytes": None}
    return {"seed": cseed, "metrics": metrics, "constraints": g, "feasible": False, "rule": None, "thresholds": [],
            "exit_macs": [float(m) for m in exit_macs], "train_seconds": 0.0, "seconds": round(seconds, 3),
            "pruned": f"first exit alone costs {_human(exit_macs[0])} > max MACs {_human(constraints.max_macs)}"}


def _failed(exc: BaseException, constraints: Constraints, seconds: float) -> Dict[str, Any]:
    """Archive fields of a candidate whose evaluation raised: worst objectives, violated constraints."""
    g = {"accuracy": 1.0, "macs": 1.0, "flash": 1.0 if constraints.max_flash else None,
         "ram": 1.0 if constraints.max_ram else None}
    return {"seed": None, "metrics": {"accuracy": None, "error": 1.0, "expected_macs": 2.0 * constraints.max_macs,
                                      "exit_rates": [], "total_macs": None, "params": None,
                                      "flash_bytes": None, "arena_bytes": None},
            "constraints": g, "feasible": False, "rule": None, "thresholds": [], "exit_macs": [],
            "error": f"{type(exc).__name__}: {str(exc)[:500]}", "train_seconds": 0.0, "seconds": round(seconds, 3)}


# --------------------------------------------------------------------------------------------------
# evaluation backends: this process, local processes, a Dask cluster
# --------------------------------------------------------------------------------------------------

Evaluator = Callable[..., Dict[str, Any]]


@dataclass
class _Task:
    """What a backend needs to evaluate one candidate (small: no arrays)."""

    index: int
    genome: Dict[str, Any]
    space: SearchSpace
    constraints: Constraints
    budget: Budget
    seed: int
    loss: Any
    evaluator: Evaluator
    threads: int


def _run_task(task: _Task, data) -> Tuple[int, Dict[str, Any]]:
    pin_threads(task.threads)
    t0 = time.time()
    try:
        body = task.evaluator(Genome.from_dict(task.genome), task.space, data, task.constraints, task.budget,
                              task.seed, loss=task.loss)
    except ConstraintError:
        raise                      # a setting is wrong: stop the search, do not blame the candidate
    except Exception as exc:       # noqa: BLE001 - one broken candidate must not end a long search
        body = _failed(exc, task.constraints, time.time() - t0)
    return task.index, dict(body, threads=task.threads)


def default_threads() -> int:
    """TensorFlow's thread count in this process: the configured one, else one per usable CPU."""
    import tensorflow as tf

    n = tf.config.threading.get_intra_op_parallelism_threads()
    if n:
        return int(n)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pin_threads(threads: int) -> None:
    """Run TensorFlow with exactly `threads` intra-/inter-op threads in this process.

    Training results depend on the thread count (parallel reductions), so every process evaluating
    candidates of one run uses the run's count: that is what makes a worker's or a resumed run's result
    equal to this one's. Raises ConstraintError if TensorFlow already started with another count.
    """
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        if default_threads() != threads:
            raise ConstraintError(
                f"TensorFlow already runs with {default_threads()} threads in this process; this run needs "
                f"{threads} for reproducible results: pass threads={default_threads()} to a new run, or "
                "resume it in a fresh process") from None


def _worker_data(source, budget: Budget, seed: int):
    """Proxy data in a worker: a DataRef is loaded (once per process), a Dataset subset used as is."""
    if isinstance(source, DataRef):
        key = ("proxy", source, budget.proxy_train, budget.proxy_val, int(seed))
        if key not in _WORKER_CACHE:
            _WORKER_CACHE[key] = proxy_subset(source.load(), budget, seed)
        return _WORKER_CACHE[key]
    return source


def _exit_with_parent(parent_pid: int, every: float = 2.0) -> None:
    """End this worker process when the search process is gone (e.g. kill -9), instead of idling on."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="nachos-parent-watch", daemon=True).start()


def _process_init(source, budget: Budget, seed: int, threads: int, parent_pid: int) -> None:
    _exit_with_parent(parent_pid)
    pin_threads(threads)
    _WORKER_CACHE["process_data"] = _worker_data(source, budget, seed)


def _process_run(task: _Task) -> Tuple[int, Dict[str, Any]]:
    return _run_task(task, _WORKER_CACHE["process_data"])


def _dask_run(task: _Task, source) -> Tuple[int, Dict[str, Any]]:
    return _run_task(task, _worker_data(source, task.budget, task.seed))


class LocalBackend:
    """Evaluates candidates one after another in this process."""

    workers = 1

    def __init__(self, data):
        self.data = data

    def run(self, tasks: Sequence[_Task]) -> Iterator[Tuple[int, Dict[str, Any]]]:
        for t in tasks:
            yield _run_task(t, self.data)

    def close(self) -> None:
        pass


class ProcessBackend:
    """Evaluates candidates in N local processes (spawned; each builds its proxy data once)."""

    def __init__(self, workers: int, source, budget: Budget, seed: int, threads: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                        initializer=_process_init,
                                        initargs=(source, budget, seed, threads, os.getpid()))

    def run(self, tasks: Sequence[_Task]) -> Iterator[Tuple[int, Dict[str, Any]]]:
        from concurrent.futures import as_completed

        futures = [self.pool.submit(_process_run, t) for t in tasks]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)      # idempotent


class DaskBackend:
    """Sends candidates to an existing Dask distributed cluster; the data goes to each worker once
    (a DataRef is rebuilt on the worker, a Dataset subset is scattered with broadcast)."""

    def __init__(self, address: str, source):
        try:
            from dask.distributed import Client
        except ImportError:
            raise NachosError("dask_scheduler needs the 'distributed' package (pip install distributed)") from None
        try:
            self.client = Client(address, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise NachosError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self.source = source if isinstance(source, DataRef) else self.client.scatter(source, broadcast=True)

    def run(self, tasks: Sequence[_Task]) -> Iterator[Tuple[int, Dict[str, Any]]]:
        from dask.distributed import as_completed

        futures = [self.client.submit(_dask_run, t, self.source, pure=False) for t in tasks]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        if self.client.status not in ("closed", "closing"):
            self.client.close()


# --------------------------------------------------------------------------------------------------
# the pool: archive look-up, dispatch, append
# --------------------------------------------------------------------------------------------------

class CandidatePool:
    """Answers batches of genomes: from the archive when already evaluated, else through the backend.

    Candidate ids are given in the order genomes are first asked for (c0000, c0001, ...), so a replayed
    run gives every candidate the same id. Each new result is appended to the archive as it finishes.
    """

    def __init__(self, space: SearchSpace, constraints: Constraints, budget: Budget, seed: int, loss,
                 archive: R.Archive, records: Sequence[Dict[str, Any]], backend, evaluator: Evaluator,
                 progress: Progress = None, threads: int = 1):
        self.space, self.constraints, self.budget, self.seed, self.loss = space, constraints, budget, seed, loss
        self.progress, self.threads = progress, threads
        self.archive, self.backend, self.evaluator = archive, backend, evaluator
        self.by_key: Dict[str, Dict[str, Any]] = {}
        for r in records:
            if r.get("stage", R.STAGE_SEARCH) == R.STAGE_SEARCH:
                self.by_key[Genome.from_dict(r["genome"]).key()] = r
        self.archived_keys = set(self.by_key)
        self.used_ids = {str(r["id"]) for r in self.by_key.values()}
        self.n_seen = 0           # distinct genomes asked for in this run (archived or not)
        self.seen: set = set()
        self.replayed = 0         # answers taken from the archive of an earlier (interrupted) run
        self.evaluated = 0        # candidates evaluated in this process run
        self.eval_seconds = 0.0

    @property
    def records(self) -> List[Dict[str, Any]]:
        """Every search-stage record known (archived and new)."""
        return list(self.by_key.values())

    def _new_id(self, key: str) -> str:
        cid = f"c{self.n_seen - 1:04d}"
        if cid in self.used_ids:   # only when an archive from a different trajectory is reused
            cid = f"{cid}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"
        self.used_ids.add(cid)
        return cid

    def evaluate(self, genomes: Sequence[Genome]) -> List[Dict[str, Any]]:
        """One record per genome (in order); each distinct new genome is evaluated once."""
        tasks, new = [], {}
        for g in genomes:
            key = g.key()
            if key not in self.seen:
                self.seen.add(key)
                self.n_seen += 1
                if key in self.by_key:
                    self.replayed += key in self.archived_keys
                elif key not in new:
                    new[key] = self._new_id(key)
                    tasks.append(_Task(len(tasks), g.to_dict(), self.space, self.constraints, self.budget,
                                       self.seed, self.loss, self.evaluator, self.threads))
        keys = list(new)
        for index, body in self.backend.run(tasks):
            key = keys[index]
            rec = dict(body, id=new[key], stage=R.STAGE_SEARCH, genome=tasks[index].genome,
                       time=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
            self.archive.append(rec)
            self.by_key[key] = rec
            self.evaluated += 1
            self.eval_seconds += float(body.get("seconds", 0.0))
            if self.progress:
                self.progress(_candidate_line(rec))
        return [self.by_key[g.key()] for g in genomes]


def _candidate_line(rec: Mapping[str, Any]) -> str:
    m = rec["metrics"]
    if rec.get("error"):
        return f"  {rec['id']}: failed ({rec['error'][:120]})"
    if rec.get("pruned"):
        return f"  {rec['id']}: not trained: {rec['pruned']}"
    state = "feasible" if rec["feasible"] else "infeasible"
    return (f"  {rec['id']}: val acc {m['accuracy']:.4f}, E[MACs] {_human(m['expected_macs'])} "
            f"(full {_human(rec['exit_macs'][-1])}, {len(rec['exit_macs'])} exits), {state}, "
            f"{_fmt_time(float(rec.get('seconds', 0.0)))}")


# --------------------------------------------------------------------------------------------------
# pymoo problem, repair, progress
# --------------------------------------------------------------------------------------------------

def _objectives(rec: Mapping[str, Any], constraints: Constraints) -> Tuple[List[float], List[float]]:
    """(F, G) of an archive record; F = [val error, expected MACs], G = active constraints (<= 0 met)."""
    m = rec["metrics"]
    g = rec["constraints"]
    return [float(m["error"]), float(m["expected_macs"])], [float(g[n]) for n in constraints.active]


try:
    from pymoo.core.problem import Problem as _PymooProblem
    from pymoo.core.repair import Repair as _PymooRepair
    from pymoo.core.callback import Callback as _PymooCallback
except ImportError:  # pragma: no cover - pymoo is a hard dependency
    _PymooProblem = _PymooRepair = _PymooCallback = object


class EENNProblem(_PymooProblem):
    """pymoo problem over the space's integer encoding: minimise (val error, expected MACs) s.t. G <= 0.

    G is one column per active constraint (accuracy, macs, [flash], [ram]), normalised by its bound.
    """

    def __init__(self, space: SearchSpace, constraints: Constraints, pool: CandidatePool):
        super().__init__(n_var=space.n_var, n_obj=2, n_ieq_constr=len(constraints.active),
                         xl=space.xl, xu=space.xu, vtype=int)
        self.space, self.constraints, self.pool = space, constraints, pool

    def _evaluate(self, X, out, *args, **kwargs):
        genomes = [self.space.decode(x) for x in np.atleast_2d(X)]
        recs = self.pool.evaluate(genomes)
        FG = [_objectives(r, self.constraints) for r in recs]
        out["F"] = np.array([f for f, _ in FG], dtype=float)
        out["G"] = np.array([g for _, g in FG], dtype=float)


class GenomeRepair(_PymooRepair):
    """Maps every vector to its genome's canonical encoding (round, clip, space.repair), so equal
    architectures are equal vectors and pymoo's duplicate elimination sees them."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        X = np.atleast_2d(X)
        return np.array([self.space.encode(self.space.decode(x)) for x in X], dtype=int).reshape(X.shape)


def _human(m: float) -> str:
    from .macs import human

    return human(m)


def _fmt_time(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class ProgressCallback(_PymooCallback):
    """After every generation: candidates evaluated, feasible count, admissible-front size, hypervolume,
    elapsed time and ETA (search plus final re-training), through `progress`."""

    def __init__(self, pool: CandidatePool, constraints: Constraints, budget: Budget, progress: Progress,
                 workers: int, max_seconds: Optional[float] = None):
        super().__init__()
        self.pool, self.constraints, self.budget, self.progress, self.workers = (
            pool, constraints, budget, progress, workers)
        self.max_seconds = max_seconds
        self.t0 = time.time()
        self.lines: List[Dict[str, Any]] = []

    def eta(self, gen: int) -> float:
        per = self.pool.eval_seconds / self.pool.evaluated if self.pool.evaluated else 0.0
        remaining = self.budget.population * max(0, self.budget.generations - gen)
        search_left = per * remaining / max(1, self.workers)
        if self.max_seconds is not None:   # the search also stops at the first generation end past the limit
            search_left = min(search_left, max(0.0, self.max_seconds - (time.time() - self.t0))
                              + per * self.budget.population / max(1, self.workers))
        b = self.budget
        scale = ((b.final_train or 50000) * (b.final_epochs + b.final_head_epochs)
                 / max(1, (b.proxy_train or 50000) * (b.epochs + b.head_epochs)))
        n_final = min(b.max_final, max(1, len(R.admissible_front(self.pool.records))))
        # about half of a proxy evaluation is fixed cost (graph tracing, calibration), half scales with data
        return search_left + per * (0.5 + 0.5 * scale) * n_final

    def notify(self, algorithm) -> None:
        gen = int(algorithm.n_iter or 0)
        recs = self.pool.records
        cons = self.constraints.to_dict()
        stats = {"generation": gen, "generations": self.budget.generations, "evaluated": len(recs),
                 "new": self.pool.evaluated, "replayed": self.pool.replayed,
                 "pruned": sum(1 for r in recs if r.get("pruned")),
                 "feasible": sum(1 for r in recs if r.get("feasible")),
                 "front": len(R.admissible_front(recs)), "hypervolume": R.hypervolume(recs, cons),
                 "elapsed": time.time() - self.t0, "eta": self.eta(gen)}
        self.lines.append(stats)
        if self.progress:
            self.progress(f"gen {gen}/{stats['generations']}: {stats['evaluated']} candidates "
                          f"({stats['new']} new, {stats['replayed']} from archive, {stats['pruned']} over budget "
                          f"untrained), {stats['feasible']} "
                          f"feasible, admissible front {stats['front']}, hypervolume {stats['hypervolume']:.4f}, "
                          f"elapsed {_fmt_time(stats['elapsed'])}, ETA {_fmt_time(stats['eta'])}")


ALGORITHMS = ("nsga2", "random")


def make_algorithm(space: SearchSpace, population: int, name: str = "nsga2"):
    """The pymoo algorithm of a search.

    "nsga2": NSGA-II with pymoo's integer operators (random integer sampling, SBX and PM with rounding)
    and the genome repair; duplicates eliminated. "random": pymoo's RandomSearch drawing `population`
    random integer vectors per generation (the genome repair maps them into the space), the baseline
    a guided search must beat.
    """
    from pymoo.operators.sampling.rnd import IntegerRandomSampling

    if name == "random":
        from pymoo.algorithms.soo.nonconvex.random_search import RandomSearch
        from pymoo.util.display.multi import MultiObjectiveOutput

        return RandomSearch(n_points_per_iteration=population, sampling=IntegerRandomSampling(),
                            output=MultiObjectiveOutput())
    if name != "nsga2":
        raise ConstraintError(f"unknown search algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair

    return NSGA2(pop_size=population, sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
                 mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                 repair=GenomeRepair(space), eliminate_duplicates=True)


def make_termination(generations: int, max_seconds: Optional[float] = None):
    """pymoo termination: after `generations`, or once `max_seconds` of search have passed (checked
    between generations, so the generation running at the deadline finishes), whichever comes first."""
    from pymoo.termination.max_gen import MaximumGenerationTermination

    if max_seconds is None:
        return MaximumGenerationTermination(generations)
    from pymoo.termination.collection import TerminationCollection
    from pymoo.termination.max_time import TimeBasedTermination

    return TerminationCollection(MaximumGenerationTermination(generations), TimeBasedTermination(float(max_seconds)))


def _algorithm_config(name: str, budget: Budget, max_seconds: Optional[float]) -> Dict[str, Any]:
    if name == "random":
        algo = {"name": "RandomSearch", "points_per_generation": budget.population,
                "sampling": "IntegerRandomSampling", "repair": "GenomeRepair (in decoding)"}
    else:
        algo = {"name": "NSGA2", "population": budget.population, "sampling": "IntegerRandomSampling",
                "crossover": "SBX(prob=0.9, eta=3) + rounding", "mutation": "PM(prob=1.0, eta=3) + rounding",
                "repair": "GenomeRepair", "eliminate_duplicates": True}
    return dict(algo, generations=budget.generations, max_seconds=max_seconds)


# --------------------------------------------------------------------------------------------------
# run directory set-up
# --------------------------------------------------------------------------------------------------

def _versions() -> Dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("nachos-tf", "tensorflow", "tensorflow-cpu", "keras", "pymoo", "numpy", "dask", "distributed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _data_info(data, ref: Optional[DataRef]) -> Dict[str, Any]:
    return {"name": getattr(data, "name", "?"), "source": getattr(data, "source", ""),
            "ref": None if ref is None else ref.to_dict(), "n_train": int(len(data.y_train)),
            "n_val": int(len(data.y_val)), "n_test": int(len(data.y_test)),
            "input_shape": [int(s) for s in data.input_shape], "num_classes": int(data.num_classes)}


def _fingerprint(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The settings a candidate's archived result depends on (must match to resume)."""
    data = dict(config["data"])
    data.pop("ref", None)
    data.pop("source", None)
    return {"seed": config["seed"], "constraints": config["constraints"], "space": config["space"],
            "data": data, "loss": config["loss"], "evaluation": config["budget_evaluation"],
            "evaluator": config["evaluator"], "finalizer": config["finalizer"], "threads": config.get("threads"),
            "algorithm": config.get("algorithm", {}).get("name", "NSGA2")}


def _prepare_run_dir(out_dir: Optional[Union[str, os.PathLike]], resume: bool,
                     config: Dict[str, Any]) -> Tuple[Path, R.Archive, List[Dict[str, Any]]]:
    """Create (or, to resume, check) the run folder; write config.json; open the archive."""
    if out_dir is None:
        if resume:
            raise RunDirError("resume=True needs out_dir (the folder of the interrupted run)")
        import tempfile

        out_dir = tempfile.mkdtemp(prefix="nachos-run-")
    d = Path(out_dir).expanduser()
    archive = R.Archive(d / R.ARCHIVE)
    if resume:
        if not d.is_dir():
            raise RunDirError(f"cannot resume: run folder {d} does not exist")
        old = R.read_json(d / R.CONFIG, "the settings of the run to resume")
        try:
            same = _fingerprint(old) == _fingerprint(config)
        except (KeyError, TypeError):
            raise RunDirError(f"{d / R.CONFIG} is not a nachos-tf search config") from None
        if not same:
            a, b = _fingerprint(old), _fingerprint(config)
            diff = sorted(k for k in a if a[k] != b.get(k))
            raise RunDirError(f"cannot resume {d}: its settings differ in {', '.join(diff)}; resume with the "
                              "same settings or start a new --out folder")
        records = archive.open()
        R._check_records(records, archive.path)
    else:
        if d.exists() and any(d.iterdir()):
            raise RunDirError(f"{d} is not empty; choose a new folder, or resume the run in it "
                              "(resume=True / --resume)")
        try:
            (d / R.MODELS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create run folder {d}: {exc.strerror or exc}") from None
        records = []
    (d / R.MODELS).mkdir(parents=True, exist_ok=True)
    config = dict(config, resumed=bool(resume))
    R.write_json(d / R.CONFIG, config)
    return d, archive, records


def _callable_name(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _make_config(space: SearchSpace, data, ref: Optional[DataRef], constraints: Constraints, budget: Budget,
                 seed: int, loss, evaluator: Evaluator, finalizer: Callable, workers: int,
                 dask_scheduler: Optional[str], threads: int, algorithm: str = "nsga2",
                 max_seconds: Optional[float] = None) -> Dict[str, Any]:
    return {"seed": int(seed), "constraints": constraints.to_dict(),
            "search_constraints": constraints.relaxed(budget.accuracy_slack).to_dict(), "budget": budget.to_dict(),
            "budget_evaluation": budget.evaluation_settings(), "space": space.to_dict(),
            "data": _data_info(data, ref), "loss": loss.to_dict(), "rule": exit_rule(space),
            "evaluator": _callable_name(evaluator), "finalizer": _callable_name(finalizer),
            "algorithm": _algorithm_config(algorithm, budget, max_seconds),
            "calibration": {"method": "pareto"}, "workers": int(workers), "dask_scheduler": dask_scheduler,
            "threads": int(threads),
            "versions": _versions(), "argv": list(sys.argv),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


# --------------------------------------------------------------------------------------------------
# admissible set: re-training, test figures, saving
# --------------------------------------------------------------------------------------------------

def spread(front: Sequence[Mapping[str, Any]], k: int) -> List[Mapping[str, Any]]:
    """At most k members of a front sorted by MACs, evenly spread (both ends kept; k = 1: the most accurate)."""
    if len(front) <= k:
        return list(front)
    if k == 1:
        return [min(front, key=lambda r: (r["metrics"]["error"], r["metrics"]["expected_macs"]))]
    idx = sorted({int(round(i)) for i in np.linspace(0, len(front) - 1, k)})
    return [front[i] for i in idx]


def finalize_candidate(rec: Mapping[str, Any], space: SearchSpace, data, constraints: Constraints,
                       budget: Budget, seed: int, loss, out_dir: Path, *, calibration: str = "pareto",
                       cost_model: str = "staged") -> Dict[str, Any]:
    """Re-train a front member with the final budget, re-calibrate on validation, measure on test, save it.

    Returns its 'final' archive record; ``dropped`` holds the reason when validation no longer meets
    the constraints (no model is saved then). calibration / cost_model as in `evaluate_candidate`:
    training and threshold choice use the believed costs, but every reported figure and the
    constraint check use the staged costs the device pays.
    """
    from .policy import simulate, thresholds_to_json
    from .train import predict_exits

    t0 = time.time()
    genome = Genome.from_dict(rec["genome"])
    cseed = candidate_seed(seed, genome)
    train_data = data.subset(train=budget.final_train, val=0, test=0, seed=int(seed)) \
        if budget.final_train is not None else data
    model, exit_macs = build_candidate(space, genome, cseed)
    costs = believed_costs(model, exit_macs, cost_model)
    train_s = train_built(model, costs, train_data, loss, cseed, budget.final_epochs, budget.final_head_epochs,
                          budget.batch_size, budget.learning_rate)
    rule = exit_rule(space)
    cal = calibrate_model(model, costs, data.x_val, data.y_val, rule, constraints, calibration)
    if cost_model != "staged":             # what the device pays at the chosen thresholds
        pv, cv = predict_exits(model, data.x_val)
        cal.result = simulate(pv, data.y_val, cal.thresholds, exit_macs, rule, cv if rule == "confidence" else None)
    probs, confs = predict_exits(model, data.x_test)
    test = simulate(probs, data.y_test, cal.thresholds, exit_macs, rule, confs if rule == "confidence" else None)
    sizes = {"flash_bytes": None, "arena_bytes": None}
    if constraints.max_flash or constraints.max_ram:
        sizes = int8_measure(model, data.x_train[:64], need_ram=bool(constraints.max_ram))
    g = constraints.violations(cal.result.accuracy, cal.result.expected_macs, sizes["flash_bytes"],
                               sizes["arena_bytes"])
    failed = [n for n, v in g.items() if v is not None and v > 0]
    model_rel = f"{R.MODELS}/{rec['id']}.keras"
    out = {"id": rec["id"], "stage": R.STAGE_FINAL, "genome": rec["genome"], "seed": cseed, "rule": rule,
           "thresholds": thresholds_to_json(cal.thresholds), "exit_macs": [float(m) for m in exit_macs],
           "val": figures(cal.result), "test": figures(test), "int8": None, "constraints": g,
           "metrics": dict(figures(cal.result), error=1.0 - float(cal.result.accuracy), **sizes),
           "feasible": not failed, "model": None, "dropped": None,
           "search_metrics": {k: rec["metrics"][k] for k in ("accuracy", "expected_macs")},
           "train_seconds": round(train_s, 3)}
    if failed:
        out["dropped"] = "after re-training, validation misses " + _describe(out["metrics"], g, constraints, failed)
    else:
        path = out_dir / model_rel
        tmp = path.with_name(path.stem + ".tmp.keras")
        model.save(tmp)
        os.replace(tmp, path)
        out["model"] = model_rel
        out["int8"] = int8_figures(model, data, cal.thresholds, exit_macs, rule)
    out["seconds"] = round(time.time() - t0, 3)
    out["time"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return out


def int8_figures(model, data, thresholds, exit_macs, rule) -> Dict[str, Any]:
    """Test figures of the int8 staged export on the TFLM micro kernels (`tflite_export.tflm.evaluate_int8`,
    the code behind `nachos-tf evaluate`): accuracy, exit rates, expected MACs, arena and stage bytes.
    Calibrated on the same images as `nachos-tf export`, so an export of the solution reproduces them."""
    from tflite_export.from_run import representative_x
    from tflite_export.tflm import evaluate_int8

    r = evaluate_int8(model, representative_x(data.x_train), data.x_test, data.y_test, rule, thresholds, exit_macs)
    out = {k: r[k] for k in ("accuracy", "exit_rates", "expected_macs")}
    out.update(n=int(r.get("n", len(data.y_test))), arena_bytes=r.get("arena_bytes_total"),
               stage_bytes=r.get("stage_bytes"), runtime="tflite-micro")
    return out


def _describe(metrics: Mapping[str, Any], g: Mapping[str, Optional[float]], c: Constraints,
              names: Sequence[str]) -> str:
    parts = []
    for n in names:
        if n == "accuracy":
            parts.append(f"accuracy {metrics['accuracy']:.4f} < {c.min_accuracy:g} "
                         f"(short by {c.min_accuracy - metrics['accuracy']:.4f})")
        elif n == "macs":
            parts.append(f"expected MACs {_human(metrics['expected_macs'])} > {_human(c.max_macs)} "
                         f"(over by {100 * g['macs']:.1f}%)")
        elif n == "flash":
            parts.append(f"flash {metrics['flash_bytes']} B > {c.max_flash} B (over by {100 * g['flash']:.1f}%)")
        elif n == "ram":
            parts.append(f"RAM {metrics['arena_bytes']} B > {c.max_ram} B (over by {100 * g['ram']:.1f}%)")
    return "; ".join(parts)


def explain_no_admissible(records: Sequence[Mapping[str, Any]], c: Constraints,
                          target: Optional[Constraints] = None, k: int = 3) -> str:
    """Which constraint failed by how much for the closest candidates, and what to relax.

    `c` are the constraints the records were judged by (the search-time ones), `target` the user's.
    """
    ok = [r for r in records if not r.get("error") and not r.get("pruned")]
    slack = "" if target is None or target.min_accuracy == c.min_accuracy else (
        f" (the search floor is {target.min_accuracy:g} minus the budget's proxy accuracy_slack "
        f"{target.min_accuracy - c.min_accuracy:.3g})")
    lines = [f"no admissible solution: none of the {len(records)} evaluated candidates meets every constraint "
             f"(accuracy >= {c.min_accuracy:.4g}{slack}, expected MACs <= {_human(c.max_macs)}"
             + (f", flash <= {c.max_flash} B" if c.max_flash else "")
             + (f", RAM <= {c.max_ram} B" if c.max_ram else "") + ")."]
    if not ok:
        pruned = [r for r in records if r.get("pruned")]
        if pruned:
            low = min(r["metrics"]["expected_macs"] for r in pruned)
            lines.append(f"every trained candidate failed or was over budget at its first exit; the cheapest "
                         f"first exit found costs {_human(low)}: raise max MACs to >= {_human(math.ceil(low))}, "
                         "or search longer.")
        errs = sorted({str(r.get("error")) for r in records if r.get("error")})[:3]
        if errs:
            lines.append("evaluation errors: " + " | ".join(errs))
        return "\n".join(lines)
    viol = lambda r: sum(max(0.0, v) for v in r["constraints"].values() if v is not None)  # noqa: E731
    closest = sorted(ok, key=lambda r: (viol(r), r["metrics"]["error"], str(r["id"])))[:k]
    lines.append("closest candidates (validation, at their calibrated thresholds):")
    for r in closest:
        failed = [n for n, v in r["constraints"].items() if v is not None and v > 0]
        lines.append(f"  {r['id']}: " + _describe(r["metrics"], r["constraints"], c, failed))
    tips = []
    within_macs = [r for r in ok if r["constraints"]["macs"] <= 0]
    if within_macs:
        best = max(r["metrics"]["accuracy"] for r in within_macs)
        best += (target.min_accuracy - c.min_accuracy) if target is not None else 0.0
        tips.append(f"lower min accuracy to <= {math.floor(best * 1000) / 1000:.3f} (best accuracy found within "
                    f"the MAC budget{', plus the slack' if slack else ''})")
    within_acc = [r for r in ok if r["constraints"]["accuracy"] <= 0]
    if within_acc:
        cheapest = min(r["metrics"]["expected_macs"] for r in within_acc)
        tips.append(f"raise max MACs to >= {_human(math.ceil(cheapest))} (cheapest candidate reaching the accuracy)")
    if not tips:
        r = closest[0]["metrics"]
        tips.append(f"relax both: e.g. min accuracy <= {math.floor(r['accuracy'] * 1000) / 1000:.3f} and max MACs "
                    f">= {_human(math.ceil(r['expected_macs']))}")
    for n, bound in (("flash", c.max_flash), ("ram", c.max_ram)):
        if bound and all((r["constraints"].get(n) or 0) > 0 for r in ok):
            tips.append(f"raise max {n} (no candidate fits {bound} B)")
    tips.append("or search longer (a larger --budget, more --generations / --population)")
    lines.append("to relax: " + "; ".join(tips) + ".")
    return "\n".join(lines)


def _pareto_doc(constraints: Constraints, finals: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """pareto.json: the kept final records, non-dominated on (val error, val expected MACs)."""
    kept = [f for f in finals if not f.get("dropped")]
    front = R.admissible_front([dict(f, feasible=True) for f in kept])
    front_ids = {f["id"] for f in front}
    sols = [{"id": f["id"], "genome": f["genome"], "model": f["model"], "rule": f["rule"],
             "thresholds": f["thresholds"], "exit_macs": f["exit_macs"], "val": f["val"], "test": f["test"],
             "int8": f["int8"]} for f in kept if f["id"] in front_ids]
    sols.sort(key=lambda s: (s["val"]["expected_macs"], -s["val"]["accuracy"], s["id"]))
    return {"constraints": constraints.to_dict(), "solutions": sols}


def _final_stage(pool: CandidatePool, records: Sequence[Dict[str, Any]], space: SearchSpace, data,
                 constraints: Constraints, budget: Budget, seed: int, loss, out_dir: Path,
                 progress: Progress, finalizer: Callable) -> Dict[str, Any]:
    """Re-train the admissible front (reusing finished re-trainings from the archive); write pareto.json."""
    say = progress or (lambda s: None)
    front = R.admissible_front(pool.records)
    chosen = spread(front, budget.max_final)
    # reserves: if a member is dropped after re-training, one more (the most accurate left) is tried
    queue = chosen + sorted((r for r in front if r not in chosen),
                            key=lambda r: (r["metrics"]["error"], r["metrics"]["expected_macs"], str(r["id"])))
    done = {r["id"]: r for r in records if r.get("stage") == R.STAGE_FINAL}
    finals: List[Dict[str, Any]] = []
    if chosen:
        say(f"admissible front: {len(front)} candidates; re-training {len(chosen)} with the final budget "
            f"({budget.final_train or 'all'} samples, {budget.final_epochs}+{budget.final_head_epochs} epochs)")
    kept = 0
    for i, rec in enumerate(queue):
        if kept >= budget.max_final or i >= budget.max_final + 1:
            break
        tag = f"  [{i + 1}/{len(chosen)}]" if i < len(chosen) else "  [reserve]"
        prev = done.get(rec["id"])
        if prev and (prev.get("dropped") or (prev.get("model") and (out_dir / prev["model"]).exists())):
            fin = prev
            say(f"{tag} {rec['id']}: re-trained earlier (archive)")
        else:
            fin = finalizer(rec, space, data, constraints, budget, seed, loss, out_dir)
            pool.archive.append(fin)
            if fin["dropped"]:
                say(f"{tag} {rec['id']}: dropped: {fin['dropped']}")
            else:
                say(f"{tag} {rec['id']}: val acc {fin['val']['accuracy']:.4f}, "
                    f"E[MACs] {_human(fin['val']['expected_macs'])}; test acc {fin['test']['accuracy']:.4f}, "
                    f"E[MACs] {_human(fin['test']['expected_macs'])} ({_fmt_time(fin['seconds'])})")
        finals.append(fin)
        kept += not fin.get("dropped")
    doc = _pareto_doc(constraints, finals)
    kept = {f["id"] for f in finals if not f.get("dropped")}
    dominated = sorted(kept - {s["id"] for s in doc["solutions"]})
    if dominated:
        say(f"  not in the final Pareto set (dominated after re-training): {', '.join(dominated)}")
    R.write_json(out_dir / R.PARETO, doc)
    return doc


# --------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------

def _resolve_data(data) -> Tuple[Any, Optional[DataRef]]:
    """(Dataset, DataRef or None) from a Dataset, a DataRef, or a dataset name."""
    if isinstance(data, str):
        data = DataRef(data)
    if isinstance(data, DataRef):
        return data.load(), data
    for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "num_classes", "input_shape"):
        if not hasattr(data, f):
            raise ConstraintError(f"data must be a nachos_tf.data.Dataset, a DataRef or a dataset name; "
                                  f"{type(data).__name__} has no {f}")
    return data, None


def _make_backend(workers: int, dask_scheduler: Optional[str], proxy, ref: Optional[DataRef], budget: Budget,
                  seed: int, threads: int):
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConstraintError(f"workers must be a whole number >= 1, got {workers!r}")
    if dask_scheduler:
        return DaskBackend(dask_scheduler, ref if ref is not None else proxy)
    if workers > 1:
        return ProcessBackend(int(workers), ref if ref is not None else proxy, budget, seed, threads)
    return LocalBackend(proxy)


def _check_space(space: SearchSpace, data) -> None:
    if not isinstance(space, SearchSpace):
        raise ConstraintError(f"space must be a nachos_tf.SearchSpace, got {type(space).__name__}")
    if tuple(space.input_shape) != tuple(data.input_shape) or space.num_classes != data.num_classes:
        raise ConstraintError(f"the space is for input {tuple(space.input_shape)} / {space.num_classes} classes, "
                              f"the data has {tuple(data.input_shape)} / {data.num_classes}")
    if len(data.y_val) == 0 or len(data.y_test) == 0:
        raise ConstraintError("the search needs non-empty validation (thresholds) and test (figures) splits")


def search(space: SearchSpace, data, constraints: Constraints, budget: Union[str, Budget] = "quick",
           seed: int = 0, out_dir: Optional[Union[str, os.PathLike]] = None, resume: bool = False,
           workers: int = 1, dask_scheduler: Optional[str] = None, generations: Optional[int] = None,
           population: Optional[int] = None, progress: Progress = print, loss=None,
           evaluator: Optional[Evaluator] = None, finalizer: Optional[Callable] = None,
           threads: Optional[int] = None, algorithm: str = "nsga2",
           max_seconds: Optional[float] = None) -> R.SearchResult:
    """Joint backbone + exit NAS with NSGA-II under `constraints`; returns the admissible Pareto set.

    data: a `nachos_tf.data.Dataset`, a `DataRef` or a dataset name (workers then rebuild it locally).
    budget: "quick" | "standard" | "thorough" or a `Budget`; generations / population override it.
    out_dir: the run folder (a new temporary folder when None); resume=True continues an interrupted run
    in it, evaluating nothing twice. workers: local processes; dask_scheduler: "tcp://host:port" of a
    running Dask cluster. progress: called with one line per generation (None: silent). loss: the
    training loss (default: NACHOS with max_macs as the budget). evaluator / finalizer: replace
    `evaluate_candidate` / `finalize_candidate` (same signatures), e.g. by a supernet. threads: TensorFlow
    threads of every process that trains for this run (default: this process's count); results depend
    on it, so workers and resumed runs use the run's value. algorithm: "nsga2" (default) or "random"
    (pymoo RandomSearch, a baseline). max_seconds: also stop the search (not the final re-training) once
    this much time has passed, at the end of the running generation. With workers > 1 a script must guard its
    entry code with ``if __name__ == "__main__":`` (worker processes are spawned).

    Raises NoAdmissibleSolutionError (with the closest candidates and what to relax) when nothing is
    admissible; on Ctrl-C the archive stays intact and the message says how to resume.
    """
    from pymoo.optimize import minimize

    if not isinstance(constraints, Constraints):
        raise ConstraintError(f"constraints must be a nachos_tf.Constraints, got {type(constraints).__name__}")
    budget = Budget.resolve(budget, generations, population)
    dataset, ref = _resolve_data(data)
    _check_space(space, dataset)
    loss = default_loss(constraints) if loss is None else loss
    evaluator = evaluator or evaluate_candidate
    finalizer = finalizer or finalize_candidate
    threads = default_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConstraintError(f"threads must be a whole number >= 1, got {threads!r}")
    pin_threads(int(threads))             # the final re-training (and local evaluation) run here
    make_algorithm(space, 2, algorithm)   # rejects an unknown name before anything is written
    if max_seconds is not None and not _number("max_seconds", max_seconds) > 0:
        raise ConstraintError(f"max_seconds must be > 0, got {max_seconds!r}")
    config = _make_config(space, dataset, ref, constraints, budget, seed, loss, evaluator, finalizer, workers,
                          dask_scheduler, int(threads), algorithm, max_seconds)
    out, archive, records = _prepare_run_dir(out_dir, resume, config)
    say = progress or (lambda s: None)
    if resume:
        n = sum(1 for r in records if r.get("stage", R.STAGE_SEARCH) == R.STAGE_SEARCH)
        say(f"resuming {out}: {n} candidates in the archive will not be trained again")
    proxy = proxy_subset(dataset, budget, seed)
    backend = _make_backend(workers, dask_scheduler, proxy, ref, budget, seed, int(threads))
    search_c = constraints.relaxed(budget.accuracy_slack)     # the proxy's accuracy floor (see Budget)
    pool = CandidatePool(space, search_c, budget, seed, loss, archive, records, backend, evaluator, progress,
                         int(threads))
    callback = ProgressCallback(pool, search_c, budget, progress, backend.workers, max_seconds)
    try:
        minimize(EENNProblem(space, search_c, pool), make_algorithm(space, budget.population, algorithm),
                 make_termination(budget.generations, max_seconds), seed=int(seed), callback=callback,
                 verbose=False, copy_algorithm=False)
        backend.close()                   # the final re-training runs here: free the workers first
        if not R.admissible_front(pool.records):
            R.write_json(out / R.PARETO, {"constraints": constraints.to_dict(), "solutions": []})
            R.report(out)
            raise NoAdmissibleSolutionError(explain_no_admissible(pool.records, search_c, constraints)
                                            + f"\n(run folder: {out})")
        doc = _final_stage(pool, records, space, dataset, constraints, budget, seed, loss, out, progress,
                           finalizer)
    except KeyboardInterrupt:
        n = len(archive.read()[0])
        say(f"interrupted: {n} finished evaluations are safe in {out / R.ARCHIVE}; continue with "
            f"`nachos-tf search --resume {out}` (or search(..., out_dir='{out}', resume=True))")
        raise
    finally:
        backend.close()
    R.report(out)
    result = R.load_run(out)
    if not doc["solutions"]:
        finals = result.final_records
        raise NoAdmissibleSolutionError(
            f"no admissible solution after re-training: {len(finals)} front members met the constraints in the "
            "search but not after re-training on more data:\n"
            + "\n".join(f"  {r['id']}: {r['dropped']}" for r in finals if r.get("dropped"))
            + "\nto relax: loosen the constraints slightly, or use a budget whose proxy training is closer to "
              f"the final one.\n(run folder: {out})")
    return result


def resume_search(out_dir: Union[str, os.PathLike], workers: int = 1, dask_scheduler: Optional[str] = None,
                  progress: Progress = print, data=None) -> R.SearchResult:
    """Continue an interrupted run with the settings in its config.json (space, data, constraints, budget,
    seed, loss). `data` is needed only if the run was started from an in-memory Dataset."""
    from .losses import LossConfig

    d = Path(out_dir).expanduser()
    if not d.is_dir():
        raise RunDirError(f"cannot resume: run folder {d} does not exist")
    cfg = R.read_json(d / R.CONFIG, "the settings of the run to resume")
    try:
        space = SearchSpace.from_dict(cfg["space"])
        constraints = Constraints.from_dict(cfg["constraints"])
        budget = Budget.from_dict(cfg["budget"])
        loss = LossConfig.from_dict(cfg["loss"])
        ref = cfg["data"].get("ref")
        seed = int(cfg["seed"])
        threads = cfg.get("threads")
        algo = cfg.get("algorithm") or {}
        algorithm = "random" if algo.get("name") == "RandomSearch" else "nsga2"
        max_seconds = algo.get("max_seconds")
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"{d / R.CONFIG} is not a nachos-tf search config ({exc})") from None
    if data is None:
        if ref is None:
            raise RunDirError(f"the run in {d} was started from an in-memory dataset; pass data= to resume it")
        data = DataRef(**ref)
    return search(space, data, constraints, budget, seed=seed, out_dir=d, resume=True, workers=workers,
                  dask_scheduler=dask_scheduler, progress=progress, loss=loss, threads=threads,
                  algorithm=algorithm, max_seconds=max_seconds)

"""Settings of a search: what must hold (`Constraints`), how much compute it gets (`Budget`, `BUDGETS`),
where the data comes from (`DataRef`), and the whole run as one record (`RunSpec`, which *is* config.json).

`RunSpec.to_dict()` is what ``config.json`` holds; `RunSpec.from_dict()` reads it back (also the files
written before this module existed) and `RunSpec.fingerprint()` is what must match to resume a run.
"""
from __future__ import annotations

import datetime as _dt
import math
import platform
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from ..errors import ConstraintError, RunDirError

__all__ = ["Constraints", "Budget", "BUDGETS", "PROXY_BUDGETS", "FINAL_MACS", "DataRef", "RunSpec", "versions", "ALGORITHMS"]

ALGORITHMS = ("nsga2", "random")
_WORKER_CACHE: Dict[Any, Any] = {}   # per process: datasets already loaded from a DataRef


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

    def meets_accuracy_and_macs(self, accuracy: float, expected_macs: float) -> bool:
        """True when accuracy and expected MACs meet their bounds (the two constraints that need no int8
        conversion; the same test as `violations` <= 0)."""
        g = replace(self, max_flash=None, max_ram=None).violations(accuracy, expected_macs)
        return g["accuracy"] <= 0 and g["macs"] <= 0

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


#: Where the final stage re-calibrates a re-trained member (`Budget.final_macs`).
FINAL_MACS = ("search", "budget")
#: How the final stage chooses the members to re-train (`Budget.finalists`).
FINALISTS = ("spread", "hypervolume")
#: NSGA-II's mutation operator (`Budget.mutation`).
MUTATIONS = ("pm", "reset")


@dataclass(frozen=True)
class Budget:
    """Fidelity of the search: NSGA-II size, proxy training per candidate, final re-training.

    proxy_train / proxy_val: class-balanced training / validation subset sizes for candidate evaluation
    (None = whole split); epochs / head_epochs: the two `train_eenn` phases (backbone with CE, then the
    NACHOS loss on every exit). final_*: the same for re-training the admissible front; max_final caps
    how many front members are re-trained, chosen by `finalists` (`nas.final.finalists`; one member dropped
    after re-training is replaced by the most accurate one left).
    finalists: "spread" (default): spread evenly along the front by MACs, both ends kept; "hypervolume":
    the members that together cover most of the user's constraint box (greedy, pymoo's HV), which skips
    front members near the accuracy floor or the MAC cap that add little.
    accuracy_slack: a short proxy training underestimates the accuracy a candidate reaches after the
    final training, so during the search the accuracy floor is lowered by this much (a fraction); the
    admissible set is then checked against the true floor after re-training (misses are dropped).
    final_macs: where re-calibration puts a re-trained member on its accuracy / expected-MAC curve.
    "search" (default): the most accurate thresholds that cost no more than the member's search-time
    expected MACs, so the finalists keep the spread along MACs the search gave them and re-training is
    spent on accuracy at that cost (when the accuracy floor cannot be met there: as "budget").
    "budget": the most accurate thresholds within max MACs; every member then drifts to the accurate end
    of its curve, and the re-trained members often dominate one another.
    accuracy_tolerance: where calibration puts a candidate on its own accuracy / expected-MAC curve
    (`policy.calibrate`, method "pareto"): the cheapest point at most this much (a fraction) less accurate
    on validation than the most accurate admissible one. 0 (default): the most accurate point. Near the
    top of an EENN's curve accuracy levels off while expected MACs keep rising, so a tolerance within the
    validation noise (e.g. 0.0025 on 1,000-2,000 images) places candidates at the curve's knee, where the
    early exits pay, instead of near max MACs.
    rescore: before the final stage chooses the members to re-train, this many leading feasible candidates
    (the admissible front, then the next non-dominated layers) are judged again on the whole validation
    split when the search ranked them on a subset (proxy_val) and the evaluator can do it cheaply (the
    supernet evaluator: seconds each); the finalists are then chosen on those figures. 0 (default): off.
    confirm: during the search, every candidate whose subset estimate (proxy_val) puts it on the admissible
    front is judged again on the whole validation split (the evaluator's ``rescore``, when it has one) before
    the algorithm ranks it, so the front NSGA-II climbs holds whole-split figures only, not the luckiest of
    many noisy subset estimates (about one candidate in ten enters the front; each re-judgement costs what
    three subset ones do). False (default): off.
    screen: multi-fidelity choice of the finalists: after `rescore`, this many leading feasible candidates
    (the admissible front, then the next non-dominated layers) are fine-tuned briefly from their inherited
    weights (the evaluator's ``screen``, when it has one: the supernet evaluator's is one exit-phase epoch on
    `screen_train` training images, about a tenth of a final fine-tune) and judged on the whole validation
    split at no more than their search-time expected MACs; the finalists are chosen among them on those
    figures. A supernet estimate flatters some subnets, which then gain less from fine-tuning than the others;
    the stronger the search optimises the estimate, the more of them lead its front. 0 (default): off.
    screen_train: training images of each screening fine-tune (None: the whole training split).
    crossfit: the figures a candidate is ranked on in the search, k-fold cross-fitted
    (`policy.crossfit_calibrate`): each fold of the validation images scored with thresholds calibrated on the
    others. The most accurate point of a curve fitted on the same images it is read on is optimistic, the
    more so the more exits it has thresholds for, so the search otherwise favours many-exit candidates that
    fall back after re-training. 0 (default): off (in-sample figures); k >= 2: k folds.
    mutation: NSGA-II's mutation operator. "pm" (default): pymoo's polynomial mutation on the integer
    encoding, rounded; on genes with two to four values its small steps mostly round back to the same value,
    so a converged population hardly moves (resolution, exits on/off). "reset": pymoo's
    ``ChoiceRandomMutation``, which draws a mutated gene anew from all its values (random resetting, the
    usual operator for categorical genes). Random search ignores both.
    mutation_rate: the per-gene mutation probability (pymoo's ``prob_var``). None (default): pymoo's
    1 / n_var, about one gene of the MCU space's 48.
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
    final_macs: str = "search"
    accuracy_tolerance: float = 0.0
    rescore: int = 0
    finalists: str = "spread"
    screen: int = 0
    screen_train: Optional[int] = 6000
    confirm: bool = False
    crossfit: int = 0
    mutation: str = "pm"
    mutation_rate: Optional[float] = None

    def __post_init__(self) -> None:
        for f in ("population", "generations", "batch_size", "max_final"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConstraintError(f"budget {f} must be a whole number >= 1, got {v!r}")
        if self.population < 2:
            raise ConstraintError("budget population must be >= 2 (NSGA-II needs pairs to mate)")
        for f in ("proxy_train", "proxy_val", "final_train", "screen_train"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 10):
                raise ConstraintError(f"budget {f} must be None (whole split) or >= 10 samples, got {v!r}")
        for f in ("epochs", "head_epochs", "final_epochs", "final_head_epochs", "rescore", "screen"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConstraintError(f"budget {f} must be a whole number >= 0, got {v!r}")
        if self.epochs + self.head_epochs < 1 or self.final_epochs + self.final_head_epochs < 1:
            raise ConstraintError("a budget must train for at least one epoch (search and final)")
        if not _number("learning_rate", self.learning_rate) > 0:
            raise ConstraintError("budget learning_rate must be > 0")
        if not 0.0 <= _number("accuracy_slack", self.accuracy_slack) < 1.0:
            raise ConstraintError(f"budget accuracy_slack must be in [0, 1), got {self.accuracy_slack!r}")
        if not 0.0 <= _number("accuracy_tolerance", self.accuracy_tolerance) < 1.0:
            raise ConstraintError(f"budget accuracy_tolerance must be in [0, 1), got {self.accuracy_tolerance!r}")
        if isinstance(self.crossfit, bool) or not isinstance(self.crossfit, (int, np.integer)) \
                or self.crossfit < 0 or self.crossfit == 1:
            raise ConstraintError(f"budget crossfit must be 0 (off) or a number of folds >= 2, got {self.crossfit!r}")
        if not isinstance(self.confirm, (bool, np.bool_)):
            raise ConstraintError(f"budget confirm must be true or false, got {self.confirm!r}")
        if self.mutation_rate is not None and not 0.0 < _number("mutation_rate", self.mutation_rate) <= 1.0:
            raise ConstraintError(f"budget mutation_rate must be None or in (0, 1], got {self.mutation_rate!r}")
        if self.mutation not in MUTATIONS:
            raise ConstraintError(f"budget mutation must be one of {', '.join(MUTATIONS)}, got {self.mutation!r}")
        if self.finalists not in FINALISTS:
            raise ConstraintError(f"budget finalists must be one of {', '.join(FINALISTS)}, got {self.finalists!r}")
        if self.final_macs not in FINAL_MACS:
            raise ConstraintError(f"budget final_macs must be one of {', '.join(FINAL_MACS)}, got {self.final_macs!r}")

    @classmethod
    def preset(cls, name: str, evaluator: str = "supernet") -> "Budget":
        """A named preset: `quick` (what `make demo` runs; README "make demo, measured" gives its time),
        `standard`, `thorough`. The supernet evaluator judges a candidate in seconds, the proxy trains each
        one, so each has its own table (`BUDGETS`, `PROXY_BUDGETS`).

        Raises:
            ConstraintError: an unknown name.
        """
        table = PROXY_BUDGETS if evaluator == "proxy" else BUDGETS
        try:
            return table[name]
        except KeyError:
            raise ConstraintError(f"unknown budget {name!r}; choose one of {', '.join(table)}") from None

    @classmethod
    def resolve(cls, budget: Union[str, "Budget"], generations: Optional[int] = None,
                population: Optional[int] = None, evaluator: str = "supernet") -> "Budget":
        """A preset name (for `evaluator`) or a Budget, with generations / population overridden when given."""
        b = cls.preset(budget, evaluator) if isinstance(budget, str) else budget
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
        """A budget from config.json; one written before `final_macs` existed was finalized as "budget"."""
        return cls(**dict({"final_macs": "budget"}, **{f.name: d[f.name] for f in fields(cls) if f.name in d}))

    def evaluation_settings(self) -> Dict[str, Any]:
        """The fields a candidate's result depends on (the algorithm's population, generations and mutation do
        not)."""
        d = self.to_dict()
        for k in ("name", "population", "generations", "mutation", "mutation_rate"):
            d.pop(k)
        return d


#: Budgets of the proxy evaluator (a brief training per candidate).
PROXY_BUDGETS: Dict[str, Budget] = {
    "quick": Budget("quick", population=4, generations=2, proxy_train=3000, proxy_val=1000, epochs=0,
                    head_epochs=2, final_train=None, final_epochs=0, final_head_epochs=2, max_final=1,
                    accuracy_slack=0.15),
    "standard": Budget("standard", population=16, generations=8, proxy_train=15000, proxy_val=None, epochs=2,
                       head_epochs=3, final_train=None, final_epochs=5, final_head_epochs=5, max_final=8),
    "thorough": Budget("thorough", population=24, generations=15, proxy_train=None, proxy_val=None, epochs=4,
                       head_epochs=6, final_train=None, final_epochs=10, final_head_epochs=10, max_final=12),
}

#: Budgets of the supernet evaluator (the default): candidates inherit their weights, so a search sees
#: hundreds; proxy_val is the validation subset candidates are ranked on, proxy_train is not used; the
#: final stage fine-tunes front members from their inherited weights.
BUDGETS: Dict[str, Budget] = {
    "quick": Budget("quick", population=12, generations=4, proxy_train=None, proxy_val=2000, epochs=0,
                    head_epochs=1, final_train=12000, final_epochs=1, final_head_epochs=1, max_final=4,
                    accuracy_slack=0.03),
    "standard": Budget("standard", population=24, generations=12, proxy_train=None, proxy_val=None, epochs=0,
                       head_epochs=1, final_train=None, final_epochs=1, final_head_epochs=2, max_final=6,
                       accuracy_slack=0.03),
    "thorough": Budget("thorough", population=40, generations=20, proxy_train=None, proxy_val=None, epochs=0,
                       head_epochs=1, final_train=None, final_epochs=3, final_head_epochs=3, max_final=10,
                       accuracy_slack=0.03),
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
            from ..data import load

            _WORKER_CACHE[key] = load(self.name, self.path, self.val_fraction, self.seed)
        return _WORKER_CACHE[key]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def versions() -> Dict[str, str]:
    """Versions of Python and the packages a run's figures depend on (recorded in config.json)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("nachos-tf", "tensorflow", "tensorflow-cpu", "keras", "pymoo", "numpy", "dask", "distributed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# config.json of runs written before evaluators were objects named the evaluator by its function
_LEGACY_EVALUATORS = {"nachos_tf.search.evaluate_candidate": {"name": "proxy", "calibration": "pareto",
                                                              "cost_model": "staged"}}
_LEGACY_ALGORITHMS = {"NSGA2": "nsga2", "RandomSearch": "random"}


@dataclass
class RunSpec:
    """Everything that defines a run: the contents of ``config.json``.

    `space`, `data` and `loss` are kept in their JSON form (dicts) so that the spec can be written, read,
    compared and shipped to workers without TensorFlow; `evaluator` is the evaluator's `to_dict()`.
    """

    seed: int
    constraints: Constraints
    budget: Budget
    space: Dict[str, Any]
    data: Dict[str, Any]
    loss: Dict[str, Any]
    rule: str
    evaluator: Dict[str, Any]
    algorithm: str = "nsga2"
    max_seconds: Optional[float] = None
    threads: int = 1
    workers: int = 1
    dask_scheduler: Optional[str] = None
    resumed: bool = False
    versions: Dict[str, str] = field(default_factory=versions)
    argv: List[str] = field(default_factory=lambda: list(sys.argv))
    started: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def search_constraints(self) -> Constraints:
        """The constraints candidates are judged by during the search (accuracy floor lowered by the slack)."""
        return self.constraints.relaxed(self.budget.accuracy_slack)

    def algorithm_dict(self) -> Dict[str, Any]:
        """The pymoo algorithm as config.json describes it."""
        if self.algorithm == "random":
            algo = {"name": "RandomSearch", "points_per_generation": self.budget.population,
                    "sampling": "IntegerRandomSampling", "repair": "GenomeRepair (in decoding)"}
        else:
            mr = self.budget.mutation_rate if self.budget.mutation_rate is not None else "1/n_var"
            mutation = (f"PM(prob=1.0, eta=3, prob_var={mr}) + rounding" if self.budget.mutation == "pm"
                        else f"ChoiceRandomMutation(prob=1.0, prob_var={mr})")
            algo = {"name": "NSGA2", "population": self.budget.population, "sampling": "IntegerRandomSampling",
                    "crossover": "SBX(prob=0.9, eta=3) + rounding", "mutation": mutation,
                    "repair": "GenomeRepair", "eliminate_duplicates": True}
        return dict(algo, key=self.algorithm, generations=self.budget.generations, max_seconds=self.max_seconds)

    def to_dict(self) -> Dict[str, Any]:
        """config.json."""
        return {"seed": int(self.seed), "constraints": self.constraints.to_dict(),
                "search_constraints": self.search_constraints.to_dict(), "budget": self.budget.to_dict(),
                "budget_evaluation": self.budget.evaluation_settings(), "space": self.space, "data": self.data,
                "loss": self.loss, "rule": self.rule, "evaluator": self.evaluator,
                "algorithm": self.algorithm_dict(), "calibration": {"method": self.evaluator.get("calibration",
                                                                                             "pareto")},
                "workers": int(self.workers), "dask_scheduler": self.dask_scheduler, "threads": int(self.threads),
                "versions": self.versions, "argv": self.argv, "started": self.started, "resumed": bool(self.resumed)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "config.json") -> "RunSpec":
        """Read config.json back (current and earlier layouts); RunDirError naming the field that is wrong."""
        if not isinstance(d, Mapping):
            raise RunDirError(f"{where} must hold a JSON object")

        def obj(key: str) -> Mapping[str, Any]:
            v = d.get(key)
            if not isinstance(v, Mapping):
                raise RunDirError(f"{where}: field '{key}' must be a JSON object (got {v!r:.60})")
            return v

        try:
            seed = d.get("seed")
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise RunDirError(f"{where}: field 'seed' must be a whole number >= 0 (got {seed!r:.60})")
            ev = d.get("evaluator")
            if isinstance(ev, str):
                if ev not in _LEGACY_EVALUATORS:
                    raise RunDirError(f"{where}: unknown evaluator {ev!r}")
                ev = dict(_LEGACY_EVALUATORS[ev], calibration=(d.get("calibration") or {}).get("method", "pareto"))
            elif not isinstance(ev, Mapping) or not isinstance(ev.get("name"), str):
                raise RunDirError(f"{where}: field 'evaluator' must name an evaluator (got {ev!r:.60})")
            algo = obj("algorithm") if "algorithm" in d else {}
            key = algo.get("key") or _LEGACY_ALGORITHMS.get(algo.get("name", "NSGA2"))
            if key not in ALGORITHMS:
                raise RunDirError(f"{where}: field 'algorithm' names no known algorithm (got {algo!r:.80})")
            threads = d.get("threads") or 1
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise RunDirError(f"{where}: field 'threads' must be a whole number >= 1 (got {threads!r:.60})")
            rule = d.get("rule")
            if not isinstance(rule, str):
                raise RunDirError(f"{where}: field 'rule' must be a string (got {rule!r:.60})")
            space, data, loss = obj("space"), obj("data"), obj("loss")
            return cls(seed=seed, constraints=Constraints.from_dict(obj("constraints")),
                       budget=Budget.from_dict(obj("budget")), space=dict(space), data=dict(data), loss=dict(loss),
                       rule=rule, evaluator=dict(ev), algorithm=key, max_seconds=algo.get("max_seconds"),
                       threads=threads, workers=int(d.get("workers") or 1), dask_scheduler=d.get("dask_scheduler"),
                       resumed=bool(d.get("resumed")), versions=dict(d.get("versions") or {}),
                       argv=list(d.get("argv") or []), started=str(d.get("started", "")))
        except ConstraintError as exc:
            raise RunDirError(f"{where}: {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise RunDirError(f"{where} is not a nachos-tf search config ({exc})") from None

    def fingerprint(self) -> Dict[str, Any]:
        """The settings a candidate's archived result depends on (must match to resume)."""
        data = {k: v for k, v in self.data.items() if k not in ("ref", "source")}
        return {"seed": self.seed, "constraints": self.constraints.to_dict(), "space": self.space, "data": data,
                "loss": self.loss, "evaluation": self.budget.evaluation_settings(), "evaluator": self.evaluator,
                "threads": self.threads, "algorithm": self.algorithm}

    def differences(self, other: "RunSpec") -> List[str]:
        """Names of the fingerprint entries that differ from `other`'s."""
        a, b = self.fingerprint(), other.fingerprint()
        return sorted(k for k in a if a[k] != b.get(k))

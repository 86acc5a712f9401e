"""Settings of a search: what must hold (`Constraints`, defined in `constraints.py`), how much compute it gets
(`Budget`, `BUDGETS`), where the data comes from (`DataRef`), and the whole run as one record (`RunSpec`, which
*is* config.json).

`RunSpec.to_dict()` is what ``config.json`` holds; `RunSpec.from_dict()` reads it back (also the files
written before this module existed) and `RunSpec.fingerprint()` is what must match to resume a run.
"""
from __future__ import annotations

import datetime as _dt
import platform
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

import numpy as np

from ..errors import ConstraintError, RunDirError
from .constraints import Constraints
from .constraints import number as _number

if TYPE_CHECKING:
    from ..data import Dataset

__all__ = ["Constraints", "Budget", "BUDGETS", "PROXY_BUDGETS", "FINAL_MACS", "DataRef", "RunSpec", "versions", "ALGORITHMS"]

ALGORITHMS = ("nsga2", "random")
_WORKER_CACHE: Dict[Any, Any] = {}   # per process: datasets already loaded from a DataRef


#: Where the final stage re-calibrates a re-trained member (`Budget.final_macs`).
FINAL_MACS = ("search", "budget")
#: How the final stage chooses the members to re-train (`Budget.finalists`).
FINALISTS = ("spread", "hypervolume")
#: The final stage's learning-rate schedule (`Budget.final_schedule`; `train_eenn`'s lr_schedule).
FINAL_SCHEDULES = ("constant", "cosine")
#: NSGA-II's mutation operator (`Budget.mutation`).
MUTATIONS = ("pm", "reset")


@dataclass(frozen=True)
class Budget:
    """Fidelity of the search: NSGA-II size, proxy training per candidate, final re-training.

    Attributes:
        name: the preset's name ("custom" for a hand-made budget).
        population: NSGA-II population size (>= 2; random search: points per generation).
        generations: generations of the search.
        proxy_train: class-balanced training subset size for candidate evaluation (None = whole split).
        proxy_val: class-balanced validation subset size for candidate evaluation (None = whole split).
        epochs: first `train_eenn` phase of a candidate's training (backbone with CE).
        head_epochs: second phase (the NACHOS loss on every exit).
        batch_size: batch size of the training.
        learning_rate: learning rate of the training (> 0).
        final_train: training subset size for re-training the admissible front (None = whole split).
        final_epochs: first phase of that re-training.
        final_head_epochs: its second phase.
        final_schedule: the learning-rate schedule of that re-training: "constant" (default) or "cosine" (decays
            to zero over each phase, `keras.optimizers.schedules.CosineDecay`).
        max_final: caps how many front members are re-trained, chosen by `finalists` (`nas.final.finalists`;
            one member dropped after re-training is replaced by the most accurate one left).
        finalists: "spread" (default): spread evenly along the front by MACs, both ends kept; "hypervolume":
            the members that together cover most of the user's constraint box (greedy, pymoo's HV), which skips
            front members near the accuracy floor or the MAC cap that add little.
        accuracy_slack: how much (a fraction) the accuracy floor is lowered during the search, as a short proxy
            training underestimates the accuracy reached after the final training; the admissible set is then
            checked against the true floor after re-training (misses are dropped).
        final_macs: where re-calibration puts a re-trained member on its accuracy / expected-MAC curve. "search"
            (default): the most accurate thresholds costing no more than its search-time expected MACs, so the
            finalists keep the search's spread along MACs and re-training is spent on accuracy at that cost
            (as "budget" when the accuracy floor cannot be met there). "budget": the most accurate thresholds
            within max MACs; every member then drifts to the accurate end of its curve, and the re-trained
            members often dominate one another.
        accuracy_tolerance: where calibration (`policy.calibrate`, method "pareto") puts a candidate on its
            curve: the cheapest point at most this much (a fraction) less accurate on validation than the most
            accurate admissible one; 0 (default): the most accurate point. Near the top of an EENN's curve
            accuracy levels off while expected MACs keep rising, so a tolerance within the validation noise
            (e.g. 0.0025 on 1,000-2,000 images) places candidates at the knee, where early exits pay,
            instead of near max MACs.
        rescore: this many leading feasible candidates (the admissible front, then the next non-dominated
            layers) are judged again on the whole validation split before the final stage chooses its
            finalists on those figures, when the search ranked them on a subset (proxy_val) and the evaluator
            can do it cheaply (the supernet evaluator: seconds each). 0 (default): off.
        confirm: during the search, every candidate whose subset estimate puts it on the admissible front is
            judged again on the whole validation split (the evaluator's ``rescore``, when it has one) before the
            algorithm ranks it, so the front holds whole-split figures only, not the luckiest of many noisy
            subset estimates (about one candidate in ten enters it; each re-judgement costs what three subset
            ones do). False (default): off.
        screen: after `rescore`, this many leading feasible candidates are fine-tuned briefly from their
            inherited weights (the evaluator's ``screen``, when it has one: the supernet evaluator's is one
            exit-phase epoch on `screen_train` images, about a tenth of a final fine-tune) and judged on the
            whole validation split at no more than their search-time expected MACs; the finalists are chosen
            among them on those figures (a supernet estimate flatters some subnets, which then gain less from
            fine-tuning; the harder the search optimises it, the more of them lead its front). 0 (default): off.
        screen_train: training images of each screening fine-tune (None: the whole training split).
        crossfit: k-fold cross-fit the figures a candidate is ranked on (`policy.crossfit_calibrate`: each fold
            of the validation images scored with thresholds calibrated on the others). A curve read on the
            images it was fitted on is optimistic, the more so the more exits it has, so the search otherwise
            favours many-exit candidates that fall back after re-training. 0 (default): off; k >= 2: k folds.
        mutation: NSGA-II's mutation operator. "pm" (default): pymoo's polynomial mutation on the integer
            encoding, rounded; on genes with two to four values its small steps mostly round back, so a
            converged population hardly moves (resolution, exits on/off). "reset": pymoo's
            ``ChoiceRandomMutation`` (random resetting, the usual operator for categorical genes: a mutated gene
            drawn anew from all its values). Random search ignores both.
        mutation_rate: per-gene mutation probability (pymoo's ``prob_var``); None (default): pymoo's 1 / n_var,
            about one gene of the MCU space's 48.

    Raises:
        ConstraintError: a field has an invalid type or value.
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
    final_schedule: str = "constant"
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
        if self.final_schedule not in FINAL_SCHEDULES:
            raise ConstraintError(f"budget final_schedule must be one of {', '.join(FINAL_SCHEDULES)}, "
                                  f"got {self.final_schedule!r}")
        if self.final_macs not in FINAL_MACS:
            raise ConstraintError(f"budget final_macs must be one of {', '.join(FINAL_MACS)}, got {self.final_macs!r}")

    @classmethod
    def preset(cls, name: str, evaluator: str = "supernet") -> "Budget":
        """A named preset: `quick` (what `make demo` runs; README "make demo, measured" gives its time),
        `standard`, `thorough`. The supernet evaluator judges a candidate in seconds, the proxy trains each
        one, so each has its own table (`BUDGETS`, `PROXY_BUDGETS`).

        Args:
            name: the preset's name.
            evaluator: the evaluator's name ("proxy": `PROXY_BUDGETS`, any other: `BUDGETS`).

        Returns:
            The preset Budget.

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
        """A preset name (for `evaluator`) or a Budget, with generations / population overridden when given.

        Args:
            budget: a preset name (`preset`) or a Budget.
            generations: overrides the budget's generations (None: kept).
            population: overrides its population (None: kept).
            evaluator: the evaluator's name (chooses the preset table).

        Returns:
            The Budget.

        Raises:
            ConstraintError: an unknown preset, neither a name nor a Budget, or an invalid override.
        """
        b = cls.preset(budget, evaluator) if isinstance(budget, str) else budget
        if not isinstance(b, Budget):
            raise ConstraintError(f"budget must be a preset name or a Budget, got {budget!r}")
        changes = {k: v for k, v in (("generations", generations), ("population", population)) if v is not None}
        return replace(b, **changes) if changes else b

    def with_(self, **changes: Any) -> "Budget":
        """A copy with some fields changed (validated again).

        Args:
            **changes: field name -> new value.

        Returns:
            The new Budget.

        Raises:
            ConstraintError: a new value is invalid.
        """
        return replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """The budget as config.json holds it.

        Returns:
            {field name: value} of every field.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Budget":
        """A budget from config.json; one written before `final_macs` existed was finalized as "budget".

        Args:
            d: field name -> value (unknown keys ignored, missing fields at their defaults).

        Returns:
            The Budget.

        Raises:
            ConstraintError: a field has an invalid type or value.
        """
        return cls(**dict({"final_macs": "budget"}, **{f.name: d[f.name] for f in fields(cls) if f.name in d}))

    def evaluation_settings(self) -> Dict[str, Any]:
        """The fields a candidate's result depends on (the algorithm's population, generations and mutation do
        not).

        Returns:
            `to_dict()` without name, population, generations, mutation and mutation_rate.
        """
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
#: final stage fine-tunes front members from their inherited weights, with a cosine learning-rate schedule (README,
#: "A cosine schedule in the final stage"); `quick` in one phase of two epochs (every exit and the backbone
#: together: one `fit`, one graph traced per finalist; README "make demo, measured").
BUDGETS: Dict[str, Budget] = {
    "quick": Budget("quick", population=12, generations=4, proxy_train=None, proxy_val=2000, epochs=0,
                    head_epochs=1, final_train=12000, final_epochs=0, final_head_epochs=2, max_final=4,
                    accuracy_slack=0.03, final_schedule="cosine"),
    "standard": Budget("standard", population=24, generations=12, proxy_train=None, proxy_val=None, epochs=0,
                       head_epochs=1, final_train=None, final_epochs=1, final_head_epochs=2, max_final=6,
                       accuracy_slack=0.03, final_schedule="cosine"),
    "thorough": Budget("thorough", population=40, generations=20, proxy_train=None, proxy_val=None, epochs=0,
                       head_epochs=1, final_train=None, final_epochs=3, final_head_epochs=3, max_final=10,
                       accuracy_slack=0.03, final_schedule="cosine"),
}


@dataclass(frozen=True)
class DataRef:
    """A dataset by name and path, so that every worker process rebuilds it locally (no arrays shipped).

    Attributes:
        name: the dataset's name (`nachos_tf.data.load`).
        path: its file or folder (None: found automatically, Fashion-MNIST only).
        val_fraction: fraction of the training set held out per class as validation.
        seed: seed of the validation split.
    """

    name: str = "fashion_mnist"
    path: Optional[str] = None
    val_fraction: float = 0.1
    seed: int = 0

    def load(self) -> Dataset:
        """The `nachos_tf.data.Dataset` (cached per process).

        Returns:
            The Dataset `nachos_tf.data.load` reads for these settings.

        Raises:
            DataError: the dataset cannot be read (`nachos_tf.data.load`).
        """
        key = ("ref", self)
        if key not in _WORKER_CACHE:
            from ..data import load

            _WORKER_CACHE[key] = load(self.name, self.path, self.val_fraction, self.seed)
        return _WORKER_CACHE[key]

    def to_dict(self) -> Dict[str, Any]:
        """The reference as config.json holds it.

        Returns:
            {field name: value} of every field.
        """
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

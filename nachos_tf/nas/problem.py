"""The pymoo pieces of the search, as a pymoo user expects them: a `Problem` that fills F and G, a `Repair`,
the algorithm (NSGA-II or RandomSearch), the termination and a progress `Callback`.

`EENNProblem` minimises (validation error, expected MACs) over the space's integer encoding subject to
G <= 0 (one column per active constraint, normalised by its bound); its batches go through a
`CandidatePool` (archive look-up first, then the backend).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..errors import ConstraintError
from ..results import admissible_front, hypervolume
from .interrupt import check_interrupt
from .pool import CandidatePool, fmt_time
from .settings import ALGORITHMS, MUTATIONS

__all__ = ["EENNProblem", "GenomeRepair", "ProgressCallback", "make_algorithm", "make_termination"]

Progress = Optional[Callable[[str], Any]]

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

    def __init__(self, space, constraints, pool: CandidatePool):
        super().__init__(n_var=space.n_var, n_obj=2, n_ieq_constr=len(constraints.active),
                         xl=space.xl, xu=space.xu, vtype=int, vars=integer_vars(space))
        self.space, self.constraints, self.pool = space, constraints, pool

    def _evaluate(self, X, out, *args, **kwargs):
        genomes = [self.space.decode(x) for x in np.atleast_2d(X)]
        recs = self.pool.evaluate(genomes)
        out["F"] = np.array([r.objectives for r in recs], dtype=float)
        out["G"] = np.array([r.constraint_vector(self.constraints.active) for r in recs], dtype=float)


def integer_vars(space) -> Dict[str, Any]:
    """The space's genes as pymoo `Integer` variables (their bounds), which pymoo's
    ``ChoiceRandomMutation`` draws mutated genes from (`Budget.mutation` "reset")."""
    from pymoo.core.variable import Integer

    return {f"x{i:02d}": Integer(bounds=(int(lo), int(hi))) for i, (lo, hi) in enumerate(zip(space.xl, space.xu))}


class GenomeRepair(_PymooRepair):
    """Maps every vector to its genome's canonical encoding (round, clip, space.repair), so equal
    architectures are equal vectors and pymoo's duplicate elimination sees them."""

    def __init__(self, space):
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        X = np.atleast_2d(np.asarray(X, dtype=float))     # ChoiceRandomMutation returns an object array
        return np.array([self.space.encode(self.space.decode(x)) for x in X], dtype=int).reshape(X.shape)


class ProgressCallback(_PymooCallback):
    """After every generation: candidates evaluated, feasible count, admissible-front size, hypervolume,
    elapsed time and ETA (search plus final re-training), through `progress`."""

    def __init__(self, pool: CandidatePool, constraints, budget, progress: Progress,
                 workers: int, max_seconds: Optional[float] = None, clock=None):
        super().__init__()
        self.pool, self.constraints, self.budget, self.progress, self.workers = (
            pool, constraints, budget, progress, workers)
        self.max_seconds = max_seconds
        self.clock = clock                # a SearchClock: elapsed counts a resumed run's earlier sessions
        self.t0 = time.time()
        self.lines: List[Dict[str, Any]] = []

    def elapsed(self) -> float:
        """Search seconds so far (with a clock, the earlier sessions' too)."""
        return self.clock.seconds if self.clock is not None else time.time() - self.t0

    def eta(self, gen: int) -> float:
        per = self.pool.eval_seconds / self.pool.evaluated if self.pool.evaluated else 0.0
        remaining = self.budget.population * max(0, self.budget.generations - gen)
        search_left = per * remaining / max(1, self.workers)
        if self.max_seconds is not None:   # the search also stops at the first generation end past the limit
            search_left = min(search_left, max(0.0, self.max_seconds - self.elapsed())
                              + per * self.budget.population / max(1, self.workers))
        b = self.budget
        scale = ((b.final_train or 50000) * (b.final_epochs + b.final_head_epochs)
                 / max(1, (b.proxy_train or 50000) * (b.epochs + b.head_epochs)))
        n_final = min(b.max_final, max(1, len(admissible_front(self.pool.records))))
        # about half of a proxy evaluation is fixed cost (graph tracing, calibration), half scales with data
        return search_left + per * (0.5 + 0.5 * scale) * n_final

    def notify(self, algorithm) -> None:
        check_interrupt()
        gen = int(algorithm.n_iter or 0)
        recs = self.pool.records
        cons = self.constraints.to_dict()
        stats = {"generation": gen, "generations": self.budget.generations, "evaluated": len(recs),
                 "new": self.pool.evaluated, "replayed": self.pool.replayed,
                 "pruned": sum(1 for r in recs if r.pruned),
                 "feasible": sum(1 for r in recs if r.feasible),
                 "front": len(admissible_front(recs)), "hypervolume": hypervolume(recs, cons),
                 "elapsed": self.elapsed(), "eta": self.eta(gen)}
        self.lines.append(stats)
        if self.progress:
            self.progress(f"gen {gen}/{stats['generations']}: {stats['evaluated']} candidates "
                          f"({stats['new']} new, {stats['replayed']} from archive, {stats['pruned']} over budget "
                          f"untrained), {stats['feasible']} "
                          f"feasible, admissible front {stats['front']}, hypervolume {stats['hypervolume']:.4f}, "
                          f"elapsed {fmt_time(stats['elapsed'])}, ETA {fmt_time(stats['eta'])}")


def make_algorithm(space, population: int, name: str = "nsga2", mutation_rate: Optional[float] = None,
                   mutation: str = "pm"):
    """The pymoo algorithm of a search.

    "nsga2": NSGA-II with pymoo's integer operators (random integer sampling, SBX with rounding, and
    `mutation`: "pm", polynomial mutation with rounding, or "reset", ``ChoiceRandomMutation`` over the genes'
    values, see `Budget.mutation`) and the genome repair; duplicates eliminated; each gene mutates with
    probability `mutation_rate` (None: pymoo's 1 / n_var). "random": pymoo's RandomSearch drawing `population`
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

    if mutation == "reset":
        from pymoo.operators.mutation.rm import ChoiceRandomMutation

        mutate = ChoiceRandomMutation(prob=1.0, prob_var=mutation_rate)
    elif mutation == "pm":
        mutate = PM(prob=1.0, prob_var=mutation_rate, eta=3.0, vtype=float, repair=RoundingRepair())
    else:
        raise ConstraintError(f"unknown mutation {mutation!r}; choose one of {', '.join(MUTATIONS)}")
    return NSGA2(pop_size=population, sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
                 mutation=mutate,
                 repair=GenomeRepair(space), eliminate_duplicates=True)


def make_termination(generations: int, max_seconds: Optional[float] = None, clock=None,
                     replaying: Optional[Callable[[], bool]] = None):
    """pymoo termination: after `generations`, or once `max_seconds` of search have passed (checked
    between generations, so the generation running at the deadline finishes), whichever comes first.

    Args:
        generations: the generation limit.
        max_seconds: the time limit (None: none).
        clock: a `nachos_tf.nas.clock.SearchClock`: the limit then counts the search seconds of a resumed
            run's earlier sessions too (None: this process's time only, pymoo's ``TimeBasedTermination``).
        replaying: with `clock`, whether a resumed run is still answering from its archive (it does not
            stop then).

    Returns:
        A pymoo termination.
    """
    from pymoo.termination.max_gen import MaximumGenerationTermination

    if max_seconds is None:
        return MaximumGenerationTermination(generations)
    from pymoo.termination.collection import TerminationCollection

    if clock is None:
        from pymoo.termination.max_time import TimeBasedTermination

        return TerminationCollection(MaximumGenerationTermination(generations),
                                     TimeBasedTermination(float(max_seconds)))
    from .clock import time_limit

    return TerminationCollection(MaximumGenerationTermination(generations),
                                 time_limit(float(max_seconds), clock, replaying or (lambda: False)))

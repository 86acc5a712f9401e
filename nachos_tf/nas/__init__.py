"""The search: NSGA-II (pymoo) over the genome encoding, under accuracy / expected-MAC / memory constraints.

Modules, each one job: `settings` (Constraints, Budget, BUDGETS, DataRef, RunSpec = config.json),
`evaluators` (the Evaluator protocol and registry; `proxy`: brief training per candidate; `supernet`:
weights inherited from a trained weight-sharing supernet), `backends` (this process, local processes, Dask),
`pool` (archive look-up, replay, append), `clock` (search seconds over a run's sessions), `problem` (pymoo Problem, Repair, algorithm, termination,
progress), `final` (finalize the front, pareto.json), `final_points` (move members dominated after
re-training along their own trade-off curves; int8 figures of the final set), `explain` (what failed, what to relax), `lock` (one
process per run folder), `runner` (`search`, `resume_search`, `refinalize`), `cut` (a run folder cut at a search
time, to be resumed with that shorter limit).
"""
from .settings import BUDGETS, PROXY_BUDGETS, Budget, Constraints, DataRef, RunSpec
from .evaluators.base import EvalContext, Evaluator, register_evaluator
from .evaluators.registry import evaluator_names, make_evaluator
from .evaluators.common import candidate_seed, exit_rule
from .evaluators.proxy import ProxyEvaluator
from .evaluators.supernet import SupernetEvaluator
from .explain import explain_no_admissible
from .problem import EENNProblem, GenomeRepair, make_algorithm, make_termination
from .pool import CandidatePool
from .backends import pin_threads
from .runner import refinalize, resume_search, search
from .cut import cut_run

__all__ = ["BUDGETS", "PROXY_BUDGETS", "Budget", "Constraints", "DataRef", "RunSpec", "EvalContext", "Evaluator", "evaluator_names",
           "make_evaluator", "register_evaluator", "candidate_seed", "exit_rule", "ProxyEvaluator", "SupernetEvaluator",
           "explain_no_admissible", "EENNProblem", "GenomeRepair", "make_algorithm", "make_termination",
           "CandidatePool", "pin_threads", "search", "resume_search", "refinalize", "cut_run"]

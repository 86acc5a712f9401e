"""The evaluator contract: how the search judges a candidate, and the registry of evaluators by name.

An evaluator is an object with

* ``name`` (class attribute): the name `search(..., evaluator="name")` and ``--evaluator name`` use;
* ``setup(context)``: one-time work of a run, in the search process, before any candidate (e.g. training
  shared weights). Its output belongs in ``context.run_dir`` so that a resumed run, and worker processes,
  find it there instead of doing the work again;
* ``evaluate(genome) -> CandidateRecord``: judge one candidate (deterministic for the run's seed). Runs in
  the search process or, pickled with the context, in a worker process or on a Dask worker;
* ``finalize(record, out_dir) -> FinalRecord``: the final training / measurement of an admissible
  candidate, saving its model under ``out_dir``;
* ``to_dict()``: its name and settings (part of the run fingerprint: a resume must use the same);
* optionally ``rescore(records) -> records``: judge search records again more faithfully and cheaply (the
  supernet evaluator: on the whole validation split) before the final stage chooses its finalists
  (`Budget.rescore`); an evaluator without it is never asked.
* optionally ``screen(records) -> records``: judge records at a middle fidelity (the supernet evaluator: a brief
  fine-tune each) before the final stage chooses its finalists among them (`Budget.screen`); an evaluator
  without it is never asked.
* optionally ``prepare_final(run_tasks, workers)``: work every finalist shares, done once before the final stage
  re-trains them (the supernet evaluator: the distillation targets, split over the workers and kept in the run
  folder); ``run_tasks(task, items)`` runs ``task(evaluator, index, item)`` through the run's backend;
* optionally ``tasks_per_process`` (a whole number): evaluate candidates in local worker processes replaced after
  that many candidates each, also with one worker (the proxy evaluator: TensorFlow keeps every graph traced for
  a candidate's training, so a process that trains many of them grows without bound).

The search, the backends and resume know nothing else about how a candidate is judged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Protocol, Type, runtime_checkable

from ...errors import ConstraintError
from ...genome import Genome
from ...records import CandidateRecord, FinalRecord

if TYPE_CHECKING:
    from ...data import Dataset

__all__ = ["Evaluator", "EvalContext", "register_evaluator", "REGISTRY"]


@dataclass
class EvalContext:
    """What an evaluator may use: the run's space, data, settings and folder.

    `data` is the full `nachos_tf.data.Dataset` (train/val/test); when the run was started from a
    `DataRef`, worker processes rebuild it from `data_ref` instead of receiving the arrays (see
    `dataset()`). `constraints` are the search-time ones (accuracy floor lowered by the budget's slack);
    `target` the user's (what the final stage checks).

    Attributes:
        space: the run's `SearchSpace`.
        constraints: the search-time `Constraints`.
        target: the user's `Constraints`.
        budget: the run's `Budget`.
        seed: the run's seed.
        loss: the training loss (`LossConfig`).
        threads: TensorFlow threads of every process that trains for the run.
        run_dir: the run folder.
        data: the `Dataset`, or None (rebuilt from `data_ref`).
        data_ref: the `DataRef` the data was loaded from, or None.
        progress: called with a progress line (None: silent).
        cache: per-process scratch space of the evaluator (not shipped to workers).
    """

    space: Any
    constraints: Any
    target: Any
    budget: Any
    seed: int
    loss: Any
    threads: int
    run_dir: Path
    data: Any = None
    data_ref: Any = None
    progress: Optional[Callable[[str], Any]] = field(default=None, repr=False)
    cache: Dict[str, Any] = field(default_factory=dict, repr=False)

    def dataset(self) -> Dataset:
        """The run's Dataset (loaded from the DataRef once per process when not carried along).

        Returns:
            The `nachos_tf.data.Dataset`.

        Raises:
            ConstraintError: the context has neither data nor a DataRef.
        """
        if self.data is None:
            if self.data_ref is None:
                raise ConstraintError("the evaluation context has neither data nor a DataRef")
            self.data = self.data_ref.load()
        return self.data

    def say(self, line: str) -> None:
        """A progress line (nothing when the run is silent).

        Args:
            line: the line to report.
        """
        if self.progress:
            self.progress(line)

    def __getstate__(self) -> Dict[str, Any]:
        """Shipped to workers: arrays only when there is no DataRef to rebuild them; no callbacks or caches."""
        state = dict(self.__dict__)
        state["progress"] = None
        state["cache"] = {}
        if self.data_ref is not None:
            state["data"] = None
        return state


@runtime_checkable
class Evaluator(Protocol):
    """The protocol every evaluator implements (see the module docstring).

    Attributes:
        name: the name the evaluator is registered and chosen by (a class attribute).
    """

    name: str

    def setup(self, context: EvalContext) -> None:
        """One-time work of a run (in the search process), before the first candidate.

        Args:
            context: the run's evaluation context.
        """

    def evaluate(self, genome: Genome) -> CandidateRecord:
        """Judge one candidate.

        Args:
            genome: the candidate.

        Returns:
            Its search-stage record.
        """

    def finalize(self, record: CandidateRecord, out_dir: Path) -> FinalRecord:
        """Final training and measurement of an admissible candidate; saves its model under out_dir.

        Args:
            record: the candidate's search-stage record.
            out_dir: the folder its model is saved in.

        Returns:
            Its final record.
        """

    def to_dict(self) -> Dict[str, Any]:
        """Name and settings (part of the run fingerprint).

        Returns:
            {"name": ..., setting: value, ...} (JSON-ready).
        """


REGISTRY: Dict[str, Type] = {}


def register_evaluator(cls: Type) -> Type:
    """Class decorator: make an evaluator class known by its ``name`` (for `search(evaluator="name")`,
    ``--evaluator name`` and resuming runs).

    Args:
        cls: the evaluator class.

    Returns:
        The class, unchanged.

    Raises:
        ConstraintError: the class has no string ``name`` or misses a protocol method.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConstraintError(f"evaluator class {cls.__name__} needs a class attribute `name` (a string)")
    missing = [m for m in ("setup", "evaluate", "finalize", "to_dict") if not callable(getattr(cls, m, None))]
    if missing:
        raise ConstraintError(f"evaluator class {cls.__name__} lacks {', '.join(missing)}")
    REGISTRY[name] = cls
    return cls

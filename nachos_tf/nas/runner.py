"""The entry points: `search` (a new run, or resume=True) and `resume_search` (a run folder's own settings).

`search` wraps exactly pymoo's ``minimize(problem, algorithm, termination, seed=..., callback=...)``: the run's
evaluator is set up once, candidates go through the pool (archive first, then the backend), then the
admissible front is finalized by the same evaluator and the run folder gets pareto.json and its report.

Resume replays: the same seeded algorithm runs again and every genome already in the archive is answered
from it without evaluating, so the populations, and the result, are those of an uninterrupted run.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple, Union

import numpy as np

from ..errors import ConstraintError, NoAdmissibleSolutionError, RunDirError, WorkerError
from ..records import CandidateRecord
from ..results import ARCHIVE, CONFIG, MODELS, PARETO, Archive, SearchResult, admissible_front, load_run, read_json, \
    split_records, write_json
from .backends import default_threads, make_backend, pin_threads
from .evaluators.base import EvalContext
from .evaluators.registry import evaluator_from_dict, make_evaluator
from .evaluators.common import exit_rule
from .explain import explain_no_admissible
from .final import final_stage
from .interrupt import InterruptGuard
from .lock import RunLock
from .clock import SearchClock
from .pool import CandidatePool
from .problem import EENNProblem, ProgressCallback, make_algorithm, make_termination
from .constraints import number as _number
from .settings import Budget, Constraints, DataRef, RunSpec

if TYPE_CHECKING:
    from ..data import Dataset
    from ..losses import LossConfig
    from ..space import SearchSpace

__all__ = ["search", "resume_search", "refinalize", "FINAL_FIELDS"]

Progress = Optional[Callable[[str], Any]]


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


def _data_info(data, ref: Optional[DataRef]) -> dict:
    return {"name": getattr(data, "name", "?"), "source": getattr(data, "source", ""),
            "ref": None if ref is None else ref.to_dict(), "n_train": int(len(data.y_train)),
            "n_val": int(len(data.y_val)), "n_test": int(len(data.y_test)),
            "input_shape": [int(s) for s in data.input_shape], "num_classes": int(data.num_classes)}


def _check_space(space, data) -> None:
    from ..space import SearchSpace

    if not isinstance(space, SearchSpace):
        raise ConstraintError(f"space must be a nachos_tf.SearchSpace, got {type(space).__name__}")
    if tuple(space.input_shape) != tuple(data.input_shape) or space.num_classes != data.num_classes:
        raise ConstraintError(f"the space is for input {tuple(space.input_shape)} / {space.num_classes} classes, "
                              f"the data has {tuple(data.input_shape)} / {data.num_classes}")
    if len(data.y_val) == 0 or len(data.y_test) == 0:
        raise ConstraintError("the search needs non-empty validation (thresholds) and test (figures) splits")


def _run_folder(out_dir, resume: bool) -> Path:
    """The run folder: an existing one to resume, or a new (empty or absent) one, created here."""
    if out_dir is None:
        if resume:
            raise RunDirError("resume=True needs out_dir (the folder of the interrupted run)")
        out_dir = tempfile.mkdtemp(prefix="nachos-run-")
    d = Path(out_dir).expanduser()
    if resume:
        if not d.is_dir():
            raise RunDirError(f"cannot resume: run folder {d} does not exist")
        return d
    if d.exists() and (not d.is_dir() or any(d.iterdir())):
        raise RunDirError(f"{d} is not empty; choose a new folder, or resume the run in it "
                          "(resume=True / --resume)")
    try:
        (d / MODELS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create run folder {d}: {exc.strerror or exc}") from None
    return d


def _open_run(d: Path, resume: bool, spec: RunSpec) -> Tuple[Archive, List[Any], Optional[RunSpec]]:
    """(archive, its records, the settings of the run to resume or None); to resume, the folder's settings must
    match `spec` (under the run lock)."""
    archive = Archive(d / ARCHIVE)
    records: List[Any] = []
    old = None
    if resume:
        old = RunSpec.from_dict(read_json(d / CONFIG, "the settings of the run to resume"), str(d / CONFIG))
        diff = old.differences(spec)
        if diff:
            raise RunDirError(f"cannot resume {d}: its settings differ in {', '.join(diff)}; resume with the "
                              "same settings or start a new --out folder")
        archive.open()                    # cuts a truncated last line
        records = archive.records()
    try:
        (d / MODELS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot write in run folder {d}: {exc.strerror or exc}") from None
    return archive, records, old


def _check_replayed(records: List[CandidateRecord], space, archive: Archive) -> None:
    """A replayed record must describe a genome of this space (the archive may have been edited)."""
    from ..genome import Genome

    for r in records:
        try:
            space.validate(Genome.from_dict(r.genome))
        except Exception as exc:  # noqa: BLE001 - any reason: the line is not this run's
            raise RunDirError(f"{archive.path}, candidate {r.id}: its genome is not a member of this run's space "
                              f"({str(exc)[:160]})") from None
        if r.measured_ok and r.exit_macs and not (
                r.exit_macs[0] - 1e-6 <= r.metrics.expected_macs <= r.exit_macs[-1] + 1e-6):
            raise RunDirError(f"{archive.path}, candidate {r.id}: expected MACs {r.metrics.expected_macs:g} lie "
                              f"outside its staged exit costs [{r.exit_macs[0]:g}, {r.exit_macs[-1]:g}]")


def search(space: SearchSpace, data: Union[Dataset, DataRef, str], constraints: Constraints,
           budget: Union[str, Budget] = "quick", seed: int = 0,
           out_dir: Optional[Union[str, os.PathLike]] = None, resume: bool = False, workers: int = 1,
           dask_scheduler: Optional[str] = None, generations: Optional[int] = None,
           population: Optional[int] = None, progress: Progress = print, loss: Optional[LossConfig] = None,
           evaluator: Any = None,
           threads: Optional[int] = None, algorithm: str = "nsga2",
           max_seconds: Optional[float] = None) -> SearchResult:
    """Joint backbone + exit NAS under `constraints`; returns the admissible Pareto set.

    Args:
        space: the `SearchSpace`.
        data: a `nachos_tf.data.Dataset`, a `DataRef` or a dataset name (workers then rebuild it locally).
        constraints: what an admissible EENN must meet.
        budget: "quick" | "standard" | "thorough" or a `Budget`; generations / population override it.
        seed: the run's seed (sampling, candidate training, data subsets).
        out_dir: the run folder (a new temporary folder when None).
        resume: continue an interrupted run in out_dir, evaluating nothing twice.
        workers: local worker processes: they judge the candidates and then re-train and measure the finalists,
            in parallel, with the results of one process (same `threads`).
        dask_scheduler: "tcp://host:port" of a running Dask cluster (the final stage then runs in this process).
        generations: overrides the budget's generations (None: kept).
        population: overrides the budget's population (None: kept).
        progress: called with one line per candidate and generation (None: silent).
        loss: the training loss (default: NACHOS with max_macs as the budget).
        evaluator: how candidates are judged: a registered name ("supernet", "proxy", ...) or an object
            implementing the `Evaluator` protocol (default: "supernet" for a space whose backbone family
            supports one, i.e. `SearchSpace.mcu`, which uses the shipped Fashion-MNIST supernet, a cached
            one or trains one once per run; "proxy", a brief training per candidate, otherwise).
        threads: TensorFlow threads of every process that trains for this run (default: this process's
            count); results depend on it, so workers and resumed runs use the run's value.
        algorithm: "nsga2" (default) or "random" (pymoo RandomSearch, a baseline).
        max_seconds: also stop the search (not the final stage) once this much time has passed, at the
            end of the running generation. With workers > 1 a script must guard its entry code with
            ``if __name__ == "__main__":`` (worker processes are spawned).

    Returns:
        The `SearchResult` (admissible set, archive, hypervolume, run folder).

    Raises:
        ConstraintError: a setting is invalid (before anything is written).
        RunDirError: out_dir is not empty (new run), or its settings differ (resume), or it is locked.
        NoAdmissibleSolutionError: nothing is admissible (with the closest candidates and what to relax).
        KeyboardInterrupt: on Ctrl-C, after saying how to resume; the archive stays intact.
    """
    from pymoo.optimize import minimize

    from ..losses import LossConfig

    if not isinstance(constraints, Constraints):
        raise ConstraintError(f"constraints must be a nachos_tf.Constraints, got {type(constraints).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConstraintError(f"seed must be a whole number >= 0, got {seed!r}")
    dataset, ref = _resolve_data(data)
    _check_space(space, dataset)
    loss = LossConfig.nachos(mac_budget=constraints.max_macs) if loss is None else loss
    ev = make_evaluator(evaluator, default="supernet" if space.family.supports_supernet else "proxy")
    budget = Budget.resolve(budget, generations, population, evaluator=ev.name)
    threads = default_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConstraintError(f"threads must be a whole number >= 1, got {threads!r}")
    pin_threads(int(threads))             # the final stage (and local evaluation) run here
    make_algorithm(space, 2, algorithm)   # rejects an unknown name before anything is written
    if max_seconds is not None and not _number("max_seconds", max_seconds) > 0:
        raise ConstraintError(f"max_seconds must be > 0, got {max_seconds!r}")
    spec = RunSpec(seed=int(seed), constraints=constraints, budget=budget, space=space.to_dict(),
                   data=_data_info(dataset, ref), loss=loss.to_dict(), rule=exit_rule(space), evaluator=ev.to_dict(),
                   algorithm=algorithm, max_seconds=max_seconds, threads=int(threads), workers=int(workers),
                   dask_scheduler=dask_scheduler, resumed=bool(resume))
    out = _run_folder(out_dir, resume)
    with RunLock(out), InterruptGuard():
        archive, records, old = _open_run(out, resume, spec)
        searched, finals = split_records(records)
        clock = SearchClock.open(out, spec.resumed, searched, old.started if old else "", old.workers if old else 1)
        write_json(out / CONFIG, spec.to_dict())
        return _run(space, dataset, ref, spec, ev, out, archive, (searched, finals), clock, progress, minimize)


def _run(space, dataset, ref, spec: RunSpec, ev, out: Path, archive: Archive, records, clock: SearchClock,
         progress, minimize):
    say = progress or (lambda s: None)
    searched, finals = records
    _check_replayed(searched, space, archive)
    if spec.resumed:
        say(f"resuming {out}: {len(searched)} candidates in the archive will not be trained again"
            + (f"; {clock.seconds_before:.0f} s of the {spec.max_seconds:g} s time limit already spent"
               if spec.max_seconds is not None else ""))
    search_c = spec.search_constraints
    from ..losses import LossConfig

    ctx = EvalContext(space=space, constraints=search_c, target=spec.constraints, budget=spec.budget, seed=spec.seed,
                      loss=LossConfig.from_dict(spec.loss), threads=spec.threads, run_dir=out, data=dataset,
                      data_ref=ref, progress=progress)
    ev.setup(ctx)
    backend = make_backend(spec.workers, spec.dask_scheduler, ev)
    confirm = getattr(ev, "rescore", None) if spec.budget.confirm else None
    pool = CandidatePool(archive, searched, backend, progress, confirm, on_record=clock.tick)
    callback = ProgressCallback(pool, search_c, spec.budget, progress, backend.workers, spec.max_seconds, clock)
    clock.start()                         # the search (not the evaluator's one-time setup) starts here
    try:
        minimize(EENNProblem(space, search_c, pool), make_algorithm(space, spec.budget.population, spec.algorithm,
                                                                   spec.budget.mutation_rate, spec.budget.mutation),
                 make_termination(spec.budget.generations, spec.max_seconds, clock, pool.replaying), seed=spec.seed,
                 callback=callback, verbose=False, copy_algorithm=False)
        clock.stop()                      # the final stage is not search time
        if not admissible_front(pool.records):
            write_json(out / PARETO, {"constraints": spec.constraints.to_dict(), "solutions": []})
            _report(out)
            raise NoAdmissibleSolutionError(explain_no_admissible(pool.records, search_c, spec.constraints)
                                            + f"\n(run folder: {out})")
        doc = final_stage(pool, finals, ev, spec.constraints, spec.budget, out, progress, data=ctx.dataset(),
                          backend=backend)  # local workers re-train the finalists in parallel
    except KeyboardInterrupt:
        clock.save()                      # (stopped with the search: the final stage does not count)
        say(f"interrupted: {_safe(archive, out)}")
        raise
    except WorkerError as exc:
        clock.save()
        raise WorkerError(f"{exc}: {_safe(archive, out)}") from None
    finally:
        backend.close()
    return _finish(out, doc)


def _safe(archive: Archive, out: Path) -> str:
    """What is safe after a stop, and how to continue."""
    n = len(archive.read()[0])
    return (f"{n} finished evaluations are safe in {out / ARCHIVE}; continue with `nachos-tf search --resume {out}` "
            f"(or search(..., out_dir='{out}', resume=True))")


def _finish(out: Path, doc) -> SearchResult:
    """The report of a finished run, and its result (NoAdmissibleSolutionError when the final stage kept none)."""
    _report(out)
    result = load_run(out)
    if not doc["solutions"]:
        raise NoAdmissibleSolutionError(
            f"no admissible solution after re-training: {len(result.final_records)} front members met the "
            "constraints in the search but not after re-training on more data:\n"
            + "\n".join(f"  {r.id}: {r.dropped}" for r in result.final_records if r.dropped)
            + "\nto relax: loosen the constraints slightly, or use a budget whose proxy training is closer to "
              f"the final one.\n(run folder: {out})")
    return result


def _report(out: Path) -> None:
    from ..report import report

    report(out)


def resume_search(out_dir: Union[str, os.PathLike], workers: int = 1, dask_scheduler: Optional[str] = None,
                  progress: Progress = print, data: Optional[Union[Dataset, DataRef, str]] = None) -> SearchResult:
    """Continue an interrupted run with the settings in its config.json.

    Args:
        out_dir: the run folder.
        workers: local worker processes (need not match the first run's).
        dask_scheduler: "tcp://host:port" of a running Dask cluster (need not match the first run's).
        progress: progress lines (None: silent).
        data: needed only if the run was started from an in-memory Dataset.

    Returns:
        The `SearchResult`.

    Raises:
        RunDirError: the folder is missing, its config.json is malformed, or data is needed.
    """
    d = Path(out_dir).expanduser()
    if not d.is_dir():
        raise RunDirError(f"cannot resume: run folder {d} does not exist")
    spec = RunSpec.from_dict(read_json(d / CONFIG, "the settings of the run to resume"), str(d / CONFIG))
    space, loss, evaluator, data = _rebuild(d, spec, data)
    return search(space, data, spec.constraints, spec.budget, seed=spec.seed, out_dir=d, resume=True,
                  workers=workers, dask_scheduler=dask_scheduler, progress=progress, loss=loss, evaluator=evaluator,
                  threads=spec.threads, algorithm=spec.algorithm, max_seconds=spec.max_seconds)


def _rebuild(d: Path, spec: RunSpec, data) -> Tuple[Any, Any, Any, Any]:
    """(space, loss, evaluator, data) of a run folder's config.json; RunDirError when it cannot be rebuilt."""
    from ..losses import LossConfig
    from ..space import SearchSpace

    try:
        space = SearchSpace.from_dict(spec.space)
        loss = LossConfig.from_dict(spec.loss)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RunDirError(f"{d / CONFIG} is not a nachos-tf search config ({exc})") from None
    try:
        evaluator = evaluator_from_dict(spec.evaluator)
    except ConstraintError as exc:
        raise RunDirError(f"{d / CONFIG}: {exc}") from None
    ref = spec.data.get("ref")
    if data is None:
        if ref is None:
            raise RunDirError(f"the run in {d} was started from an in-memory dataset; pass data= to resume it")
        if not isinstance(ref, dict):
            raise RunDirError(f"{d / CONFIG}: field 'data.ref' must be a JSON object")
        try:
            data = DataRef(**ref)
        except TypeError as exc:
            raise RunDirError(f"{d / CONFIG}: field 'data.ref' is malformed ({exc})") from None
    return space, loss, evaluator, data


#: Budget fields `refinalize` may change: the final stage's (the search's own stay as they were).
FINAL_FIELDS = ("final_train", "final_epochs", "final_head_epochs", "final_schedule", "max_final", "final_macs",
                "rescore", "finalists", "screen", "screen_train")


def refinalize(run_dir: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], progress: Progress = print,
               data: Optional[Union[Dataset, DataRef, str]] = None, workers: int = 1, **changes: Any) -> SearchResult:
    """Run the final stage of a finished search again, into a new run folder, with a changed final budget.

    Nothing is searched again: the search's candidate lines of ``archive.jsonl`` are copied as they are, with
    the evaluator's one-time outputs (e.g. the run's ``supernet/`` folder). Then the final stage chooses,
    re-trains and measures the finalists under the new budget (e.g. more finalists, a longer fine-tune) and
    writes pareto.json and the report. The original folder is only read. An interrupted call continues when
    called again with the same folders and changes.

    Args:
        run_dir: the folder of a search (finished, or stopped after its search stage).
        out_dir: the new run folder (absent or empty; or an interrupted refinalize with the same settings).
        progress: progress lines (None: silent).
        data: needed only if the run was started from an in-memory Dataset.
        workers: local worker processes re-training the finalists in parallel (same results; a script must
            then guard its entry code with ``if __name__ == "__main__":``).
        **changes: Budget fields of the final stage (`FINAL_FIELDS`), e.g. ``max_final=4, final_epochs=5``.

    Returns:
        The `SearchResult` of the new folder.

    Raises:
        ConstraintError: a change names another field, or has an invalid value.
        RunDirError: run_dir is not a search folder or holds no candidate; out_dir is not empty and is not an
            interrupted refinalize of the same settings; a folder is locked.
        NoAdmissibleSolutionError: no candidate is admissible, or none stays admissible after re-training.
    """
    import dataclasses
    import datetime as _dt
    import shutil
    import sys

    from .settings import versions

    src = Path(run_dir).expanduser()
    bad = sorted(set(changes) - set(FINAL_FIELDS))
    if bad:
        raise ConstraintError(f"refinalize changes the final stage only ({', '.join(FINAL_FIELDS)}); not "
                              f"{', '.join(bad)}")
    if not (src / CONFIG).is_file():
        raise RunDirError(f"{src} is not a search run folder (no {CONFIG})")
    spec = RunSpec.from_dict(read_json(src / CONFIG, "the settings of the run to finalize again"), str(src / CONFIG))
    budget = spec.budget.with_(**changes)
    space, loss, ev, data = _rebuild(src, spec, data)
    dataset, ref = _resolve_data(data)
    searched, _ = split_records(Archive(src / ARCHIVE).records())
    if not searched:
        raise RunDirError(f"{src / ARCHIVE} holds no evaluated candidate")
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    new = dataclasses.replace(spec, budget=budget, resumed=False, versions=versions(), argv=list(sys.argv),
                              started=now)
    out = Path(out_dir).expanduser()
    again = (out / CONFIG).is_file()
    if out.resolve() == src.resolve():
        raise RunDirError(f"refinalize writes a new run folder; {out} is the search's own")
    if again:
        old = RunSpec.from_dict(read_json(out / CONFIG, "the settings of the refinalize to continue"),
                                str(out / CONFIG))
        diff = old.differences(new)
        if diff:
            raise RunDirError(f"{out} holds another run (its settings differ in {', '.join(diff)}); choose a new "
                              "folder")
    else:
        out = _run_folder(out, False)
    with RunLock(out), InterruptGuard():
        archive = Archive(out / ARCHIVE)
        if not again:
            for sub in sorted(p for p in src.iterdir() if p.is_dir() and p.name != MODELS):
                shutil.copytree(sub, out / sub.name, dirs_exist_ok=True)     # the evaluator's one-time outputs
            for rec in searched:
                archive.append(rec)
        write_json(out / CONFIG, dict(new.to_dict(), finalized_from=str(src.resolve())))
        archive.open()
        searched, finals = split_records(archive.records())
        say = progress or (lambda line: None)
        say(f"finalizing again the search in {src}: {len(searched)} candidates, final budget "
            + ", ".join(f"{k}={v}" for k, v in sorted(changes.items())))
        ctx = EvalContext(space=space, constraints=new.search_constraints, target=new.constraints, budget=budget,
                          seed=new.seed, loss=loss, threads=new.threads, run_dir=out,
                          data=dataset, data_ref=ref, progress=progress)
        pin_threads(int(new.threads))
        ev.setup(ctx)
        pool = CandidatePool(archive, searched, None, progress)
        if not admissible_front(pool.records):
            raise NoAdmissibleSolutionError(explain_no_admissible(pool.records, new.search_constraints,
                                                                  new.constraints) + f"\n(run folder: {src})")
        backend = make_backend(workers, None, ev)
        try:
            doc = final_stage(pool, finals, ev, new.constraints, budget, out, progress, data=dataset, backend=backend)
        except KeyboardInterrupt:
            say(f"interrupted: finished re-trainings are safe in {out / ARCHIVE}; run the same refinalize again "
                "to continue")
            raise
        finally:
            backend.close()
    return _finish(out, doc)

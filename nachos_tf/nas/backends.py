"""Where candidates are evaluated: this process, N local processes, or a Dask cluster.

Every backend runs the run's evaluator (after its `setup`) on genomes and yields ``(index, record)`` as
each finishes. A failing candidate becomes a `CandidateRecord.failed` record (one broken candidate must not
end a long search); a `ConstraintError` (a wrong setting) stops the search. Every process pins TensorFlow
to the run's thread count, which is what makes a worker's result equal to this process's.

`map(task, items)` runs other work of the run with the workers' evaluator, e.g. the final stage's
re-trainings (`nas.final`): local worker processes run it in parallel; a Dask backend runs it in this process
(the tasks write models into the run folder, which Dask workers on other machines may not see).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

from ..errors import ConstraintError, NachosError, WorkerError
from ..genome import Genome
from ..records import CandidateRecord

__all__ = ["LocalBackend", "ProcessBackend", "DaskBackend", "make_backend", "pin_threads", "default_threads"]

_PROCESS: Dict[str, Any] = {}   # per worker process: its copy of the evaluator
#: work for `map`: ``task(evaluator, index, item) -> (index, result)``, a module-level function
Task = Callable[[Any, int, Any], Tuple[int, Any]]


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
    equal to this one's.

    Raises:
        ConstraintError: TensorFlow already started with another count.
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


def run_one(evaluator, index: int, genome: Dict[str, Any]) -> Tuple[int, CandidateRecord]:
    """Evaluate one genome (given as its dict) with `evaluator`; failures become failed records."""
    ctx = evaluator.context
    pin_threads(ctx.threads)
    t0 = time.time()
    try:
        rec = evaluator.evaluate(Genome.from_dict(genome))
        if not isinstance(rec, CandidateRecord):
            raise TypeError(f"{type(evaluator).__name__}.evaluate returned {type(rec).__name__}, not a "
                            "CandidateRecord")
    except ConstraintError:
        raise                      # a setting is wrong: stop the search, do not blame the candidate
    except Exception as exc:       # noqa: BLE001 - one broken candidate must not end a long search
        c = ctx.constraints
        rec = CandidateRecord.failed(genome, exc, max_macs=c.max_macs, max_flash=c.max_flash, max_ram=c.max_ram,
                                     seconds=time.time() - t0)
    rec.genome = dict(genome)
    rec.threads = ctx.threads
    return index, rec


def _exit_with_parent(parent_pid: int, every: float = 2.0) -> None:
    """End this worker process when the search process is gone (e.g. kill -9), instead of idling on."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="nachos-parent-watch", daemon=True).start()


def _process_init(evaluator, parent_pid: int) -> None:
    _exit_with_parent(parent_pid)
    pin_threads(evaluator.context.threads)
    _PROCESS["evaluator"] = evaluator


def _process_call(task: Task, index: int, item: Any) -> Tuple[int, Any]:
    return task(_PROCESS["evaluator"], index, item)


class LocalBackend:
    """Evaluates candidates one after another in this process."""

    workers = 1
    map_workers = 1          # tasks of `map` running at once

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def run(self, genomes: Sequence[Dict[str, Any]]) -> Iterator[Tuple[int, CandidateRecord]]:
        return self.map(run_one, genomes)

    def map(self, task: Task, items: Sequence[Any]) -> Iterator[Tuple[int, Any]]:
        """``task(evaluator, index, item)`` for each item, one after another in this process.

        Args:
            task: a module-level function returning ``(index, result)``.
            items: its inputs.

        Returns:
            An iterator of ``(index, result)`` in the order of `items`.
        """
        for i, item in enumerate(items):
            yield task(self.evaluator, i, item)

    def close(self) -> None:
        pass


class ProcessBackend:
    """Evaluates candidates in N local processes (spawned; each receives the evaluator once).

    Args:
        workers: processes.
        evaluator: the run's evaluator (after `setup`).
        tasks_per_process: replace the processes after about this many candidates each (None: never). For
            evaluators whose memory grows with every candidate (TensorFlow keeps every traced graph,
            tensorflow/tensorflow#124972): a fresh process starts from its initial memory again.
    """

    def __init__(self, workers: int, evaluator, tasks_per_process: Optional[int] = None):
        self.workers = int(workers)
        self.map_workers = self.workers            # `map` runs its tasks in the same processes
        self.evaluator = evaluator
        self.tasks_per_process = tasks_per_process
        self.pool = None
        self.pools_started = 0      # processes are replaced by replacing the whole pool
        self._submitted = 0         # candidates given to the current pool

    def _current_pool(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if self.pool is None:
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                            initializer=_process_init, initargs=(self.evaluator, os.getpid()))
            self.pools_started += 1
            self._submitted = 0
        return self.pool

    def _pool_used_up(self) -> bool:
        return self.tasks_per_process is not None and self._submitted >= self.tasks_per_process * self.workers

    def run(self, genomes: Sequence[Dict[str, Any]]) -> Iterator[Tuple[int, CandidateRecord]]:
        return self.map(run_one, genomes)

    def map(self, task: Task, items: Sequence[Any]) -> Iterator[Tuple[int, Any]]:
        """``task(evaluator, index, item)`` for each item, in the worker processes (at most one per process
        at a time).

        Args:
            task: a module-level function (pickled by reference) returning ``(index, result)``.
            items: its inputs (pickled).

        Returns:
            An iterator of ``(index, result)`` as each finishes.

        Raises:
            WorkerError: a worker process ended abruptly.
        """
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        # At most one task per process is in flight, so that a used-up pool is replaced as soon as its
        # last tasks finish (Python 3.11's max_tasks_per_child deadlocks with a backlog: cpython#115634).
        pending = list(enumerate(items))[::-1]
        running: set = set()
        try:
            while pending or running:
                if self._pool_used_up() and not running:
                    self.close()
                while pending and len(running) < self.workers and not self._pool_used_up():
                    i, item = pending.pop()
                    running.add(self._current_pool().submit(_process_call, task, i, item))
                    self._submitted += 1
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        self.close()
                        what = "evaluating candidates" if task is run_one else "of the run"
                        raise WorkerError(f"a worker process {what} ended abruptly (killed by the system? when "
                                          "out of memory, `dmesg` says so)") from None
                    yield result
        finally:
            for f in running:
                f.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)     # idempotent
            self.pool = None
        self._submitted = 0


class DaskBackend:
    """Sends candidates to an existing Dask distributed cluster; the evaluator (with its context) goes to
    each worker once (scattered with broadcast); a DataRef is rebuilt there, never shipped as arrays."""

    def __init__(self, address: str, evaluator):
        try:
            from dask.distributed import Client
        except ImportError:
            raise NachosError("dask_scheduler needs the 'distributed' package (pip install distributed)") from None
        try:
            self.client = Client(address, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise NachosError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self.map_workers = 1                       # `map` runs here, one task after another
        self.evaluator = self.client.scatter(evaluator, broadcast=True)
        self.here = LocalBackend(evaluator)

    def run(self, genomes: Sequence[Dict[str, Any]]) -> Iterator[Tuple[int, CandidateRecord]]:
        from dask.distributed import as_completed

        futures = [self.client.submit(run_one, self.evaluator, i, g, pure=False) for i, g in enumerate(genomes)]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            self.client.cancel(futures)

    def map(self, task: Task, items: Sequence[Any]) -> Iterator[Tuple[int, Any]]:
        """``task(evaluator, index, item)`` for each item in this process (`LocalBackend.map`): the final stage's
        tasks write into the run folder, which workers on other machines may not see.

        Args:
            task: a function returning ``(index, result)``.
            items: its inputs.

        Returns:
            An iterator of ``(index, result)`` in the order of `items`.
        """
        return self.here.map(task, items)

    def close(self) -> None:
        if self.client.status not in ("closed", "closing"):
            self.client.close()


def make_backend(workers: int, dask_scheduler: Optional[str], evaluator):
    """The backend for `workers` local processes or a Dask scheduler address (else this process).

    An evaluator with a ``tasks_per_process`` attribute (a whole number) runs in processes replaced after
    that many candidates each, also with one worker: its memory grows with every candidate. On Dask, start
    the workers with ``--lifetime`` for the same effect.

    Raises:
        ConstraintError: workers is not a whole number >= 1.
    """
    import numpy as np

    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConstraintError(f"workers must be a whole number >= 1, got {workers!r}")
    if dask_scheduler:
        return DaskBackend(dask_scheduler, evaluator)
    per = getattr(evaluator, "tasks_per_process", None)
    if per is not None:
        return ProcessBackend(int(workers), evaluator, tasks_per_process=int(per))
    if workers > 1:
        return ProcessBackend(int(workers), evaluator)
    return LocalBackend(evaluator)

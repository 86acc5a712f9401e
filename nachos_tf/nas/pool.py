"""The candidate pool: archive look-up (resume replays from it), dispatch to a backend, append as results come.

Candidate ids are given in the order genomes are first asked for (c0000, c0001, ...), so a replayed run
gives every candidate the same id. Each new result is appended to ``archive.jsonl`` (fsynced) as it finishes.
With a ``confirm`` function (`Budget.confirm`), the candidates that enter the admissible front are judged
again after each batch and their new line appended too (the newest line of a candidate is the one read back).
"""
from __future__ import annotations

import hashlib
from typing import Callable, Dict, List, Optional, Sequence

from ..genome import Genome
from ..policy import exported_stages
from ..records import CandidateRecord, utc_now
from ..results import Archive, admissible_front
from .interrupt import check_interrupt
from ..macs import human as _human

__all__ = ["CandidatePool", "candidate_line", "fmt_time"]


def fmt_time(s: float) -> str:
    """Seconds as 'MmSSs' (or 'HhMMm')."""
    s = max(0, int(round(s)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def candidate_line(rec: CandidateRecord) -> str:
    """The progress line of one evaluated candidate."""
    m = rec.metrics
    if rec.error:
        return f"  {rec.id}: failed ({rec.error[:120]})"
    if rec.pruned:
        return f"  {rec.id}: not trained: {rec.pruned}"
    missed = [n for n, v in rec.constraints.items() if v is not None and v > 0]
    state = "feasible" if rec.feasible else "infeasible" + (f" ({', '.join(missed)})" if missed else "")
    n = len(rec.exit_macs)
    kept = exported_stages(rec.thresholds) if len(rec.thresholds) == n - 1 else n
    exits = f"{n} exits" + (f", every image out by exit {kept - 1}" if kept < n else "")
    return (f"  {rec.id}: val acc {m.accuracy:.4f}, E[MACs] {_human(m.expected_macs)} "
            f"(full {_human(rec.exit_macs[-1])}, {exits}), {state}, {fmt_time(rec.seconds)}")


class CandidatePool:
    """Answers batches of genomes: from the archive when already evaluated, else through the backend.

    Args:
        archive: the run's archive (new records are appended to it).
        records: search-stage records already in the archive (an interrupted run's).
        backend: where new candidates are evaluated (`nachos_tf.nas.backends`).
        progress: called with one line per evaluated candidate (None: silent).
        confirm: judges candidates again on more data (the evaluator's ``rescore``: records in, new records
            with ``extra["rescored"]`` out); called after each batch with the admissible-front members not
            judged that way yet, until the front holds none (None: off).
        on_record: called with each new record once it is archived (the search clock; None: nothing).
    """

    def __init__(self, archive: Archive, records: Sequence[CandidateRecord], backend,
                 progress: Optional[Callable[[str], object]] = None,
                 confirm: Optional[Callable[[List[CandidateRecord]], List[CandidateRecord]]] = None,
                 on_record: Optional[Callable[[CandidateRecord], object]] = None):
        self.archive, self.backend, self.progress, self.confirm = archive, backend, progress, confirm
        self.on_record = on_record
        self.confirmed = {str(r.id) for r in records if r.extra.get("rescored")}
        self.confirmations = 0    # candidates judged again in this process run
        self.by_key: Dict[str, CandidateRecord] = {}
        for r in records:
            self.by_key[Genome.from_dict(r.genome).key()] = r
        self.archived_keys = set(self.by_key)
        self.used_ids = {str(r.id) for r in self.by_key.values()}
        self.n_seen = 0           # distinct genomes asked for in this run (archived or not)
        self.seen: set = set()
        self.replayed = 0         # answers taken from the archive of an earlier (interrupted) run
        self.evaluated = 0        # candidates evaluated in this process run
        self.eval_seconds = 0.0

    def replaying(self) -> bool:
        """Whether this (resumed) run has evaluated nothing new yet while archived candidates remain unasked:
        it is still retracing the interrupted run's path."""
        return self.evaluated == 0 and self.replayed < len(self.archived_keys)

    @property
    def records(self) -> List[CandidateRecord]:
        """Every search-stage record known (archived and new)."""
        return list(self.by_key.values())

    def _new_id(self, key: str) -> str:
        cid = f"c{self.n_seen - 1:04d}"
        if cid in self.used_ids:   # only when an archive from a different trajectory is reused
            cid = f"{cid}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"
        self.used_ids.add(cid)
        return cid

    def evaluate(self, genomes: Sequence[Genome]) -> List[CandidateRecord]:
        """One record per genome (in order); each distinct new genome is evaluated once."""
        todo: List[Dict] = []
        new: Dict[str, str] = {}
        for g in genomes:
            key = g.key()
            if key not in self.seen:
                self.seen.add(key)
                self.n_seen += 1
                if key in self.by_key:
                    self.replayed += key in self.archived_keys
                elif key not in new:
                    new[key] = self._new_id(key)
                    todo.append(g.to_dict())
        keys = list(new)
        for index, rec in self.backend.run(todo):
            key = keys[index]
            rec.id, rec.time = new[key], utc_now()
            self.archive.append(rec)
            self.by_key[key] = rec
            self.evaluated += 1
            self.eval_seconds += float(rec.seconds)
            if self.on_record is not None:
                self.on_record(rec)
            if self.progress:
                self.progress(candidate_line(rec))
            check_interrupt()             # a Ctrl-C swallowed inside TensorFlow still stops the search here
        if self.confirm is not None:
            self._confirm_front()
        return [self.by_key[g.key()] for g in genomes]

    def _confirm_front(self) -> None:
        """Judge the admissible-front members not confirmed yet again (`confirm`), replace them by the new
        figures (archived), and repeat: a member that falls off can uncover a candidate it dominated."""
        while True:
            todo = [r for r in admissible_front(self.records) if str(r.id) not in self.confirmed]
            if not todo:
                return
            self.confirmed.update(str(r.id) for r in todo)
            for rec in self.confirm(todo):
                seen = rec.extra.get("rescored")
                if not seen:                      # the evaluator judged it on the whole split already
                    continue
                self.by_key[Genome.from_dict(rec.genome).key()] = rec
                self.archive.append(rec)
                self.confirmations += 1
                if self.progress:
                    self.progress(f"  {rec.id}: on the front at val acc {seen['search_accuracy']:.4f} "
                                  f"({seen.get('search_n_val', 'a subset of')} images); on all {seen['n_val']}: "
                                  f"{rec.metrics.accuracy:.4f}, E[MACs] {_human(rec.metrics.expected_macs)}, "
                                  f"{'feasible' if rec.feasible else 'infeasible'}")
                check_interrupt()

"""The search clock: search time summed over a run's sessions, so a time limit survives an interruption.

A search with ``max_seconds`` stops at the first generation end past the limit. When it is interrupted and
resumed, the resumed process replays the archive (at no cost) and would otherwise get the whole limit again,
searching longer than an uninterrupted run. The clock keeps, in the run folder's ``search_clock.json``, the
search seconds of every session (written at most every few seconds while candidates finish, at each generation
end and when the search stops); a resumed run starts from their sum, and its time limit
(`time_limit`, a pymoo ``Termination``) counts that sum plus its own time. While the resumed run is still
replaying archived candidates it never stops, so it reaches the point where the interrupted one stood.

A run folder written before the clock existed has no such file; its earlier search time is then taken from the
archive: the time from the previous session's start (``config.json``) to its last search record, plus the
evaluation seconds of any record from before that session.
"""
from __future__ import annotations

import datetime as _dt
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import RunDirError
from ..records import CandidateRecord, utc_now
from ..results import read_json, write_json

__all__ = ["CLOCK", "SearchClock", "time_limit", "archive_search_seconds", "read_clock", "record_search_seconds"]

CLOCK = "search_clock.json"
_WRITE_EVERY = 5.0          # seconds between writes while candidates finish


def _when(stamp: str, where: str) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        raise RunDirError(f"{where}: {stamp!r:.60} is not an ISO time stamp") from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def archive_search_seconds(records: Sequence[CandidateRecord], started: str, workers: int = 1) -> float:
    """Search seconds an archive shows for a run folder without a clock file.

    Args:
        records: the run's search-stage records.
        started: when the last session began (``config.json``'s ``started``; empty: unknown, every record
            then counts by its evaluation seconds).
        workers: the run's worker count (records from before that session were evaluated that many at a time).

    Returns:
        The time from `started` to the last search record after it, plus the evaluation seconds (divided by
        `workers`) of the records from before it; 0.0 without records.

    Raises:
        RunDirError: a time stamp that is not ISO 8601.
    """
    t0 = _when(started, "config.json 'started'") if started else None
    later, earlier = [], 0.0
    for r in records:
        if not r.time or t0 is None:
            earlier += float(r.seconds)
            continue
        t = _when(r.time, f"archive record {r.id}")
        if t >= t0:
            later.append(t)
        else:
            earlier += float(r.seconds)
    last = (max(later) - t0).total_seconds() if later else 0.0
    return last + earlier / max(1, int(workers))


def read_clock(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The clock file of a run folder, checked (None when there is none).

    Args:
        run_dir: the run folder.

    Returns:
        ``{"seconds": total, "sessions": [{"started": ISO time, "seconds": s}, ...]}`` or None.

    Raises:
        RunDirError: the file is not valid JSON or its fields are not what the clock writes.
    """
    path = Path(run_dir) / CLOCK
    if not path.exists():
        return None
    doc = read_json(path, "the search time of earlier sessions")
    sessions = doc.get("sessions") if isinstance(doc, dict) else None
    if not isinstance(sessions, list):
        raise RunDirError(f"{path}: field 'sessions' must be a list")
    for i, s in enumerate(sessions):
        sec = s.get("seconds") if isinstance(s, dict) else None
        if isinstance(sec, bool) or not isinstance(sec, (int, float)) or not math.isfinite(sec) or sec < 0:
            raise RunDirError(f"{path}: session {i} must have 'seconds', a number >= 0 (got {s!r:.80})")
        if s.get("started"):              # empty: a session whose start was not recorded
            _when(s["started"], f"{path}: session {i}")
    total = sum(float(s["seconds"]) for s in sessions)
    return {"seconds": total, "sessions": [dict(s) for s in sessions]}


def record_search_seconds(records: Sequence[CandidateRecord],
                          sessions: Sequence[Dict[str, Any]]) -> List[Tuple[int, float]]:
    """The search time at which each record was written, on the run's clock (all sessions counted).

    A record written in session k (the last session started at or before its time stamp) was written at the
    seconds of sessions 0..k-1 plus its time since session k's search began.

    Args:
        records: search-stage records, each with its ``time`` stamp.
        sessions: the clock file's sessions (`read_clock`), each with ``started`` and ``seconds``.

    Returns:
        One ``(session index, search seconds)`` pair per record, in the records' order.

    Raises:
        RunDirError: a session without a start time, a record without a time stamp or written before the
            first session began.
    """
    starts = []
    for i, s in enumerate(sessions):
        if not s.get("started"):
            raise RunDirError(f"{CLOCK}: session {i} has no start time, so its records cannot be placed on the clock")
        starts.append(_when(s["started"], f"{CLOCK}: session {i}"))
    before = [sum(float(s["seconds"]) for s in sessions[:i]) for i in range(len(sessions))]
    out = []
    for r in records:
        if not r.time:
            raise RunDirError(f"archive record {r.id} has no time stamp")
        t = _when(r.time, f"archive record {r.id}")
        k = max((i for i, st in enumerate(starts) if st <= t), default=None)
        if k is None:
            raise RunDirError(f"archive record {r.id} ({r.time}) was written before the run's first session began")
        out.append((k, before[k] + (t - starts[k]).total_seconds()))
    return out


class SearchClock:
    """Search seconds of a run: earlier sessions' (from the clock file or the archive) plus this one's.

    Args:
        run_dir: the run folder (the clock file is written there).
        before: the sessions before this one (``[{"started", "seconds"}]``).
        now: time source (``time.time``; tests pass their own).
    """

    def __init__(self, run_dir: Path, before: Sequence[Dict[str, Any]] = (), now: Callable[[], float] = time.time):
        self.path = Path(run_dir) / CLOCK
        self.before: List[Dict[str, Any]] = [dict(s) for s in before]
        self.now = now
        self.started = utc_now()
        self.t0 = now()
        self._stopped: Optional[float] = None
        self._written = -math.inf

    @classmethod
    def open(cls, run_dir: Path, resumed: bool, records: Sequence[CandidateRecord], previous_start: str = "",
             workers: int = 1) -> "SearchClock":
        """The clock of a new run (nothing before it), or of a resumed one (its earlier sessions).

        Args:
            run_dir: the run folder.
            resumed: whether the run continues an interrupted one.
            records: the search-stage records already archived.
            previous_start: ``started`` of the interrupted session's config.json (used without a clock file).
            workers: the interrupted run's worker count (used without a clock file).

        Returns:
            The clock, started now.

        Raises:
            RunDirError: the clock file, or the archive's time stamps, cannot be read.
        """
        if not resumed:
            return cls(run_dir)
        doc = read_clock(run_dir)
        if doc is not None:
            return cls(run_dir, doc["sessions"])
        if not records:
            return cls(run_dir)
        return cls(run_dir, [{"started": previous_start or "", "seconds": round(
            archive_search_seconds(records, previous_start, workers), 3), "from": "archive time stamps"}])

    @property
    def seconds_before(self) -> float:
        """Search seconds of the earlier sessions."""
        return float(sum(float(s["seconds"]) for s in self.before))

    @property
    def session_seconds(self) -> float:
        """Seconds since this session's search began."""
        return max(0.0, (self.now() if self._stopped is None else self._stopped) - self.t0)

    @property
    def seconds(self) -> float:
        """Search seconds in all (earlier sessions and this one)."""
        return self.seconds_before + self.session_seconds

    def save(self, force: bool = True) -> None:
        """Write the clock file (unless `force` is False and it was written less than a few seconds ago)."""
        t = self.now()
        if not force and t - self._written < _WRITE_EVERY:
            return
        self._written = t
        write_json(self.path, {"seconds": round(self.seconds, 3), "sessions": self.before + [
            {"started": self.started, "seconds": round(self.session_seconds, 3)}]})

    def start(self) -> None:
        """This session's search begins now (after the evaluator's one-time setup)."""
        self.started, self.t0 = utc_now(), self.now()

    def stop(self) -> None:
        """The search is over: freeze this session's seconds (the final stage does not count) and write them."""
        if self._stopped is None:
            self._stopped = self.now()
        self.save()

    def tick(self, _record: Any = None) -> None:
        """A candidate finished: keep the file current (written at most every few seconds)."""
        self.save(force=False)


def time_limit(max_seconds: float, clock: SearchClock, replaying: Callable[[], bool]):
    """pymoo termination once the run's search seconds (all sessions) reach `max_seconds`.

    Checked between generations, so the generation running at the limit finishes. Never stops while
    `replaying()` is true (a resumed run still answering from its archive), so a resumed run continues
    from where the interrupted one stood and then has only the time that is left.

    Args:
        max_seconds: the limit, in seconds of search (> 0).
        clock: the run's clock (saved at every check).
        replaying: whether the run has not yet evaluated anything new while archived candidates remain.

    Returns:
        A ``pymoo.core.termination.Termination``.
    """
    from pymoo.core.termination import Termination   # here: pymoo loads slowly

    class _TimeLimit(Termination):
        def _update(self, algorithm) -> float:
            clock.save()
            progress = clock.seconds / float(max_seconds)
            return min(progress, 0.999) if replaying() else progress

    return _TimeLimit()

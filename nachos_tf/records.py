"""Typed archive records: one `CandidateRecord` per evaluated candidate, one `FinalRecord` per re-trained
front member. Built in one place (the constructors below), read through attributes, written to and read
back from ``archive.jsonl`` with exactly the JSON shape earlier versions wrote (old run folders load).

Reading validates every field's type and names the file, the line and the field that is wrong: nothing
read back from disk is trusted blindly. For code written against the JSON lines, a record also answers
``rec["metrics"]["error"]`` (a read-only view of its JSON form).
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .errors import RunDirError

STAGE_SEARCH = "search"   # archive line of a candidate evaluated by the search
STAGE_FINAL = "final"     # archive line of an admissible candidate after its final re-training

__all__ = ["Metrics", "CandidateRecord", "FinalRecord", "record_from_dict", "utc_now", "STAGE_SEARCH",
           "STAGE_FINAL"]

_NUM = (int, float)


def utc_now() -> str:
    """The time stamp written into records (UTC, seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _Check:
    """Field checks for one JSON object; errors name where the object came from (used by results too)."""

    def __init__(self, d: Any, where: str):
        if not isinstance(d, Mapping):
            raise RunDirError(f"{where}: expected a JSON object, got {type(d).__name__}")
        self.d, self.where = d, where

    def fail(self, key: str, what: str) -> RunDirError:
        return RunDirError(f"{self.where}: field '{key}' {what} (got {self.d.get(key)!r:.80})")

    def has(self, key: str) -> bool:
        return key in self.d

    def num(self, key: str, optional: bool = False, default: Any = None, lo: float = -math.inf,
            hi: float = math.inf) -> Optional[float]:
        if key not in self.d or self.d[key] is None:
            if optional:
                return default
            raise self.fail(key, "is missing" if key not in self.d else "must be a number")
        v = self.d[key]
        if isinstance(v, bool) or not isinstance(v, _NUM) or not math.isfinite(float(v)) or not lo <= v <= hi:
            raise self.fail(key, f"must be a finite number in [{lo:g}, {hi:g}]")
        return v

    def int_(self, key: str, optional: bool = False) -> Optional[int]:
        v = self.num(key, optional, lo=0)
        if v is not None and float(v) != int(v):
            raise self.fail(key, "must be a whole number")
        return None if v is None else int(v)

    def str_(self, key: str, optional: bool = False) -> Optional[str]:
        v = self.d.get(key)
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise self.fail(key, "must be a string")
        return v

    def nums(self, key: str, optional: bool = False, allow_inf: bool = False) -> Optional[List[float]]:
        v = self.d.get(key)
        if v is None and optional:
            return None
        if not isinstance(v, list):
            raise self.fail(key, "must be a list of numbers")
        out = []
        for x in v:
            if isinstance(x, str) and allow_inf and x in ("inf", "-inf", "Infinity", "-Infinity"):
                out.append(x)
                continue
            if isinstance(x, bool) or not isinstance(x, _NUM) or not math.isfinite(float(x)):
                raise self.fail(key, "must be a list of finite numbers")
            out.append(float(x))
        return out

    def obj(self, key: str, optional: bool = False) -> Optional[Mapping[str, Any]]:
        v = self.d.get(key)
        if v is None and optional:
            return None
        if not isinstance(v, Mapping):
            raise self.fail(key, "must be a JSON object")
        return v

    def bool_(self, key: str) -> bool:
        v = self.d.get(key)
        if not isinstance(v, bool):
            raise self.fail(key, "must be true or false")
        return v


class _MappingView:
    """Read-only `rec["key"]` access to a record's JSON form (for code written against the JSON lines)."""

    def to_dict(self) -> Dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.to_dict()


@dataclass
class Metrics(_MappingView):
    """What an evaluator measured for a candidate at its calibrated thresholds (validation split).

    accuracy is None when the candidate was not measured (pruned or failed); error = 1 - accuracy then
    counts as 1. expected_macs: staged costs weighted by exit rates (or the lower bound of a pruned one).
    """

    error: float
    expected_macs: float
    accuracy: Optional[float] = None
    exit_rates: Optional[List[float]] = None
    total_macs: Optional[int] = None
    params: Optional[int] = None
    flash_bytes: Optional[int] = None
    arena_bytes: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "Metrics":
        c = _Check(d, where + " metrics")
        m = cls(error=c.num("error", lo=0.0, hi=1.0), expected_macs=c.num("expected_macs", lo=0.0),
                accuracy=c.num("accuracy", optional=True, lo=0.0, hi=1.0),
                exit_rates=c.nums("exit_rates", optional=True), total_macs=c.int_("total_macs", optional=True),
                params=c.int_("params", optional=True), flash_bytes=c.int_("flash_bytes", optional=True),
                arena_bytes=c.int_("arena_bytes", optional=True))
        if m.accuracy is not None and abs(m.error - (1.0 - m.accuracy)) > 1e-6:
            raise c.fail("error", f"must equal 1 - accuracy ({1.0 - m.accuracy:.6g})")
        if m.exit_rates and (abs(sum(m.exit_rates) - 1.0) > 1e-6 or min(m.exit_rates) < 0):
            raise c.fail("exit_rates", "must be non-negative and sum to 1")
        return m


def _constraint_values(c: _Check, key: str = "constraints") -> Dict[str, Optional[float]]:
    g = c.obj(key)
    out: Dict[str, Optional[float]] = {}
    for name, v in g.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, _NUM) or not math.isfinite(float(v))):
            raise c.fail(key, f"value of '{name}' must be a finite number or null")
        out[str(name)] = None if v is None else float(v)
    for name in ("accuracy", "macs"):
        if out.get(name) is None:
            raise c.fail(key, f"must hold a number for '{name}'")
    return out


@dataclass
class CandidateRecord(_MappingView):
    """One search-stage line of ``archive.jsonl``: a candidate, how it was judged, its objectives.

    Build one with `measured`, `pruned_at_first_exit` or `failed`; the pool adds id, stage and time.
    `extra` keeps any further JSON fields an evaluator adds (written and read back unchanged).
    """

    genome: Dict[str, Any]
    metrics: Metrics
    constraints: Dict[str, Optional[float]]
    feasible: bool
    seed: Optional[int] = None
    rule: Optional[str] = None
    thresholds: List[Any] = field(default_factory=list)
    exit_macs: List[float] = field(default_factory=list)
    train_seconds: float = 0.0
    seconds: float = 0.0
    id: Optional[str] = None
    stage: str = STAGE_SEARCH
    time: Optional[str] = None
    threads: Optional[int] = None
    pruned: Optional[str] = None
    error: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- constructors (the one place)
    @classmethod
    def measured(cls, genome: Mapping[str, Any], *, seed: Optional[int], accuracy: float, exit_rates: Sequence[float],
                 expected_macs: float, exit_macs: Sequence[float], constraints: Mapping[str, Optional[float]],
                 rule: str, thresholds: Sequence[Any], params: Optional[int], flash_bytes: Optional[int] = None,
                 arena_bytes: Optional[int] = None, train_seconds: float = 0.0, seconds: float = 0.0,
                 **extra: Any) -> "CandidateRecord":
        """A candidate measured at its calibrated thresholds; feasible when every constraint value is <= 0."""
        m = Metrics(error=1.0 - float(accuracy), expected_macs=float(expected_macs), accuracy=float(accuracy),
                    exit_rates=[float(r) for r in exit_rates], total_macs=int(exit_macs[-1]),
                    params=None if params is None else int(params), flash_bytes=flash_bytes, arena_bytes=arena_bytes)
        g = dict(constraints)
        return cls(dict(genome), m, g, all(v <= 0 for v in g.values() if v is not None), seed, rule,
                   list(thresholds), [float(x) for x in exit_macs], round(float(train_seconds), 3),
                   round(float(seconds), 3), extra=dict(extra))

    @classmethod
    def pruned_at_first_exit(cls, genome: Mapping[str, Any], *, seed: Optional[int], exit_macs: Sequence[float],
                             params: Optional[int], max_macs: float, max_flash: Optional[int],
                             max_ram: Optional[int], seconds: float, reason: str) -> "CandidateRecord":
        """A candidate not trained because its first exit alone exceeds max_macs: whatever the thresholds its
        expected MACs are at least that staged cost, so it is infeasible; error 1 (not measured)."""
        g = {"accuracy": 1.0, "macs": (float(exit_macs[0]) - max_macs) / max_macs,
             "flash": None if max_flash is None else 0.0, "ram": None if max_ram is None else 0.0}
        m = Metrics(error=1.0, expected_macs=float(exit_macs[0]), total_macs=int(exit_macs[-1]),
                    params=None if params is None else int(params))
        return cls(dict(genome), m, g, False, seed, None, [], [float(x) for x in exit_macs],
                   seconds=round(float(seconds), 3), pruned=reason)

    @classmethod
    def failed(cls, genome: Mapping[str, Any], exc: BaseException, *, max_macs: float, max_flash: Optional[int],
               max_ram: Optional[int], seconds: float) -> "CandidateRecord":
        """A candidate whose evaluation raised: worst objectives, every constraint violated."""
        g = {"accuracy": 1.0, "macs": 1.0, "flash": 1.0 if max_flash else None, "ram": 1.0 if max_ram else None}
        m = Metrics(error=1.0, expected_macs=2.0 * float(max_macs), exit_rates=[])
        return cls(dict(genome), m, g, False, None, None, [], [], seconds=round(float(seconds), 3),
                   error=f"{type(exc).__name__}: {str(exc)[:500]}")

    # ---------------------------------------------------------------- objectives
    @property
    def objectives(self) -> List[float]:
        """pymoo F: [validation error, expected MACs]."""
        return [float(self.metrics.error), float(self.metrics.expected_macs)]

    def constraint_vector(self, active: Sequence[str]) -> List[float]:
        """pymoo G for the active constraint names (<= 0 met)."""
        return [float(self.constraints[n]) for n in active]

    @property
    def measured_ok(self) -> bool:
        """True when the candidate was trained and measured (not pruned, not failed)."""
        return not self.error and not self.pruned

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = dict(self.extra)
        d.update({"genome": self.genome, "metrics": self.metrics.to_dict(), "constraints": dict(self.constraints),
                  "feasible": bool(self.feasible), "seed": self.seed, "rule": self.rule,
                  "thresholds": list(self.thresholds), "exit_macs": list(self.exit_macs),
                  "train_seconds": self.train_seconds, "seconds": self.seconds, "stage": self.stage})
        for k in ("id", "time", "threads", "pruned", "error"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "archive record") -> "CandidateRecord":
        """Parse and validate one search-stage line; RunDirError naming `where` and the field."""
        c = _Check(d, where)
        known = {f.name for f in fields(cls)} - {"extra"}
        rec = cls(genome=dict(c.obj("genome")), metrics=Metrics.from_dict(c.obj("metrics"), where),
                  constraints=_constraint_values(c), feasible=c.bool_("feasible"),
                  seed=c.int_("seed", optional=True), rule=c.str_("rule", optional=True),
                  thresholds=c.nums("thresholds", allow_inf=True), exit_macs=c.nums("exit_macs"),
                  train_seconds=float(c.num("train_seconds", optional=True, default=0.0)),
                  seconds=float(c.num("seconds", optional=True, default=0.0)),
                  id=None if d.get("id") is None else str(d["id"]), stage=c.str_("stage", optional=True) or STAGE_SEARCH,
                  time=c.str_("time", optional=True), threads=c.int_("threads", optional=True),
                  pruned=c.str_("pruned", optional=True), error=c.str_("error", optional=True),
                  extra={k: v for k, v in d.items() if k not in known})
        if rec.stage != STAGE_SEARCH:
            raise c.fail("stage", f"must be '{STAGE_SEARCH}'")
        if rec.id is None:
            raise c.fail("id", "is missing")
        if rec.feasible and any(v is not None and v > 0 for v in rec.constraints.values()):
            raise c.fail("feasible", "is true but a constraint value is > 0")
        return rec


@dataclass
class FinalRecord(_MappingView):
    """One final-stage line of ``archive.jsonl``: a front member re-trained with the final budget,
    re-calibrated on validation and measured on test (and int8 on TFLM); `dropped` holds the reason when
    validation no longer meets the constraints (no model saved then)."""

    id: str
    genome: Dict[str, Any]
    seed: Optional[int]
    rule: Optional[str]
    thresholds: List[Any]
    exit_macs: List[float]
    val: Dict[str, Any]
    test: Dict[str, Any]
    constraints: Dict[str, Optional[float]]
    metrics: Dict[str, Any]
    feasible: bool
    int8: Optional[Dict[str, Any]] = None
    model: Optional[str] = None
    dropped: Optional[str] = None
    search_metrics: Dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    seconds: float = 0.0
    time: Optional[str] = None
    stage: str = STAGE_FINAL
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = dict(self.extra)
        d.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "archive record") -> "FinalRecord":
        """Parse and validate one final-stage line; RunDirError naming `where` and the field."""
        c = _Check(d, where)
        for split in ("val", "test"):
            s = _Check(c.obj(split), f"{where} {split}")
            s.num("accuracy", lo=0.0, hi=1.0)
            s.num("expected_macs", lo=0.0)
            s.nums("exit_rates")
        known = {f.name for f in fields(cls)} - {"extra"}
        rec = cls(id=c.str_("id"), genome=dict(c.obj("genome")), seed=c.int_("seed", optional=True),
                  rule=c.str_("rule", optional=True), thresholds=c.nums("thresholds", allow_inf=True),
                  exit_macs=c.nums("exit_macs"), val=dict(c.obj("val")), test=dict(c.obj("test")),
                  constraints=_constraint_values(c), metrics=dict(c.obj("metrics")), feasible=c.bool_("feasible"),
                  int8=None if c.obj("int8", optional=True) is None else dict(c.obj("int8")),
                  model=c.str_("model", optional=True), dropped=c.str_("dropped", optional=True),
                  search_metrics=dict(c.obj("search_metrics", optional=True) or {}),
                  train_seconds=float(c.num("train_seconds", optional=True, default=0.0)),
                  seconds=float(c.num("seconds", optional=True, default=0.0)), time=c.str_("time", optional=True),
                  extra={k: v for k, v in d.items() if k not in known})
        if rec.model is None and rec.dropped is None:
            raise c.fail("model", "is missing (a kept final record names its model file)")
        return rec


def record_from_dict(d: Any, where: str):
    """A `CandidateRecord` or `FinalRecord` by the line's stage (validated)."""
    stage = d.get("stage", STAGE_SEARCH) if isinstance(d, Mapping) else None
    if stage == STAGE_FINAL:
        return FinalRecord.from_dict(d, where)
    return CandidateRecord.from_dict(d, where)

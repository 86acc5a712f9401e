"""The run directory of a search: config, archive, admissible Pareto set, report and plots.

Layout (DESIGN.md): ``config.json`` (every setting, the seed, versions), ``archive.jsonl`` (one JSON
line per evaluated candidate, appended and fsynced as each finishes), ``pareto.json`` (the admissible
set), ``models/<id>.keras``, ``report.md``, ``pareto.png`` and ``exit_rates.png``. JSON only (no
pickle): a run can be read by anything and a crafted file cannot run code.

This module reads and writes those files; `nachos_tf.nas` fills them, `nachos_tf.report` draws the report.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import RunDirError
from .genome import Genome
from .records import STAGE_FINAL, STAGE_SEARCH, CandidateRecord, FinalRecord, _Check, record_from_dict

if TYPE_CHECKING:
    import keras

PathLike = Union[str, "os.PathLike[str]"]

CONFIG = "config.json"
ARCHIVE = "archive.jsonl"
PARETO = "pareto.json"
REPORT = "report.md"
PARETO_PNG = "pareto.png"
EXITS_PNG = "exit_rates.png"
MODELS = "models"

__all__ = ["CandidateRecord", "FinalRecord", "STAGE_SEARCH", "STAGE_FINAL", "Archive", "Solution", "SearchResult", "load_run", "write_json", "read_json",
           "admissible_front", "hypervolume", "normalised_objectives", "CONFIG", "ARCHIVE", "PARETO", "REPORT",
           "PARETO_PNG", "EXITS_PNG", "MODELS", "run_dir", "split_records", "read_pareto"]


# --------------------------------------------------------------------------------------------------
# JSON files
# --------------------------------------------------------------------------------------------------

def dumps(obj: Any) -> str:
    """Strict JSON (no NaN/inf: a bug upstream fails here, not in the reader)."""
    return json.dumps(obj, sort_keys=True, allow_nan=False, separators=(",", ":"))


def write_json(path: PathLike, obj: Any) -> None:
    """Write a JSON file atomically (temporary file, fsync, rename): a crash leaves the old or the new file."""
    from .fsio import atomic_write_json   # unique temporary name per process; WriteError naming the file

    atomic_write_json(path, obj)


def read_json(path: PathLike, what: str = "") -> Any:
    """Parse a JSON file of a run directory; RunDirError naming the file if it is missing or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing{(' (' + what + ')') if what else ''}") from None
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


# --------------------------------------------------------------------------------------------------
# archive
# --------------------------------------------------------------------------------------------------

class Archive:
    """``archive.jsonl``: one JSON object per line, appended, flushed and fsynced one record at a time.

    Reading tolerates a truncated last line (a crash or kill -9 while writing); `open` also cuts that
    partial line off the file, so that the next append starts on a fresh line.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)

    def append(self, record: Any) -> None:
        """Append one record (a typed record or its JSON dict) and make it durable before returning."""
        line = dumps(record.to_dict() if hasattr(record, "to_dict") else record) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> Tuple[List[Dict[str, Any]], int]:
        """(records, byte offset where the valid part ends). A partial last line is ignored."""
        if not self.path.exists():
            return [], 0
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise RunDirError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        records, pos = [], 0
        lines = raw.split(b"\n")
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if not line.strip():
                pos += len(line) + (0 if last else 1)
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError):
                if last or all(not rest.strip() for rest in lines[i + 1:]):
                    break  # the truncated tail of an interrupted write
                raise RunDirError(f"{self.path}, line {i + 1}: not a JSON object; the archive is corrupt "
                                  "(only a truncated last line is tolerated)") from None
            records.append(rec)
            pos += len(line) + (0 if last else 1)
        return records, pos

    def records(self) -> List[Any]:
        """The archive's lines as validated `CandidateRecord` / `FinalRecord` objects (RunDirError naming the
        line and field of the first malformed one)."""
        lines = self.read()[0]
        return [record_from_dict(r, f"{self.path}, record {i + 1}") for i, r in enumerate(lines)]

    def open(self) -> List[Dict[str, Any]]:
        """Read the records and cut a partial last line off the file (so appends stay line-aligned)."""
        records, end = self.read()
        if not self.path.exists():
            return records
        with open(self.path, "r+b") as f:
            changed = self.path.stat().st_size != end
            f.truncate(end)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":      # a complete last record whose newline was not written
                    f.seek(end)
                    f.write(b"\n")
                    changed = True
            if changed:
                f.flush()
                os.fsync(f.fileno())
        return records


# --------------------------------------------------------------------------------------------------
# fronts and hypervolume (pymoo does the work)
# --------------------------------------------------------------------------------------------------

def _f(r: Any) -> Tuple[float, float]:
    """(error, expected MACs) of a typed record or of its JSON dict."""
    m = r.metrics if isinstance(r, CandidateRecord) else r["metrics"]
    return (float(m.error), float(m.expected_macs)) if not isinstance(m, Mapping) else (
        float(m["error"]), float(m["expected_macs"]))


def normalised_objectives(records: Sequence[Mapping[str, Any]], constraints: Mapping[str, Any]) -> np.ndarray:
    """(N, 2) objectives scaled by the constraint box: (error / (1 - min_accuracy), MACs / max_macs).

    The admissible region is then [0, 1] x [0, 1], and (1, 1) is the hypervolume reference point.
    """
    err_scale = max(1.0 - float(constraints["min_accuracy"]), 1e-9)
    f = np.array([_f(r) for r in records], dtype=float).reshape(-1, 2)
    return f / np.array([err_scale, float(constraints["max_macs"])])


def admissible_front(records: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """Non-dominated records (pymoo's NonDominatedSorting on (error, expected MACs)) among the feasible ones,
    sorted by expected MACs."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    feasible = [r for r in records if (r.feasible if isinstance(r, (CandidateRecord, FinalRecord))
                                       else r.get("feasible"))]
    if not feasible:
        return []
    F = np.array([_f(r) for r in feasible], dtype=float)
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    chosen = [feasible[i] for i in front]
    return sorted(chosen, key=lambda r: (_f(r)[1], _f(r)[0], str(r["id"])))


def hypervolume(records: Sequence[Mapping[str, Any]], constraints: Mapping[str, Any]) -> float:
    """Hypervolume (pymoo HV) of the admissible front in the normalised constraint box, reference (1, 1):
    the share of the admissible (error, MACs) box that the front dominates, in [0, 1]."""
    from pymoo.indicators.hv import HV

    front = admissible_front(records)
    if not front:
        return 0.0
    return float(HV(ref_point=np.array([1.0, 1.0]))(normalised_objectives(front, constraints)))


# --------------------------------------------------------------------------------------------------
# solutions and results
# --------------------------------------------------------------------------------------------------

SOLUTION_KEYS = ("id", "genome", "model", "rule", "thresholds", "exit_macs", "val", "test", "int8")
FIGURE_KEYS = ("accuracy", "exit_rates", "expected_macs")


@dataclass
class Solution:
    """One admissible EENN as listed in ``pareto.json``; ``.model`` loads its Keras file on first use.

    Attributes:
        id: The candidate id.
        genome: Its architecture.
        model_path: Path of its ``.keras`` file, relative to the run directory.
        rule: The exit rule of its thresholds.
        thresholds: One calibrated threshold per early exit.
        exit_macs: Staged MACs of each exit, final last.
        val: Validation figures (``accuracy``, ``exit_rates``, ``expected_macs``).
        test: Test figures, with the same keys.
        int8: Figures of the int8 staged export measured on TFLM, or None.
        run_dir: The run directory (``None``: the current directory).
    """

    id: str
    genome: Genome
    model_path: str
    rule: str
    thresholds: List[float]
    exit_macs: List[float]
    val: Dict[str, Any]
    test: Dict[str, Any]
    int8: Optional[Dict[str, Any]] = None
    run_dir: Optional[Path] = None
    _model: Any = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> Path:
        """Absolute path of the ``.keras`` file."""
        return (self.run_dir or Path(".")) / self.model_path

    @property
    def model(self) -> "keras.Model":
        """The trained ``keras.Model`` (loaded lazily, then cached).

        Raises:
            RunDirError: The model path leads outside the run folder, or the file is missing or unreadable.
        """
        if self._model is None:
            from .fsio import resolve_inside
            from .macs import load_model_file        # Keras safe mode; one-line RunDirError (issue 14.11)

            try:   # the path comes from pareto.json: it must stay inside the run folder, checked before reading
                path = resolve_inside(self.run_dir or Path("."), self.model_path, f"model path of solution {self.id}")
            except ValueError as exc:
                raise RunDirError(f"{(self.run_dir or Path('.')) / 'pareto.json'}: {exc}") from None
            if not path.exists():
                raise RunDirError(f"model file {self.path} of solution {self.id} is missing")
            self._model = load_model_file(path, error=RunDirError)
        return self._model

    def to_dict(self) -> Dict[str, Any]:
        """The ``pareto.json`` entry.

        Returns:
            The solution as a JSON-safe dict (the inverse of `from_dict`).
        """
        from .policy import thresholds_to_json

        return {"id": self.id, "genome": self.genome.to_dict(), "model": self.model_path, "rule": self.rule,
                "thresholds": thresholds_to_json(self.thresholds), "exit_macs": [float(m) for m in self.exit_macs],
                "val": self.val, "test": self.test, "int8": self.int8}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], run_dir: Optional[Path] = None) -> "Solution":
        """Read one ``pareto.json`` entry, checking its fields.

        Args:
            d: The entry, as written by `to_dict`.
            run_dir: The run directory its model path is relative to.

        Returns:
            The solution (its model is not loaded).

        Raises:
            RunDirError: A key is missing or a field is malformed or out of range.
        """
        from .policy import thresholds_from_json

        missing = [k for k in SOLUTION_KEYS if k not in d]
        if missing:
            raise RunDirError(f"a solution in pareto.json lacks {missing}")
        for split in ("val", "test"):
            if not isinstance(d[split], dict) or any(k not in d[split] for k in FIGURE_KEYS):
                raise RunDirError(f"solution {d['id']}: '{split}' must hold {list(FIGURE_KEYS)}")
            fig = _Check(d[split], f"pareto.json, solution {d['id']!r}, {split}")
            fig.num("accuracy", lo=0.0, hi=1.0)
            fig.num("expected_macs", lo=0.0)
            fig.nums("exit_rates")
        if d["int8"] is not None:
            fig = _Check(d["int8"], f"pareto.json, solution {d['id']!r}, int8")
            fig.num("accuracy", lo=0.0, hi=1.0)
            fig.num("expected_macs", lo=0.0)
        try:
            return cls(id=str(d["id"]), genome=Genome.from_dict(d["genome"]), model_path=str(d["model"]),
                       rule=str(d["rule"]), thresholds=[float(t) for t in thresholds_from_json(d["thresholds"])],
                       exit_macs=[float(m) for m in d["exit_macs"]], val=dict(d["val"]), test=dict(d["test"]),
                       int8=None if d["int8"] is None else dict(d["int8"]), run_dir=run_dir)
        except (TypeError, ValueError) as exc:
            raise RunDirError(f"solution {d.get('id')!r} in pareto.json is malformed: {exc}") from None


@dataclass
class SearchResult:
    """What a search produced: the admissible Pareto set, every evaluated candidate, the hypervolume.

    Attributes:
        admissible: The admissible Pareto set.
        archive: Search-stage records, one per evaluated candidate.
        hypervolume: Hypervolume of the admissible front in the normalised constraint box, in [0, 1].
        out_dir: The run directory.
        constraints: The constraints of ``pareto.json``.
        config: The run settings (``config.json``).
        final_records: Re-trained front members (kept or dropped).
    """

    admissible: List[Solution]
    archive: List[CandidateRecord]
    hypervolume: float
    out_dir: Path
    constraints: Dict[str, Any]
    config: Dict[str, Any] = field(default_factory=dict)
    final_records: List[FinalRecord] = field(default_factory=list)

    @property
    def dropped(self) -> List[FinalRecord]:
        """Front members dropped after re-training, with the reason."""
        return [r for r in self.final_records if r.dropped]

    def table(self) -> str:
        """The admissible set as a plain-text table (validation and test figures).

        Returns:
            The table (or a one-line note when the set is empty).
        """
        return solutions_table(self.admissible)

    def __repr__(self) -> str:
        return (f"SearchResult({len(self.admissible)} admissible, {len(self.archive)} candidates, "
                f"hypervolume={self.hypervolume:.4f}, out_dir='{self.out_dir}')")


def _fmt_macs(m: float) -> str:
    from .macs import human

    return human(m)


def solutions_table(solutions: Sequence[Solution]) -> str:
    """Plain-text table of solutions: id, exits, val/test accuracy and expected MACs, and the int8 staged
    export measured on TFLM: accuracy, model flash (the stage flatbuffers) and tensor arena."""
    if not solutions:
        return "(no admissible solution)"
    head = ("#", "id", "exits", "val acc", "val E[MACs]", "test acc", "test E[MACs]", "full MACs", "int8 acc",
            "int8 flash", "arena")
    rows = []
    for i, s in enumerate(solutions):
        q = s.int8 or {}
        int8 = "-" if not s.int8 else f"{q['accuracy']:.4f}"
        stages = q.get("stage_bytes")
        flash = f"{int(sum(stages)):,} B" if isinstance(stages, list) and stages else "-"
        arena = f"{int(q['arena_bytes']):,} B" if isinstance(q.get("arena_bytes"), (int, float)) else "-"
        rows.append((str(i), s.id, str(len(s.exit_macs)), f"{s.val['accuracy']:.4f}",
                     _fmt_macs(s.val["expected_macs"]), f"{s.test['accuracy']:.4f}",
                     _fmt_macs(s.test["expected_macs"]), _fmt_macs(s.exit_macs[-1]), int8, flash, arena))
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])



# --------------------------------------------------------------------------------------------------
# loading a run
# --------------------------------------------------------------------------------------------------

def run_dir(out_dir: PathLike) -> Path:
    d = Path(out_dir).expanduser()
    if not d.exists():
        raise RunDirError(f"run folder {d} does not exist")
    if not d.is_dir():
        raise RunDirError(f"{d} is not a folder (expected a run folder written by `nachos-tf search`)")
    if not os.access(d, os.R_OK | os.X_OK):
        raise RunDirError(f"run folder {d} is not readable")
    return d


def split_records(records: Sequence[Any]) -> Tuple[List[CandidateRecord], List[FinalRecord]]:
    """(search-stage, final-stage) records of an archive: the newest line per candidate, in the order
    candidates first appear (the search appends a candidate again when `Budget.confirm` judges it on more
    data; the final stage appends a member again when it moves its operating point or measures its int8
    figures)."""
    search: Dict[str, CandidateRecord] = {}
    finals: Dict[str, FinalRecord] = {}
    for r in records:
        if isinstance(r, FinalRecord):
            finals[str(r.id)] = r          # a dict keeps first-insertion order; a later line replaces the value
        elif isinstance(r, CandidateRecord):
            search[str(r.id)] = r
    return list(search.values()), list(finals.values())


def read_pareto(d: Path) -> Tuple[Dict[str, Any], List[Solution]]:
    """(constraints, solutions) of ``pareto.json``."""
    pareto = read_json(d / PARETO, "the admissible set; the search may not have finished")
    if not isinstance(pareto, dict) or "constraints" not in pareto or not isinstance(pareto.get("solutions"), list):
        raise RunDirError(f"{d / PARETO} must be an object with 'constraints' and a 'solutions' list")
    return dict(pareto["constraints"]), [Solution.from_dict(s, d) for s in pareto["solutions"]]


def load_run(out_dir: PathLike) -> SearchResult:
    """Read a finished run folder back into a `SearchResult` (models load lazily).

    Args:
        out_dir: The run folder.

    Returns:
        The search result.

    Raises:
        RunDirError: The folder, ``config.json`` or ``pareto.json`` is missing, unreadable or malformed, or the
            archive is corrupt.
    """
    d = run_dir(out_dir)
    config = read_json(d / CONFIG, "the run settings")
    if not isinstance(config, dict):
        raise RunDirError(f"{d / CONFIG} must hold a JSON object")
    search, final = split_records(Archive(d / ARCHIVE).records())
    constraints, solutions = read_pareto(d)
    hv = hypervolume(search, config.get("search_constraints") or constraints)
    return SearchResult(admissible=solutions, archive=search, hypervolume=hv,
                        out_dir=d, constraints=constraints, config=config, final_records=final)

"""The run directory of a search: config, archive, admissible Pareto set, report and plots.

Layout (DESIGN.md): ``config.json`` (every setting, the seed, versions), ``archive.jsonl`` (one JSON
line per evaluated candidate, appended and fsynced as each finishes), ``pareto.json`` (the admissible
set), ``models/<id>.keras``, ``report.md``, ``pareto.png`` and ``exit_rates.png``. JSON only (no
pickle): a run can be read by anything and a crafted file cannot run code.

This module reads and writes those files and draws the report; `nachos_tf.search` fills them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import RunDirError
from .space import Genome

PathLike = Union[str, "os.PathLike[str]"]

CONFIG = "config.json"
ARCHIVE = "archive.jsonl"
PARETO = "pareto.json"
REPORT = "report.md"
PARETO_PNG = "pareto.png"
EXITS_PNG = "exit_rates.png"
MODELS = "models"

STAGE_SEARCH = "search"   # archive line of a candidate evaluated by the search (proxy training)
STAGE_FINAL = "final"     # archive line of an admissible candidate after its final re-training

__all__ = ["Archive", "Solution", "SearchResult", "load_run", "report", "write_json", "read_json",
           "admissible_front", "hypervolume", "normalised_objectives", "CONFIG", "ARCHIVE", "PARETO"]


# --------------------------------------------------------------------------------------------------
# JSON files
# --------------------------------------------------------------------------------------------------

def dumps(obj: Any) -> str:
    """Strict JSON (no NaN/inf: a bug upstream fails here, not in the reader)."""
    return json.dumps(obj, sort_keys=True, allow_nan=False, separators=(",", ":"))


def write_json(path: PathLike, obj: Any) -> None:
    """Write a JSON file atomically (temporary file, fsync, rename): a crash leaves the old or the new file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False))
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record and make it durable before returning."""
        line = dumps(record) + "\n"
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

def normalised_objectives(records: Sequence[Mapping[str, Any]], constraints: Mapping[str, Any]) -> np.ndarray:
    """(N, 2) objectives scaled by the constraint box: (error / (1 - min_accuracy), MACs / max_macs).

    The admissible region is then [0, 1] x [0, 1], and (1, 1) is the hypervolume reference point.
    """
    err_scale = max(1.0 - float(constraints["min_accuracy"]), 1e-9)
    f = np.array([[r["metrics"]["error"], r["metrics"]["expected_macs"]] for r in records],
                 dtype=float).reshape(-1, 2)
    return f / np.array([err_scale, float(constraints["max_macs"])])


def admissible_front(records: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """Non-dominated records (pymoo's NonDominatedSorting on (error, expected MACs)) among the feasible ones,
    sorted by expected MACs."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    feasible = [r for r in records if r.get("feasible")]
    if not feasible:
        return []
    F = np.array([[r["metrics"]["error"], r["metrics"]["expected_macs"]] for r in feasible], dtype=float)
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    chosen = [feasible[i] for i in front]
    return sorted(chosen, key=lambda r: (r["metrics"]["expected_macs"], r["metrics"]["error"], str(r["id"])))


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
    """One admissible EENN as listed in ``pareto.json``; ``.model`` loads its Keras file on first use."""

    id: str
    genome: Genome
    model_path: str                       # relative to the run directory
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
    def model(self):
        """The trained ``keras.Model`` (loaded lazily, then cached)."""
        if self._model is None:
            import keras

            if not self.path.exists():
                raise RunDirError(f"model file {self.path} of solution {self.id} is missing")
            self._model = keras.models.load_model(self.path, compile=False)
        return self._model

    def to_dict(self) -> Dict[str, Any]:
        """The ``pareto.json`` entry."""
        from .policy import thresholds_to_json

        return {"id": self.id, "genome": self.genome.to_dict(), "model": self.model_path, "rule": self.rule,
                "thresholds": thresholds_to_json(self.thresholds), "exit_macs": [float(m) for m in self.exit_macs],
                "val": self.val, "test": self.test, "int8": self.int8}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], run_dir: Optional[Path] = None) -> "Solution":
        from .policy import thresholds_from_json

        missing = [k for k in SOLUTION_KEYS if k not in d]
        if missing:
            raise RunDirError(f"a solution in pareto.json lacks {missing}")
        for split in ("val", "test"):
            if not isinstance(d[split], dict) or any(k not in d[split] for k in FIGURE_KEYS):
                raise RunDirError(f"solution {d['id']}: '{split}' must hold {list(FIGURE_KEYS)}")
        try:
            return cls(id=str(d["id"]), genome=Genome.from_dict(d["genome"]), model_path=str(d["model"]),
                       rule=str(d["rule"]), thresholds=[float(t) for t in thresholds_from_json(d["thresholds"])],
                       exit_macs=[float(m) for m in d["exit_macs"]], val=dict(d["val"]), test=dict(d["test"]),
                       int8=None if d["int8"] is None else dict(d["int8"]), run_dir=run_dir)
        except (TypeError, ValueError) as exc:
            raise RunDirError(f"solution {d.get('id')!r} in pareto.json is malformed: {exc}") from None


@dataclass
class SearchResult:
    """What a search produced: the admissible Pareto set, every evaluated candidate, the hypervolume."""

    admissible: List[Solution]
    archive: List[Dict[str, Any]]          # search-stage records, one per evaluated candidate
    hypervolume: float
    out_dir: Path
    constraints: Dict[str, Any]
    config: Dict[str, Any] = field(default_factory=dict)
    final_records: List[Dict[str, Any]] = field(default_factory=list)   # re-trained front members (kept or dropped)

    @property
    def dropped(self) -> List[Dict[str, Any]]:
        """Front members dropped after re-training, with the reason."""
        return [r for r in self.final_records if r.get("dropped")]

    def table(self) -> str:
        """The admissible set as a plain-text table (validation and test figures)."""
        return solutions_table(self.admissible)

    def __repr__(self) -> str:
        return (f"SearchResult({len(self.admissible)} admissible, {len(self.archive)} candidates, "
                f"hypervolume={self.hypervolume:.4f}, out_dir='{self.out_dir}')")


def _fmt_macs(m: float) -> str:
    from .macs import human

    return human(m)


def solutions_table(solutions: Sequence[Solution]) -> str:
    """Plain-text table of solutions: id, exits, val/test accuracy and expected MACs, int8 accuracy."""
    if not solutions:
        return "(no admissible solution)"
    head = ("#", "id", "exits", "val acc", "val E[MACs]", "test acc", "test E[MACs]", "full MACs", "int8 acc")
    rows = []
    for i, s in enumerate(solutions):
        int8 = "-" if not s.int8 else f"{s.int8['accuracy']:.4f}"
        rows.append((str(i), s.id, str(len(s.exit_macs)), f"{s.val['accuracy']:.4f}",
                     _fmt_macs(s.val["expected_macs"]), f"{s.test['accuracy']:.4f}",
                     _fmt_macs(s.test["expected_macs"]), _fmt_macs(s.exit_macs[-1]), int8))
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


# --------------------------------------------------------------------------------------------------
# loading a run
# --------------------------------------------------------------------------------------------------

def _run_dir(out_dir: PathLike) -> Path:
    d = Path(out_dir).expanduser()
    if not d.exists():
        raise RunDirError(f"run folder {d} does not exist")
    if not d.is_dir():
        raise RunDirError(f"{d} is not a folder (expected a run folder written by `nachos-tf search`)")
    if not os.access(d, os.R_OK | os.X_OK):
        raise RunDirError(f"run folder {d} is not readable")
    return d


def _check_records(records: List[Dict[str, Any]], path: Path) -> None:
    for i, r in enumerate(records):
        try:
            r["id"], r["genome"], r["metrics"]["error"], r["metrics"]["expected_macs"]
        except (KeyError, TypeError):
            raise RunDirError(f"{path}: record {i + 1} lacks id/genome/metrics (not a nachos-tf archive)") from None


def read_pareto(d: Path) -> Tuple[Dict[str, Any], List[Solution]]:
    """(constraints, solutions) of ``pareto.json``."""
    pareto = read_json(d / PARETO, "the admissible set; the search may not have finished")
    if not isinstance(pareto, dict) or "constraints" not in pareto or not isinstance(pareto.get("solutions"), list):
        raise RunDirError(f"{d / PARETO} must be an object with 'constraints' and a 'solutions' list")
    return dict(pareto["constraints"]), [Solution.from_dict(s, d) for s in pareto["solutions"]]


def load_run(out_dir: PathLike) -> SearchResult:
    """Read a finished run folder back into a `SearchResult` (models load lazily)."""
    d = _run_dir(out_dir)
    config = read_json(d / CONFIG, "the run settings")
    if not isinstance(config, dict):
        raise RunDirError(f"{d / CONFIG} must hold a JSON object")
    records = Archive(d / ARCHIVE).read()[0] if (d / ARCHIVE).exists() else []
    _check_records(records, d / ARCHIVE)
    constraints, solutions = read_pareto(d)
    search = [r for r in records if r.get("stage", STAGE_SEARCH) == STAGE_SEARCH]
    final = [r for r in records if r.get("stage") == STAGE_FINAL]
    hv = hypervolume(search, config.get("search_constraints") or constraints)
    return SearchResult(admissible=solutions, archive=search, hypervolume=hv,
                        out_dir=d, constraints=constraints, config=config, final_records=final)


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------

def _plot_pareto(path: Path, records: Sequence[Mapping[str, Any]], solutions: Sequence[Solution],
                 constraints: Mapping[str, Any], search_c: Optional[Mapping[str, Any]] = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from .units import human

    fig, ax = plt.subplots(figsize=(7, 4.8))
    measured = [r for r in records if r["metrics"].get("accuracy") is not None]   # not pruned / failed
    feas = [r for r in measured if r.get("feasible")]
    infeas = [r for r in measured if not r.get("feasible")]
    for group, style, label in ((infeas, dict(c="0.7", marker="x"), "infeasible candidate"),
                                (feas, dict(c="tab:blue", marker="o", alpha=0.6), "feasible candidate")):
        if group:
            ax.scatter([r["metrics"]["expected_macs"] for r in group], [r["metrics"]["accuracy"] for r in group],
                       s=18, label=label, **style)
    front = admissible_front(records)
    if front:
        ax.step([r["metrics"]["expected_macs"] for r in front], [r["metrics"]["accuracy"] for r in front],
                where="post", c="tab:orange", lw=1.5, marker="o", ms=5, label="admissible front (search)")
    if solutions:
        ax.scatter([s.val["expected_macs"] for s in solutions], [s.val["accuracy"] for s in solutions],
                   marker="*", s=140, c="tab:red", zorder=5, label="re-trained (val)")
        ax.scatter([s.test["expected_macs"] for s in solutions], [s.test["accuracy"] for s in solutions],
                   marker="D", s=40, facecolors="none", edgecolors="tab:red", zorder=5, label="re-trained (test)")
        for s in solutions:
            ax.annotate(s.id, (s.val["expected_macs"], s.val["accuracy"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    ax.axhline(constraints["min_accuracy"], c="k", ls="--", lw=1, label="min accuracy")
    if search_c and search_c["min_accuracy"] != constraints["min_accuracy"]:
        ax.axhline(search_c["min_accuracy"], c="0.5", ls="--", lw=0.8, label="search floor (proxy slack)")
    ax.axvline(constraints["max_macs"], c="k", ls=":", lw=1, label="max expected MACs")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: human(v)))
    ax.set_xlabel("expected MACs per image")
    ax.set_ylabel("validation accuracy (thresholded EENN)")
    ax.set_title("Candidates and admissible Pareto front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_exit_rates(path: Path, solutions: Sequence[Solution]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    if not solutions:
        ax.text(0.5, 0.5, "no admissible solution", ha="center", va="center", transform=ax.transAxes)
    else:
        n_exits = max(len(s.test["exit_rates"]) for s in solutions)
        labels = [s.id for s in solutions]
        x = np.arange(len(solutions))
        bottom = np.zeros(len(solutions))
        cmap = plt.get_cmap("viridis")
        for k in range(n_exits):
            rates = np.array([s.test["exit_rates"][k] if k < len(s.test["exit_rates"]) - 1 else
                              (s.test["exit_rates"][-1] if k == n_exits - 1 else 0.0) for s in solutions])
            name = "final" if k == n_exits - 1 else f"exit {k}"
            ax.bar(x, rates, bottom=bottom, color=cmap(k / max(n_exits - 1, 1)), label=name, width=0.6)
            bottom += rates
        ax.set_xticks(x, labels, rotation=30, fontsize=8)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, ncol=min(n_exits, 5), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax.set_ylabel("share of test images")
    ax.set_title("Where test images leave the network")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _report_markdown(d: Path, config: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                     final: Sequence[Mapping[str, Any]], solutions: Sequence[Solution],
                     constraints: Mapping[str, Any], hv: float) -> str:
    c = constraints
    lines = ["# nachos-tf search report", ""]
    data = config.get("data", {})
    sc = config.get("search_constraints") or c
    slack = "" if sc["min_accuracy"] == c["min_accuracy"] else (
        f"- during the search (proxy training) the accuracy floor was {sc['min_accuracy']:.4g}; "
        "re-trained solutions are checked against the true floor")
    lines += [f"- dataset: {data.get('name', '?')} (train {data.get('n_train', '?')}, val {data.get('n_val', '?')}, "
              f"test {data.get('n_test', '?')})",
              f"- budget: {config.get('budget', {}).get('name', '?')}, seed {config.get('seed', '?')}",
              f"- constraints: accuracy >= {c['min_accuracy']}, expected MACs <= {_fmt_macs(c['max_macs'])}"
              + (f", flash <= {c['max_flash']} B" if c.get("max_flash") else "")
              + (f", RAM <= {c['max_ram']} B" if c.get("max_ram") else ""),
              f"- candidates evaluated: {len(records)} ({sum(1 for r in records if r.get('pruned'))} not trained: "
              "first exit over the MAC budget), "
              f"feasible: {sum(1 for r in records if r.get('feasible'))}, "
              f"admissible front: {len(admissible_front(records))}, hypervolume {hv:.4f} "
              "(share of the admissible error x MACs box dominated by the front)"] + ([slack] if slack else []) + [""]
    lines += ["## Admissible solutions", "", "Thresholds calibrated on validation; test figures use those "
              "thresholds. Expected MACs are staged costs weighted by exit rates.", "", "```",
              solutions_table(solutions), "```", ""]
    dropped = [r for r in final if r.get("dropped")]
    if dropped:
        lines += ["Dropped after re-training:", ""]
        lines += [f"- {r['id']}: {r['dropped']}" for r in dropped]
        lines.append("")
    lines += [f"![Pareto front]({PARETO_PNG})", "", f"![Exit rates]({EXITS_PNG})", ""]
    return "\n".join(lines)


def report(out_dir: PathLike) -> Path:
    """Re-draw ``report.md``, ``pareto.png`` and ``exit_rates.png`` from the run's JSON files; returns report.md."""
    d = _run_dir(out_dir)
    config = read_json(d / CONFIG, "the run settings")
    records = Archive(d / ARCHIVE).read()[0]
    if not (d / ARCHIVE).exists():
        raise RunDirError(f"{d / ARCHIVE} is missing: {d} holds no search")
    _check_records(records, d / ARCHIVE)
    search = [r for r in records if r.get("stage", STAGE_SEARCH) == STAGE_SEARCH]
    final = [r for r in records if r.get("stage") == STAGE_FINAL]
    if (d / PARETO).exists():
        constraints, solutions = read_pareto(d)
    else:
        constraints, solutions = dict(config.get("constraints") or {}), []
        if "min_accuracy" not in constraints or "max_macs" not in constraints:
            raise RunDirError(f"{d / CONFIG} lacks the constraints")
    search_c = config.get("search_constraints") or constraints
    hv = hypervolume(search, search_c)
    _plot_pareto(d / PARETO_PNG, search, solutions, constraints, search_c)
    _plot_exit_rates(d / EXITS_PNG, solutions)
    path = d / REPORT
    tmp = path.with_name(REPORT + ".tmp")
    tmp.write_text(_report_markdown(d, config, search, final, solutions, constraints, hv), encoding="utf-8")
    os.replace(tmp, path)
    return path

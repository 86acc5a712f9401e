"""What several benchmarks share, so that none imports another's private names.

* paths: `ROOT` (the checkout, put on ``sys.path`` so benchmarks run without installing), `RESULTS`;
* provenance: `loadavg`, `machine`, `versions`, `git_state`, `environment`, `utc_now`, `say`;
* JSON: `json_default` (numpy scalars and arrays), `write_json` (atomic), `read_json`, and `ResultFile`,
  a results file rewritten after every finished unit with ``complete: false`` until everything is done,
  that a later session continues with ``--resume`` (refusing a file written with other settings);
* TFLM: `open_interpreters` (one ``tflite_micro`` interpreter per stage of an export);
* statistics: `correlation` (Spearman and Kendall from scipy);
* arguments: `positive_int`, `add_out`, `add_resume`, `add_threads`, `pin_threads`.

Nothing here evaluates a model: the independent checks (`verify_run.py`, `deploy_check.py`) stay
independent of the library's evaluation code.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))           # run from a checkout without installing

FALLBACK_ARENA = 1 << 20


# --------------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------------

def utc_now() -> str:
    """UTC time stamp, seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def say(msg: str) -> None:
    """A progress line with the local time, flushed."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> Optional[List[float]]:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_gib() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 2)
    except OSError:
        pass
    return None


def machine() -> Dict[str, Any]:
    """Cores, CPU model, memory, platform and a short hash of the host name."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {"nproc": affinity or os.cpu_count(), "cpu_count": os.cpu_count(), "cpu_model": _cpu_model(),
            "platform": platform.platform(), "machine": platform.machine(), "mem_total_gib": _mem_total_gib(),
            "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8]}


def versions() -> Dict[str, str]:
    """Python and the packages figures depend on (installed distributions, no imports)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("nachos-tf", "tensorflow", "tensorflow-cpu", "keras", "numpy", "scipy", "pymoo", "tflite-micro"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def git_state() -> Dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (read-only git calls)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        return {"commit": commit, "dirty": sorted(l[3:] for l in dirty if l.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment() -> Dict[str, Any]:
    """{"machine", "versions", "git"} for a report (machine with the load average now)."""
    return {"machine": dict(machine(), load_avg=loadavg()), "versions": versions(), "git": git_state()}


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------

def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars and arrays and paths."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, doc: Any, indent: Optional[int] = 1) -> None:
    """Write `doc` to `path` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=indent, default=json_default) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[Any]:
    """The parsed file, or None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    return json.loads(path.read_text())


#: Budget fields added after result files were written, with the value every run had before they existed.
LATER_BUDGET_FIELDS = {"mutation": "pm", "mutation_rate": None, "screen": 0, "crossfit": 0,
                       "final_schedule": "constant"}
#: fields that only mean something when another one is on (dropped with it)
_WITH = {"screen": ("screen_train",)}


def budget_settings(budget) -> Dict[str, Any]:
    """A Budget's dict for a result file's settings, without the fields added later while they hold the
    value every earlier run had (so a file written before them still resumes and merges)."""
    d = budget.to_dict()
    for k, old in LATER_BUDGET_FIELDS.items():
        if k in d and d[k] == old:
            d.pop(k)
            for dep in _WITH.get(k, ()):
                d.pop(dep, None)
    return d


def _script() -> str:
    """This process's script, relative to the checkout when inside it."""
    p = Path(sys.argv[0]).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def _plain(obj: Any) -> Any:
    """`obj` as it reads back from JSON (tuples -> lists, numpy -> Python), for comparing settings."""
    return json.loads(json.dumps(obj, default=json_default))


class ResultFile:
    """A benchmark's results JSON: rewritten atomically after every finished unit, ``complete: false``
    until `finish`, continued by a later session (``--resume``) when its settings are the same.

    Args:
        path: the JSON file.
        benchmark: the benchmark's name (written into the file).
        settings: everything the recorded figures depend on; a resumed file must hold the same.
        resume: continue the file if it exists (else it is started afresh).
        command: the command line (default: this process's).

    Raises:
        SystemExit: resuming a file written with other settings (say which, and to use another --out).
    """

    def __init__(self, path: Path, benchmark: str, settings: Mapping[str, Any], resume: bool,
                 command: Optional[str] = None):
        self.path = Path(path)
        self.t0 = time.time()
        session = {"started": utc_now(), "load_avg_start": loadavg(),
                   "command": command or " ".join(["python", _script()] + sys.argv[1:])}
        prev = read_json(self.path) if resume else None
        if prev is not None:
            old, new = prev.get("settings"), _plain(dict(settings))
            if old != new:
                diff = sorted(k for k in set(old or {}) | set(new) if (old or {}).get(k) != new.get(k))
                raise SystemExit(f"--resume: {self.path} was written with other settings ({', '.join(diff)}); "
                                 "use the same settings or another --out")
            self.doc = prev
            self.doc["complete"] = False
            self.doc.setdefault("sessions", []).append(session)
        else:
            self.doc = {"benchmark": benchmark, "complete": False, "started": utc_now(),
                        "settings": _plain(dict(settings)), "sessions": [session]}
        self.doc["machine"] = machine()
        self.doc["versions"] = versions()
        self.doc["git"] = git_state()
        self.resumed = prev is not None

    def __getitem__(self, key: str) -> Any:
        return self.doc[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.doc[key] = value

    def setdefault(self, key: str, value: Any) -> Any:
        return self.doc.setdefault(key, value)

    def save(self) -> None:
        """Rewrite the file (this session's span and load average updated)."""
        sess = self.doc["sessions"][-1]
        sess["seconds"] = round(time.time() - self.t0, 1)
        sess["last_saved"] = self.doc["last_saved"] = utc_now()
        sess["load_avg_now"] = loadavg()
        self.doc["wall_seconds"] = round(sum(float(s.get("seconds") or 0.0) for s in self.doc["sessions"]), 1)
        write_json(self.path, self.doc)

    def finish(self) -> None:
        """Mark the results complete and save."""
        self.doc["complete"] = True
        self.doc["finished"] = utc_now()
        self.save()


# --------------------------------------------------------------------------------------------------
# TFLM
# --------------------------------------------------------------------------------------------------

def open_interpreters(blobs: Sequence[bytes], manifest: Mapping[str, Any]) -> List[Any]:
    """One ``tflite_micro`` interpreter per stage of an export (`blobs` in stage order), each with a
    generous arena (4x the manifest's measured arena, at least 256 KiB; 1 MiB when it has none)."""
    from tflite_micro.python.tflite_micro import runtime

    its = []
    for b, st in zip(blobs, manifest["stages"]):
        need = st.get("arena_bytes")
        arena = max(4 * int(need), 256 << 10) if need else FALLBACK_ARENA
        its.append(runtime.Interpreter.from_bytes(b, arena_size=arena))
    return its


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------

def _clean(v: float) -> Optional[float]:
    v = float(v)
    return None if not np.isfinite(v) else round(v, 4)


def two_training_mean(doc: Dict[str, Any]) -> Dict[str, float]:
    """Mean test accuracy of a search_speed result's two stand-alone trainings (``full_training`` and
    ``full_training_repeat``), by genome id, for the genomes trained twice (empty when none is)."""
    first = doc["full_training"]["results"]
    again = (doc.get("full_training_repeat") or {}).get("results") or {}
    return {g: (first[g]["test"]["accuracy"] + r["test"]["accuracy"]) / 2 for g, r in again.items() if g in first}


def correlation(x: Sequence[Optional[float]], y: Sequence[Optional[float]]) -> Dict[str, Any]:
    """Spearman rho and Kendall tau-b (`scipy.stats`, two-sided p-values) over the pairs where both are known."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    out: Dict[str, Any] = {"n": len(pairs)}
    none = dict(spearman=None, spearman_p=None, kendall=None, kendall_p=None)
    if len(pairs) < 3:
        return dict(out, **none)
    a, b = np.array(pairs, dtype=float).T
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return dict(out, **none, note="one side is constant")
    rho, p_rho = stats.spearmanr(a, b)
    tau, p_tau = stats.kendalltau(a, b)
    return dict(out, spearman=_clean(rho), spearman_p=_clean(p_rho), kendall=_clean(tau), kendall_p=_clean(p_tau))


# --------------------------------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------------------------------

def positive_int(s: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def positive_float(s: str) -> float:
    """argparse type: a number > 0."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def add_out(p: argparse.ArgumentParser, default: Path) -> None:
    """``--out FILE`` (the results JSON)."""
    p.add_argument("--out", type=Path, default=Path(default), help="results JSON (default: %(default)s)")


def add_resume(p: argparse.ArgumentParser) -> None:
    """``--resume``: continue --out (same settings) instead of starting afresh."""
    p.add_argument("--resume", action="store_true",
                   help="keep the finished units of --out (written with the same settings) and do the rest")


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads T``: TensorFlow threads of this process."""
    p.add_argument("--threads", type=positive_int, default=None,
                   help="TensorFlow intra/inter-op threads (default: all cores); results depend on it")


def pin_threads(threads: Optional[int]) -> None:
    """Pin TensorFlow's thread pools (no-op for None), as the search does for its processes."""
    if threads:
        from nachos_tf.nas import pin_threads as pin

        pin(int(threads))


def eval_context(space: Any, data: Any, constraints: Any, budget: Any, seed: int, run_dir: Path,
                 loss: Any = None, target: Any = None, progress: Optional[Callable[[str], Any]] = None) -> Any:
    """The `EvalContext` a search would give its evaluator, for running an evaluator outside a search.

    As `nt.search` does: `constraints` are the search-time ones (pass `target.relaxed(budget.accuracy_slack)`
    to mimic the slack), `target` the user's (default: `constraints`), the loss NACHOS with the MAC bound,
    the threads this process's TensorFlow count.
    """
    from nachos_tf import LossConfig
    from nachos_tf.nas import EvalContext
    from nachos_tf.nas.backends import default_threads

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = constraints if target is None else target
    loss = LossConfig.nachos(mac_budget=target.max_macs) if loss is None else loss
    return EvalContext(space=space, constraints=constraints, target=target, budget=budget, seed=int(seed), loss=loss,
                       threads=default_threads(), run_dir=run_dir, data=data, progress=progress)


def supernet_training(folder: Path) -> Dict[str, Any]:
    """What training the supernet saved in `folder` cost, from its manifest (``supernet.json``): epochs done,
    the sum of the epochs' seconds (over every session that trained it, and over the supernet it was
    continued from, if any), the last training call's seconds
    (epochs plus set-up) and the training settings."""
    from nachos_tf.supernet.store import training_record_epochs, training_record_seconds

    m = json.loads((Path(folder) / "supernet.json").read_text())
    return {"folder": str(folder), "epochs_done": training_record_epochs(m),
            "epoch_seconds": round(training_record_seconds(m), 1),
            "seconds_last_call": m.get("seconds_this_call"), "settings": m.get("settings"),
            "space_fingerprint": m.get("space_fingerprint"), "data_fingerprint": m.get("data_fingerprint")}


def timed(fn: Callable[[], Any]) -> "tuple[Any, float]":
    """(fn(), seconds) with `time.perf_counter`."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t

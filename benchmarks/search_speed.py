"""Benchmark: speed and fidelity of the search's cheap candidate evaluator (issue 4, item 2).

Two questions:

1. **Speed**: how many candidates per minute does `nachos_tf.search.evaluate_candidate` (the
   low-fidelity proxy: build, brief NACHOS training on a class-balanced subset, threshold calibration
   on validation) get through at the `quick` and `standard` budget fidelities? Every timed call is one
   whole `evaluate_candidate` call (build + train + calibration), on the proxy subset the search
   itself uses (`proxy_subset(data, budget, seed)`, built once per run and timed separately). The
   first call of the process also pays TensorFlow's one-off start-up; the steady-state rate leaves it
   out (both are reported).
2. **Fidelity**: on `--candidates` genomes sampled from `SearchSpace.mcu((28, 28, 1), 10)` with fixed
   seeds, the rank correlation (Spearman and Kendall, `scipy.stats`) between the cheap estimate (the
   `quick` proxy's validation accuracy at its calibrated thresholds, i.e. the search objective; also
   its final-exit accuracy and expected MACs) and the same genome after "full" training: the whole
   training split, `--full-epochs` backbone + `--full-head-epochs` exit-phase epochs with the NACHOS
   loss (`train_candidate`, as the search's final re-training does), thresholds calibrated on the
   whole validation split (`calibrate_model`, method "pareto"), figures on the test split. Reported
   for the thresholded accuracy, for the final exit alone (no thresholds), for expected MACs, and for
   two naive baselines (total MACs and parameter count as predictors of accuracy).

The proxy's final-exit accuracy is read from the probabilities `evaluate_candidate` hands to
`nachos_tf.policy.calibrate` (a pass-through wrapper installed in this process only; it adds no work).

Results go to ``--out`` (JSON, rewritten after every finished unit so a long run can be inspected
or continued with ``--resume``). Timings are wall-clock on whatever else the machine is running: the
1-minute load average is recorded at the start, at the end and around every timed call.

Run:

    python benchmarks/search_speed.py                    # defaults; writes benchmarks/results/search_speed.json
    python benchmarks/search_speed.py --smoke --candidates 3 --full-epochs 1 --full-head-epochs 0 \\
        --full-train 1000 --speed-candidates 1 --out /tmp/ss.json             # smoke test
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nachos_tf as nt  # noqa: E402
from nachos_tf import policy as P  # noqa: E402
S = importlib.import_module("nachos_tf.search")  # the module; nachos_tf.search is also the function
from nachos_tf.units import parse_size  # noqa: E402

SPEED_FIDELITIES = ("quick", "standard")


# --------------------------------------------------------------------------------------------------
# machine and provenance
# --------------------------------------------------------------------------------------------------

def loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def mem_total_gib() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 2)
    except OSError:
        pass
    return None


def machine() -> Dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {"nproc": affinity or os.cpu_count(), "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
            "platform": platform.platform(), "machine": platform.machine(), "mem_total_gib": mem_total_gib(),
            "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8]}


def versions() -> Dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "nachos_tf": getattr(nt, "__version__", "?")}
    for pkg in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "scipy", "pymoo"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def source_state() -> Dict[str, Any]:
    """The commit and the hashes of the modules whose behaviour is measured (read-only git calls)."""
    out: Dict[str, Any] = {}
    try:
        out["git_head"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                         text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "nachos_tf"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        out["nachos_tf_uncommitted"] = sorted(l[3:] for l in dirty if l.strip())
    except (OSError, subprocess.SubprocessError):
        out["git_head"] = None
    out["sha256"] = {f: hashlib.sha256((ROOT / "nachos_tf" / f).read_bytes()).hexdigest()[:16]
                     for f in ("search.py", "train.py", "policy.py", "losses.py", "builder.py", "space.py")}
    return out


def evaluator_source() -> str:
    """Hash of the code every figure here depends on: the evaluation functions of `nachos_tf.search` and
    the modules they call. `--resume` refuses to mix results across a change of it."""
    import inspect

    h = hashlib.sha256()
    for fn in ("candidate_seed", "proxy_subset", "default_loss", "exit_rule", "build_candidate", "train_built",
               "train_candidate", "set_bn_momentum", "calibrate_model", "figures", "evaluate_candidate", "_pruned"):
        obj = getattr(S, fn, None)
        h.update((inspect.getsource(obj) if obj is not None else f"<no {fn}>").encode())
    for f in ("train.py", "policy.py", "losses.py", "builder.py", "space.py", "macs.py", "data.py", "naming.py"):
        h.update((ROOT / "nachos_tf" / f).read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# capturing the proxy's exit probabilities (pass-through; no extra work)
# --------------------------------------------------------------------------------------------------

class _Capture:
    """Wraps `nachos_tf.policy.calibrate` (which `search.calibrate_model` imports at call time) so the
    per-exit validation accuracies of the model being calibrated can be read afterwards."""

    def __init__(self) -> None:
        self.exit_acc: Optional[List[float]] = None
        self._orig = P.calibrate

    def install(self) -> None:
        orig = self._orig

        def calibrate(probs, labels, *args, **kwargs):
            y = np.asarray(labels).reshape(-1)
            self.exit_acc = [float((np.asarray(p).argmax(axis=1) == y).mean()) for p in probs]
            return orig(probs, labels, *args, **kwargs)

        P.calibrate = calibrate

    def take(self) -> Optional[List[float]]:
        out, self.exit_acc = self.exit_acc, None
        return out


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------

def _f(v: Optional[float], digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _clean(v: float) -> Optional[float]:
    v = float(v)
    return None if not np.isfinite(v) else round(v, 4)


def correlation(x: Sequence[Optional[float]], y: Sequence[Optional[float]]) -> Dict[str, Any]:
    """Spearman rho and Kendall tau-b (with two-sided p-values) over the pairs where both are known."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    out: Dict[str, Any] = {"n": len(pairs)}
    if len(pairs) < 3:
        return dict(out, spearman=None, spearman_p=None, kendall=None, kendall_p=None)
    a, b = np.array(pairs, dtype=float).T
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return dict(out, spearman=None, spearman_p=None, kendall=None, kendall_p=None,
                    note="one side is constant")
    rho, p_rho = stats.spearmanr(a, b)
    tau, p_tau = stats.kendalltau(a, b)
    return dict(out, spearman=_clean(rho), spearman_p=_clean(p_rho), kendall=_clean(tau), kendall_p=_clean(p_tau))


def nondominated(err: Sequence[float], macs: Sequence[float]) -> List[int]:
    """Indices of the points no other point dominates (both objectives minimised)."""
    idx = []
    for i in range(len(err)):
        if not any((err[j] <= err[i] and macs[j] <= macs[i]) and (err[j] < err[i] or macs[j] < macs[i])
                   for j in range(len(err))):
            idx.append(i)
    return idx


def timing_summary(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    secs = [r["seconds"] for r in rows]
    steady = [r["seconds"] for r in rows if not r.get("first_in_process")]
    base = steady or secs
    if not secs:
        return {"n": 0}
    mean = float(np.mean(base))
    return {"n": len(secs), "n_steady": len(steady), "seconds_mean": round(mean, 2),
            "seconds_median": round(float(np.median(base)), 2), "seconds_min": round(float(np.min(base)), 2),
            "seconds_max": round(float(np.max(base)), 2),
            "first_call_seconds": next((round(r["seconds"], 2) for r in rows if r.get("first_in_process")), None),
            "train_seconds_mean": round(float(np.mean([r["train_seconds"] for r in rows
                                                       if not r.get("first_in_process")] or
                                                      [r["train_seconds"] for r in rows])), 2),
            "candidates_per_min": round(60.0 / mean, 3),
            "candidates_per_min_incl_first": round(60.0 * len(secs) / float(np.sum(secs)), 3),
            "load_avg_1min_mean": round(float(np.mean([np.mean([r["load_before"][0], r["load_after"][0]])
                                                       for r in rows])), 2)}


# --------------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------------

def sample_genomes(space, n: int, first_seed: int, max_macs: float):
    """n distinct genomes from space.sample(seed) for seeds first_seed, first_seed + 1, ..., leaving out those
    whose first exit alone costs more than max_macs (the search prunes them without training: no accuracy).
    Returns (kept [(seed, genome, exit_macs)], skipped [{sample_seed, reason}])."""
    import keras

    from nachos_tf.builder import build_eenn
    from nachos_tf.macs import profile_macs

    out, skipped, seen, s = [], [], set(), first_seed
    while len(out) < n:
        g = space.sample(seed=s)
        if g.key() in seen:
            skipped.append({"sample_seed": s, "reason": "duplicate genome"})
        else:
            seen.add(g.key())
            keras.backend.clear_session()
            macs = [int(m) for m in profile_macs(build_eenn(space, g)).exit_macs]
            if macs[0] > max_macs:
                skipped.append({"sample_seed": s, "id": genome_id(g),
                                "reason": f"first exit alone costs {macs[0]} MACs > max_macs (pruned untrained)"})
            else:
                out.append((s, g, macs))
        s += 1
    return out, skipped


PROXY_FIELDS = ("proxy_train", "proxy_val", "epochs", "head_epochs", "batch_size", "learning_rate", "accuracy_slack")


def resume_key(settings: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The settings every recorded figure depends on: budgets reduced to their proxy-evaluation fields
    (population, generations and the final-stage fields of a preset do not change a proxy evaluation)."""
    if settings is None:
        return None
    key = dict(settings)
    key["proxy_budget"] = {k: v for k, v in (settings.get("proxy_budget") or {}).items() if k in PROXY_FIELDS}
    key["speed_fidelities"] = {f: {k: v for k, v in b.items() if k in PROXY_FIELDS}
                               for f, b in (settings.get("speed_fidelities") or {}).items()}
    return key


def genome_id(genome) -> str:
    return hashlib.sha256(genome.key().encode()).hexdigest()[:10]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self.capture = _Capture()
        self.capture.install()
        self.first_call_done = False
        self.doc: Dict[str, Any] = {}

    # ---------------------------------------------------------------- output
    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.doc["last_saved"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for sess in self.doc.get("sessions", []):
            if "t0" in sess:   # this process's session
                sess["seconds"] = round(now - sess["t0"], 1)
                sess["last_saved"] = self.doc["last_saved"]
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1) + "\n")
        os.replace(tmp, self.out)

    def say(self, msg: str) -> None:
        print(f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)

    # ---------------------------------------------------------------- units of work
    def proxy_eval(self, fidelity: str, seed_g: int, genome, proxy, budget) -> Dict[str, Any]:
        a = self.args
        first = not self.first_call_done
        self.capture.take()
        lb = loadavg()
        t0 = time.perf_counter()
        rec = S.evaluate_candidate(genome, self.space, proxy, self.search_constraints(budget), budget, a.seed,
                                   loss=self.loss)
        secs = time.perf_counter() - t0
        self.first_call_done = True
        exit_acc = self.capture.take()
        m = rec["metrics"]
        return {"fidelity": fidelity, "id": genome_id(genome), "sample_seed": seed_g, "seconds": round(secs, 3),
                "evaluator_seconds": rec.get("seconds"), "train_seconds": rec.get("train_seconds"),
                "first_in_process": first, "load_before": lb, "load_after": loadavg(),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "accuracy": m["accuracy"], "expected_macs": m["expected_macs"], "exit_rates": m["exit_rates"],
                "final_exit_accuracy": None if exit_acc is None else exit_acc[-1], "exit_accuracy": exit_acc,
                "feasible": rec.get("feasible"), "thresholds": rec.get("thresholds"),
                "total_macs": m.get("total_macs"), "params": m.get("params"), "exit_macs": rec.get("exit_macs")}

    def full_eval(self, seed_g: int, genome) -> Dict[str, Any]:
        from nachos_tf.train import predict_exits

        a = self.args
        cseed = S.candidate_seed(a.seed, genome)
        rule = S.exit_rule(self.space)
        lb = loadavg()
        t0 = time.perf_counter()
        model, exit_macs, train_s = S.train_candidate(self.space, genome, self.full_train, self.loss, cseed,
                                                      a.full_epochs, a.full_head_epochs, self.quick.batch_size,
                                                      self.quick.learning_rate)
        self.capture.take()
        cal = S.calibrate_model(model, exit_macs, self.data.x_val, self.data.y_val, rule, self.constraints)
        val_exit_acc = self.capture.take()
        probs, confs = predict_exits(model, self.data.x_test)
        test = P.simulate(probs, self.data.y_test, cal.thresholds, exit_macs, rule,
                          confs if rule == "confidence" else None)
        test_exit_acc = [float((p.argmax(axis=1) == self.data.y_test).mean()) for p in probs]
        secs = time.perf_counter() - t0
        return {"id": genome_id(genome), "sample_seed": seed_g, "seed": cseed, "seconds": round(secs, 3),
                "train_seconds": round(train_s, 3), "load_before": lb, "load_after": loadavg(),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "test": {"accuracy": float(test.accuracy), "expected_macs": float(test.expected_macs),
                         "exit_rates": [float(r) for r in test.exit_rates],
                         "final_exit_accuracy": test_exit_acc[-1], "exit_accuracy": test_exit_acc},
                "val": {"accuracy": float(cal.result.accuracy), "expected_macs": float(cal.result.expected_macs),
                        "final_exit_accuracy": None if val_exit_acc is None else val_exit_acc[-1]},
                "thresholds": P.thresholds_to_json(cal.thresholds), "total_macs": int(exit_macs[-1]),
                "params": int(model.count_params())}

    # ---------------------------------------------------------------- run
    def settings(self) -> Dict[str, Any]:
        a = self.args
        return {"evaluator_source": evaluator_source(),"candidates": a.candidates, "first_sample_seed": a.first_sample_seed, "run_seed": a.seed,
                "space": "SearchSpace.mcu((28, 28, 1), 10)", "dataset": "fashion_mnist",
                "constraints": self.constraints.to_dict(), "loss": self.loss.to_dict(),
                "proxy_constraints": {f: self.search_constraints(self.budget(f)).to_dict() for f in self.fidelities},
                "sampling": "space.sample(seed) from first_sample_seed on; duplicates and genomes whose first exit "
                            "alone exceeds max_macs (pruned untrained by the search) are skipped",
                "proxy_budget": self.quick.to_dict(),
                "speed_fidelities": {f: self.budget(f).to_dict() for f in self.fidelities}, "smoke": a.smoke,
                "speed_candidates": a.speed_candidates, "quick_only": a.quick_only,
                "full": {"train_samples": len(self.full_train.y_train), "epochs": a.full_epochs,
                         "head_epochs": a.full_head_epochs, "batch_size": self.quick.batch_size,
                         "learning_rate": self.quick.learning_rate, "loss": "NACHOS (default_loss(constraints))",
                         "schedule": "train_candidate: backbone phase (final exit CE) then exit phase (NACHOS loss)",
                         "calibration": "calibrate_model on the whole validation split (policy.calibrate, "
                                        "method 'pareto', rule = exit_rule(space))",
                         "figures": "test split at those thresholds; final exit = argmax of the last exit",
                         "seed": "candidate_seed(run_seed, genome), as the search"},
                "timing": "wall clock (time.perf_counter) around each evaluate_candidate call: build + "
                          "train + calibration on the fidelity's proxy subset; steady state excludes the "
                          "first call of the process (TensorFlow start-up)"}

    def search_constraints(self, budget):
        """The constraints `search()` hands the evaluator: the accuracy floor lowered by the budget's
        proxy accuracy_slack (when the installed search has one)."""
        slack = getattr(budget, "accuracy_slack", 0.0)
        return self.constraints.relaxed(slack) if slack and hasattr(self.constraints, "relaxed") else self.constraints

    def budget(self, fidelity: str):
        """The preset budget of a fidelity (shrunk to a few hundred samples and 1 + 1 epochs with --smoke)."""
        b = S.Budget.preset(fidelity)
        if self.args.smoke:
            b = b.with_(proxy_train=500, proxy_val=500, epochs=1, head_epochs=1)
        return b

    def run(self) -> None:
        a = self.args
        t_start = time.time()
        load_start = loadavg()
        self.fidelities = ("quick",) if a.quick_only else SPEED_FIDELITIES
        self.constraints = S.Constraints(min_accuracy=a.min_accuracy, max_macs=parse_size(a.max_macs))
        self.loss = S.default_loss(self.constraints)
        self.quick = self.budget("quick")
        self.say(f"load average at start: {load_start}")
        t = time.perf_counter()
        self.data = nt.data.load("fashion_mnist")
        load_s = time.perf_counter() - t
        self.space = nt.SearchSpace.mcu((28, 28, 1), 10)
        self.full_train = (self.data if a.full_train is None else
                           self.data.subset(train=a.full_train, val=None, test=None, seed=a.seed))
        sampled, skipped = sample_genomes(self.space, a.candidates, a.first_sample_seed, self.constraints.max_macs)
        genomes = [(sd, g) for sd, g, _ in sampled]

        prev = None
        if a.resume and self.out.exists():
            prev = json.loads(self.out.read_text())
        self.doc = {"benchmark": "search_speed", "issue": 4, "complete": False,
                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "settings": self.settings(), "machine": dict(machine(), load_avg_start=load_start),
                    "versions": versions(), "source": source_state(),
                    "data": {"train": len(self.data.y_train), "val": len(self.data.y_val),
                             "test": len(self.data.y_test), "load_seconds": round(load_s, 2)},
                    "genomes": {genome_id(g): {"sample_seed": sd, "exit_macs": m, "genome": g.to_dict()}
                                for sd, g, m in sampled},
                    "skipped_samples": skipped,
                    "proxy_subset_seconds": {}, "speed": {f: [] for f in self.fidelities},
                    "candidates": [], "summary": None,
                    "sessions": [{"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                  "load_avg_start": load_start, "t0": t_start}]}
        if prev is not None:
            if resume_key(prev.get("settings")) != resume_key(self.doc["settings"]):
                raise SystemExit(f"--resume: {self.out} was written with other settings; use another --out")
            self.doc["speed"] = {f: prev.get("speed", {}).get(f, []) for f in self.fidelities}
            self.doc["candidates"] = prev.get("candidates", [])
            self.doc["resumed_from"] = prev.get("started")
            old = [{k: v for k, v in x.items() if k != "t0"} for x in prev.get("sessions", [])]
            if not old:   # written before sessions were recorded: its span is start -> last write of the file
                t_first = _dt.datetime.fromisoformat(prev["started"]).timestamp()
                mtime = self.out.stat().st_mtime
                old = [{"started": prev["started"], "load_avg_start": prev.get("machine", {}).get("load_avg_start"),
                        "last_saved": _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).isoformat(timespec="seconds"),
                        "seconds": round(mtime - t_first, 1)}]
            self.doc["sessions"] = old + self.doc["sessions"]
            self.say(f"resuming: {sum(len(v) for v in self.doc['speed'].values())} proxy and "
                     f"{sum(1 for c in self.doc['candidates'] if c.get('full'))} full evaluations kept")
        self.save()

        # Per candidate, in order: the quick proxy (timed: the quick rate and the cheap estimate), the
        # standard proxy for the first --speed-candidates (timed), then the full training. Interleaved so
        # that the JSON holds usable pairs (and every speed figure early) if the run is cut short.
        proxies = {}
        for fid in self.fidelities:
            t = time.perf_counter()
            proxies[fid] = S.proxy_subset(self.data, self.budget(fid), a.seed)
            self.doc["proxy_subset_seconds"][fid] = round(time.perf_counter() - t, 3)
        have_full = {c["id"] for c in self.doc["candidates"] if c.get("full")}
        for i, (s, g) in enumerate(genomes):
            gid = genome_id(g)
            for fid in self.fidelities:
                if fid != "quick" and i >= a.speed_candidates:
                    continue
                rows = self.doc["speed"][fid]
                if any(r["id"] == gid for r in rows):
                    continue
                row = self.proxy_eval(fid, s, g, proxies[fid], self.budget(fid))
                rows.append(row)
                self.say(f"{fid} proxy {i + 1}/{len(genomes)} {gid}: {row['seconds']:.1f}s acc {_f(row['accuracy'])} "
                         f"final-exit {_f(row['final_exit_accuracy'])} E[MACs] {_f(row['expected_macs'], 0)} "
                         f"load {row['load_after']}")
                self.summarise()
                self.save()
            if gid in have_full:
                continue
            q = next(r for r in self.doc["speed"]["quick"] if r["id"] == gid)
            full = self.full_eval(s, g)
            self.doc["candidates"].append({
                "id": gid, "sample_seed": s, "total_macs": full["total_macs"], "params": full["params"],
                "exit_macs": q["exit_macs"],
                "proxy": {k: q[k] for k in ("accuracy", "final_exit_accuracy", "exit_accuracy", "expected_macs",
                                            "exit_rates", "feasible", "seconds")},
                "full": full})
            self.say(f"full {i + 1}/{len(genomes)} {gid}: {full['seconds']:.1f}s test acc "
                     f"{full['test']['accuracy']:.4f} final-exit {full['test']['final_exit_accuracy']:.4f} "
                     f"E[MACs] {full['test']['expected_macs']:.0f} (proxy acc {_f(q['accuracy'])}) "
                     f"load {full['load_after']}")
            self.summarise()
            self.save()

        self.doc["complete"] = True
        self.doc["machine"]["load_avg_end"] = loadavg()
        self.save()
        sessions = self.doc["sessions"]
        self.doc["wall_seconds"] = round(sum(float(x.get("seconds") or 0.0) for x in sessions), 1)
        if len(sessions) > 1:
            self.doc["wall_note"] = ("run in several sessions (an earlier process was killed from outside and "
                                     "continued with --resume); wall_seconds sums the sessions' saved spans, so "
                                     "work lost between a session's last save and its death is not counted")
        self.doc["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.summarise()
        self.save()
        self.say(f"done in {self.doc['wall_seconds'] / 60:.1f} min; load average at end: "
                 f"{self.doc['machine']['load_avg_end']}")
        print(json.dumps(self.doc["summary"], indent=1), flush=True)

    def summarise(self) -> None:
        speed = {f: timing_summary(rows) for f, rows in self.doc["speed"].items()}
        cands = [c for c in self.doc["candidates"] if c.get("full")]
        px = [c["proxy"] for c in cands]
        fu = [c["full"] for c in cands]
        corr = {
            "thresholded": dict(correlation([p["accuracy"] for p in px], [f["test"]["accuracy"] for f in fu]),
                                what="proxy val accuracy at its calibrated thresholds (the search objective) vs "
                                     "full-training test accuracy at thresholds calibrated on val"),
            "final_exit": dict(correlation([p["final_exit_accuracy"] for p in px],
                                           [f["test"]["final_exit_accuracy"] for f in fu]),
                               what="proxy final-exit val accuracy vs full-training final-exit test accuracy "
                                    "(no thresholds)"),
            "objective_vs_full_final_exit": dict(
                correlation([p["accuracy"] for p in px], [f["test"]["final_exit_accuracy"] for f in fu]),
                what="proxy thresholded val accuracy (search objective) vs full-training final-exit test accuracy"),
            "expected_macs": dict(correlation([p["expected_macs"] for p in px], [f["test"]["expected_macs"] for f in fu]),
                                  what="proxy expected MACs (val, its thresholds) vs full-training expected MACs "
                                       "(test, its thresholds)"),
            "baseline_total_macs": dict(correlation([c["total_macs"] for c in cands],
                                                    [f["test"]["accuracy"] for f in fu]),
                                        what="naive predictor: total (final-exit) MACs vs full thresholded accuracy"),
            "baseline_params": dict(correlation([c["params"] for c in cands], [f["test"]["accuracy"] for f in fu]),
                                    what="naive predictor: parameter count vs full thresholded accuracy"),
            "baseline_total_macs_final_exit": dict(
                correlation([c["total_macs"] for c in cands], [f["test"]["final_exit_accuracy"] for f in fu]),
                what="naive predictor: total MACs vs full final-exit accuracy"),
        }
        sel: Dict[str, Any] = {}
        if len(cands) >= 3:
            pe = [1 - p["accuracy"] for p in px]
            pm = [p["expected_macs"] for p in px]
            fe = [1 - f["test"]["accuracy"] for f in fu]
            fm = [f["test"]["expected_macs"] for f in fu]
            a, b = set(nondominated(pe, pm)), set(nondominated(fe, fm))
            ids = [c["id"] for c in cands]
            k = min(5, len(cands))
            top_p = set(np.argsort(pe, kind="stable")[:k].tolist())
            top_f = set(np.argsort(fe, kind="stable")[:k].tolist())
            best_f = int(np.argmin(fe))
            sel = {"proxy_front": sorted(ids[i] for i in a), "full_front": sorted(ids[i] for i in b),
                   "front_overlap": len(a & b), "front_jaccard": round(len(a & b) / len(a | b), 3),
                   f"top{k}_overlap_by_accuracy": len(top_p & top_f),
                   "proxy_rank_of_full_best": int(sorted(range(len(pe)), key=lambda i: (pe[i], i)).index(best_f)) + 1,
                   "what": "non-dominated sets in (error, expected MACs) by the proxy (val) and after full "
                           "training (test); top-k by thresholded accuracy; where the proxy ranks the best "
                           "fully-trained candidate (1 = first)"}
        self.doc["summary"] = {
            "candidates_per_min": {f: s.get("candidates_per_min") for f, s in speed.items()},
            "seconds_per_candidate": {f: s.get("seconds_mean") for f, s in speed.items()},
            "speed": speed, "n_full": len(cands), "rank_correlation": corr, "selection": sel,
            "proxy_accuracy_range": [min((p["accuracy"] for p in px), default=None),
                                     max((p["accuracy"] for p in px), default=None)],
            "full_accuracy_range": [min((f["test"]["accuracy"] for f in fu), default=None),
                                    max((f["test"]["accuracy"] for f in fu), default=None)],
            "full_seconds_mean": round(float(np.mean([f["seconds"] for f in fu])), 1) if fu else None,
        }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", type=int, default=20, help="genomes for the rank correlation (default 20)")
    p.add_argument("--full-epochs", type=int, default=1,
                   help="backbone-phase epochs of the full training, on the whole training split (default 1)")
    p.add_argument("--full-head-epochs", type=int, default=None,
                   help="exit-phase (NACHOS loss) epochs of the full training (default: = --full-epochs)")
    p.add_argument("--full-train", type=int, default=None,
                   help="class-balanced training samples for the full training (default: the whole split)")
    p.add_argument("--speed-candidates", type=int, default=3,
                   help="candidates timed at the standard fidelity (the quick one times all --candidates)")
    p.add_argument("--quick-only", action="store_true", help="time the quick fidelity only")
    p.add_argument("--seed", type=int, default=0, help="run seed, as search(seed=): proxy subsets, candidate seeds")
    p.add_argument("--first-sample-seed", type=int, default=0, help="genomes are space.sample(seed) from this seed on")
    p.add_argument("--min-accuracy", type=float, default=0.85, help="constraint used by calibration (make demo: 0.85)")
    p.add_argument("--max-macs", default="1.0M", help="expected-MAC constraint and NACHOS MAC budget (make demo: 1.0M)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_speed.json"))
    p.add_argument("--resume", action="store_true", help="keep finished evaluations from --out (same settings)")
    p.add_argument("--smoke", action="store_true",
                   help="smoke test: proxies on 500 + 500 samples, 1 + 1 epochs (figures meaningless)")
    a = p.parse_args(argv)
    if a.full_head_epochs is None:
        a.full_head_epochs = a.full_epochs
    if a.candidates < 3:
        p.error("--candidates must be >= 3 for a rank correlation")
    if a.full_epochs < 0 or a.full_head_epochs < 0 or a.full_epochs + a.full_head_epochs < 1:
        p.error("the full training needs at least one epoch")
    if not 0 <= a.speed_candidates <= a.candidates:
        p.error("--speed-candidates must be in 0..--candidates")
    return a


def main(argv=None) -> int:
    Bench(parse_args(argv)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: memory of the proxy evaluator over many candidates, in one process and in replaced processes.

TensorFlow keeps every graph it traces for a model's training (tensorflow/tensorflow#124972), so a process
that trains candidate after candidate grows without bound: the proxy evaluator's multi-hour searches ended
in the kernel's OOM killer. `ProxyEvaluator(tasks_per_process=K)` (the default) trains candidates in worker
processes replaced after K candidates each. This benchmark trains the same `--candidates` random genomes of
`SearchSpace.mcu` on Fashion-MNIST (proxy budget `--budget`) both ways and records, after every candidate,
the resident memory (RSS) of the process that trained it, and the seconds:

* ``replaced``: `ProcessBackend(1, evaluator, tasks_per_process=K)`, as `nt.search` runs the proxy evaluator;
* ``in_process``: `ProxyEvaluator(tasks_per_process=None)` in this process (what searches did before).

The "replaced" way runs first (its search process trains nothing), on a machine that should be otherwise idle:
the time ratio compares the two ways' wall seconds.

The records of both ways must agree (same seeds, same thread count): the benchmark says if they do not.

    python benchmarks/proxy_memory.py --candidates 24 --out benchmarks/results/proxy_memory.json
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ResultFile, add_out, eval_context, positive_int, say  # noqa: E402

from nachos_tf.nas import ProxyEvaluator  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    """This process's resident memory in MiB (from /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class MeasuringProxy(ProxyEvaluator):
    """`ProxyEvaluator` whose records also say the RSS (MiB) and pid of the process after the candidate."""

    def evaluate(self, genome):
        rec = super().evaluate(genome)
        rec.extra["rss_mb"] = round(rss_mb(), 1)
        rec.extra["pid"] = os.getpid()
        return rec


def summarise(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Peak, first and last RSS, the growth per candidate (least-squares slope), the seconds, and what a new
    process costs: the median of (wall - training seconds) on a process's first candidate, less that on the
    others (None with one process)."""
    rss = np.array([r["rss_mb"] for r in rows], float)
    slope = float(np.polyfit(np.arange(len(rss)), rss, 1)[0]) if len(rss) > 1 else 0.0
    rest = np.array([r["wall_s"] - r["train_s"] for r in rows], float)
    first = np.array([k == 0 or rows[k]["pid"] != rows[k - 1]["pid"] for k in range(len(rows))])
    start = float(np.median(rest[first]) - np.median(rest[~first])) if first.sum() > 1 and (~first).any() else None
    return {"candidates": len(rows), "rss_first_mb": float(rss[0]), "rss_last_mb": float(rss[-1]),
            "rss_peak_mb": float(rss.max()), "growth_mb_per_candidate": round(slope, 1),
            "processes": len({r["pid"] for r in rows}),
            "trained": sum(r["status"] == "trained" for r in rows),
            "seconds_total": round(sum(r["wall_s"] for r in rows), 1),
            "process_start_s": None if start is None else round(start, 1)}


def main() -> None:
    from nachos_tf.nas import PROXY_BUDGETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", type=positive_int, default=24)
    ap.add_argument("--tasks-per-process", type=positive_int, default=None,
                    help="candidates per worker process (default: the evaluator's default)")
    ap.add_argument("--budget", choices=sorted(PROXY_BUDGETS), default="quick")
    ap.add_argument("--seed", type=int, default=0)
    add_out(ap, RESULTS / "proxy_memory.json")
    a = ap.parse_args()

    import nachos_tf as nt
    from nachos_tf.data import load
    from nachos_tf.nas import Constraints, pin_threads
    from nachos_tf.nas.backends import ProcessBackend, run_one
    from nachos_tf.nas.evaluators.proxy import DEFAULT_TASKS_PER_PROCESS

    per = a.tasks_per_process or DEFAULT_TASKS_PER_PROCESS
    pin_threads(1)
    data = load("fashion_mnist")
    space = nt.SearchSpace.mcu(data.input_shape, data.num_classes)
    rng = np.random.default_rng(a.seed)
    genomes = [space.sample(int(rng.integers(1 << 30))).to_dict() for _ in range(a.candidates)]
    constraints = Constraints(min_accuracy=0.5, max_macs=5e6)
    budget = PROXY_BUDGETS[a.budget]
    res = ResultFile(a.out, "proxy_memory", {"candidates": a.candidates, "tasks_per_process": per,
                                             "budget": a.budget, "seed": a.seed, "threads": 1}, resume=False)
    run_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"proxy_memory_{os.getpid()}"
    records: Dict[str, List[Dict[str, Any]]] = {}
    for mode in ("replaced", "in_process"):
        ev = MeasuringProxy(tasks_per_process=per if mode == "replaced" else None)
        ev.setup(eval_context(space, data, constraints, budget, a.seed, run_dir / mode))   # threads: 1 (pinned)
        rows: List[Dict[str, Any]] = []
        t_last = time.perf_counter()
        if mode == "replaced":
            backend = ProcessBackend(1, ev, tasks_per_process=per)
            it = backend.run(genomes)
        else:
            backend = None
            it = (run_one(ev, i, g) for i, g in enumerate(genomes))
        for i, rec in it:
            now = time.perf_counter()
            rows.append({"i": i, "pid": rec.extra.get("pid"), "rss_mb": rec.extra.get("rss_mb"),
                         "wall_s": round(now - t_last, 2), "train_s": rec.train_seconds,
                         "error": rec.metrics.error, "expected_macs": rec.metrics.expected_macs,
                         "status": "failed" if rec.error else ("untrained" if rec.pruned else "trained")})
            t_last = now
            say(f"{mode} c{i}: RSS {rows[-1]['rss_mb']} MiB (pid {rows[-1]['pid']}), {rows[-1]['wall_s']} s")
            if rows[-1]["rss_mb"] is None:
                raise SystemExit(f"error: candidate {i} has no RSS figure ({rec.error})")
        if backend is not None:
            backend.close()
        records[mode] = rows
        res[mode] = {"summary": summarise(rows), "rows": rows, "search_process_rss_mb": round(rss_mb(), 1)}
        res.save()
    def figures(rows):
        return sorted((r["i"], r["error"], r["expected_macs"], r["status"]) for r in rows)

    same = figures(records["replaced"]) == figures(records["in_process"])
    rep, inp = res["replaced"]["summary"], res["in_process"]["summary"]
    res["summary"] = {"same_records": same, "rss_peak_ratio": round(inp["rss_peak_mb"] / rep["rss_peak_mb"], 2),
                      "seconds_ratio": round(rep["seconds_total"] / inp["seconds_total"], 3)}
    res.finish()
    say(f"in one process: RSS {inp['rss_first_mb']:.0f} -> {inp['rss_last_mb']:.0f} MiB "
        f"({inp['growth_mb_per_candidate']:+.0f} MiB per candidate); replaced every {per}: peak "
        f"{rep['rss_peak_mb']:.0f} MiB over {rep['processes']} processes; time x{res['summary']['seconds_ratio']}; "
        f"same records: {same}")
    if not same:
        raise SystemExit("error: the two ways gave different records")


if __name__ == "__main__":
    main()

"""Benchmark: which cheap proxy ranks candidates best, at about the same cost? (issue 4, item 2)

`benchmarks/search_speed.py` trained 20 sampled genomes fully and measured how well the `quick` proxy
ranks them. Full training is the expensive half, and it does not depend on the proxy, so this script
re-uses those 20 full-training results (`benchmarks/results/search_speed.json`) and evaluates other proxy
settings of about the same cost on the same genomes, with the same run seed, constraints and evaluator
(`nachos_tf.nas.ProxyEvaluator().evaluate`, on `proxy_subset(data, budget, seed)` as in a search). Per
variant it reports seconds per candidate and the rank correlations (Spearman, Kendall) of the
proxy's thresholded validation accuracy with the full-training thresholded test accuracy and with the
full final-exit accuracy, and of its expected MACs with the full-training expected MACs. The `quick`
row is read from search_speed.json (the proxy rows it measured); ``quick_now`` re-measures it under
the same conditions as the other variants (training depends on the TensorFlow thread count). The
full-training results are read from search_speed.json in either of its formats (issue 4 and issue 12).

Results go to ``--out`` (JSON, rewritten after every candidate; ``--resume`` continues).

    python benchmarks/proxy_fidelity.py --variants more_data backbone_first --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import (RESULTS, add_out, add_resume, add_threads, correlation, eval_context, loadavg,  # noqa: E402
                     machine, pin_threads, utc_now, versions, write_json)

import nachos_tf as nt  # noqa: E402
from nachos_tf import Genome, SearchSpace  # noqa: E402
from nachos_tf.nas import Budget, Constraints, ProxyEvaluator  # noqa: E402

# Budget fields changed from the `quick` preset; each costs about what quick costs (images x epochs).
VARIANTS: Dict[str, Dict[str, Any]] = {
    "quick": {},                                                        # 3000 images x 2 NACHOS epochs
    "quick_now": {},               # the same, re-measured here (thread count and code as the other variants)
    "more_data": {"proxy_train": 6000, "head_epochs": 1},               # 6000 images x 1 NACHOS epoch
    "backbone_first": {"epochs": 1, "head_epochs": 1},                  # 3000 x (1 backbone CE + 1 NACHOS)
    "more_data_backbone_first": {"proxy_train": 6000, "epochs": 1, "head_epochs": 1},   # twice the cost
}


def full_results(speed: Dict[str, Any]) -> Tuple[List[str], Dict[str, Dict[str, Any]], Dict[str, Any]]:
    """(genome ids in order, full-training result by id, full-training settings) of search_speed.json,
    as written by issue 4's version (``candidates[*].full``) or issue 12's (``full_training``)."""
    if "full_training" in speed:
        ft = speed["full_training"]
        return list(ft["order"]), dict(ft["results"]), ft["settings"]
    cands = [c for c in speed["candidates"] if c.get("full")]
    return [c["id"] for c in cands], {c["id"]: c["full"] for c in cands}, speed["settings"]["full"]


def proxy_rows(speed: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The quick proxy's rows of search_speed.json (either format)."""
    if "evaluators" in speed:
        rows = speed["evaluators"].get("proxy", {}).get("rows", [])
        return [{"id": r["id"], "accuracy": r["accuracy"], "expected_macs": r["expected_macs"],
                 "seconds": r["seconds"]} for r in rows]
    return [{"id": c["id"], "accuracy": c["proxy"]["accuracy"], "expected_macs": c["proxy"]["expected_macs"],
             "seconds": c["proxy"]["seconds"]} for c in speed["candidates"]]


def proxy_evaluator(space, data, constraints, budget, seed: int, run_dir: Path) -> ProxyEvaluator:
    """A `ProxyEvaluator` set up as a search with this budget, seed and (search-time) constraints would."""
    ev = ProxyEvaluator()
    ev.setup(eval_context(space, data, constraints, budget, seed, run_dir,
                          loss=nt.LossConfig.nachos(mac_budget=constraints.max_macs)))
    return ev


def summarise(rows: List[Dict[str, Any]], full: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    ids = [r["id"] for r in rows]
    acc = [r["accuracy"] for r in rows]
    secs = [r["seconds"] for r in rows]
    return {"n": len(rows), "seconds_mean": round(float(sum(secs) / len(secs)), 2) if secs else None,
            "candidates_per_min": round(60.0 * len(secs) / sum(secs), 3) if secs else None,
            "thresholded": correlation(acc, [full[i]["test"]["accuracy"] for i in ids]),
            "vs_full_final_exit": correlation(acc, [full[i]["test"]["final_exit_accuracy"] for i in ids]),
            "expected_macs": correlation([r["expected_macs"] for r in rows],
                                         [full[i]["test"]["expected_macs"] for i in ids])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", nargs="+", default=["more_data", "backbone_first"],
                   choices=[v for v in VARIANTS if v != "quick"])
    p.add_argument("--speed", type=Path, default=RESULTS / "search_speed.json",
                   help="search_speed.json holding the full-training results (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N genomes (smoke runs)")
    add_threads(p)
    add_out(p, RESULTS / "proxy_fidelity.json")
    add_resume(p)
    p.add_argument("--check-quick", type=int, default=2, metavar="N",
                   help="first re-run the quick proxy on N genomes and compare with search_speed.json")
    a = p.parse_args(argv)
    pin_threads(a.threads)
    speed = json.loads(Path(a.speed).read_text())
    st = speed["settings"]
    run_seed = int(st["run_seed"])
    cons = Constraints.from_dict(st["proxy_constraints"]["quick"])      # the quick search floor (slack)
    order, full, full_settings = full_results(speed)
    order = order[:a.limit]
    genomes = {i: Genome.from_dict(speed["genomes"][i]["genome"]) for i in order}
    out = Path(a.out)
    doc = json.loads(out.read_text()) if a.resume and out.exists() else {}
    doc.update(benchmark="proxy_fidelity", issue=4, machine=dict(machine(), load_avg_start=loadavg()),
               versions=versions(), command="python benchmarks/proxy_fidelity.py " + " ".join(sys.argv[1:]),
               reference=Path(a.speed).name, run_seed=run_seed, constraints=cons.to_dict(),
               full_training=full_settings, threads=a.threads)
    doc.setdefault("variants", {})
    quick_rows = [r for r in proxy_rows(speed) if r["id"] in genomes]
    doc["variants"]["quick"] = {"budget": dict(VARIANTS["quick"]), "rows": quick_rows, "from": str(a.speed),
                                "summary": summarise(quick_rows, full)}
    data = nt.data.load(st["dataset"])
    space = SearchSpace.mcu((28, 28, 1), 10)
    work = Path(tempfile.mkdtemp(prefix="nachos_proxy_fidelity_"))

    def save():
        doc["last_saved"] = utc_now()
        write_json(out, doc)

    if a.check_quick and "quick_check" not in doc:
        budget = Budget.preset("quick")
        ev = proxy_evaluator(space, data, cons, budget, run_seed, work)
        checks = []
        for r in quick_rows[:a.check_quick]:
            t0 = time.perf_counter()
            m = ev.evaluate(genomes[r["id"]]).metrics
            checks.append({"id": r["id"], "stored": r["accuracy"], "now": m.accuracy,
                           "stored_macs": r["expected_macs"], "now_macs": m.expected_macs,
                           "seconds": round(time.perf_counter() - t0, 2)})
            print(f"quick check {r['id']}: stored acc {r['accuracy']}, now {m.accuracy}", flush=True)
        doc["quick_check"] = checks
        save()
    for name in a.variants:
        budget = replace(Budget.preset("quick"), name=name, **VARIANTS[name])
        entry = doc["variants"].setdefault(name, {"budget": dict(VARIANTS[name]), "rows": []})
        done = {r["id"] for r in entry["rows"]}
        ev = proxy_evaluator(space, data, cons, budget, run_seed, work)
        for gid in order:
            if gid in done:
                continue
            t0 = time.perf_counter()
            m = ev.evaluate(genomes[gid]).metrics
            entry["rows"].append({"id": gid, "accuracy": m.accuracy, "expected_macs": m.expected_macs,
                                  "seconds": round(time.perf_counter() - t0, 2), "load": loadavg()})
            entry["summary"] = summarise(entry["rows"], full)
            save()
            print(f"[{time.strftime('%H:%M:%S')}] {name} {gid}: proxy acc {m.accuracy}, "
                  f"full {full[gid]['test']['accuracy']} ({entry['rows'][-1]['seconds']} s)", flush=True)
        s = entry["summary"]
        print(f"{name}: Spearman {s['thresholded']['spearman']} (thresholded), "
              f"{s['vs_full_final_exit']['spearman']} (vs final exit), {s['expected_macs']['spearman']} (MACs), "
              f"{s['candidates_per_min']} candidates/min", flush=True)
    save()


if __name__ == "__main__":
    main()

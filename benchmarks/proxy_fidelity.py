"""Benchmark: which cheap proxy ranks candidates best, at about the same cost? (issue 4, item 2)

`benchmarks/search_speed.py` trained 20 sampled genomes fully and measured how well the `quick` proxy
ranks them. Full training is the expensive half, and it does not depend on the proxy, so this script
re-uses those 20 full-training results (`benchmarks/results/search_speed.json`) and evaluates other proxy
settings of about the same cost on the same genomes, with the same run seed, constraints and evaluator
(`nachos_tf.search.evaluate_candidate` on `proxy_subset(data, budget, seed)`). Per variant it reports
seconds per candidate and the rank correlations (`search_speed.correlation`: Spearman, Kendall) of the
proxy's thresholded validation accuracy with the full-training thresholded test accuracy and with the
full final-exit accuracy, and of its expected MACs with the full-training expected MACs. The `quick`
row is read from search_speed.json (that proxy is the one it measured); ``quick_now`` re-measures it under
the same conditions as the other variants (training depends on the TensorFlow thread count).

Results go to ``--out`` (JSON, rewritten after every candidate; ``--resume`` continues).

    python benchmarks/proxy_fidelity.py --variants more_data backbone_first --threads 1
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nachos_tf as nt  # noqa: E402
from nachos_tf.space import Genome, SearchSpace  # noqa: E402
from search_speed import correlation, loadavg, machine, versions  # noqa: E402

S = importlib.import_module("nachos_tf.search")

# Budget fields changed from the `quick` preset; each costs about what quick costs (images x epochs).
VARIANTS: Dict[str, Dict[str, Any]] = {
    "quick": {},                                                        # 3000 images x 2 NACHOS epochs
    "quick_now": {},               # the same, re-measured here (thread count and code as the other variants)
    "more_data": {"proxy_train": 6000, "head_epochs": 1},               # 6000 images x 1 NACHOS epoch
    "backbone_first": {"epochs": 1, "head_epochs": 1},                  # 3000 x (1 backbone CE + 1 NACHOS)
    "more_data_backbone_first": {"proxy_train": 6000, "epochs": 1, "head_epochs": 1},   # twice the cost
}


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
    p.add_argument("--speed", default=str(ROOT / "benchmarks" / "results" / "search_speed.json"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "proxy_fidelity.json"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--check-quick", type=int, default=2, metavar="N",
                   help="first re-run the quick proxy on N genomes and compare with search_speed.json")
    a = p.parse_args(argv)
    if a.threads:
        S.pin_threads(a.threads)
    speed = json.loads(Path(a.speed).read_text())
    st = speed["settings"]
    run_seed = int(st["run_seed"])
    cons = S.Constraints.from_dict(st["proxy_constraints"]["quick"])      # the quick search floor (slack)
    full = {c["id"]: c["full"] for c in speed["candidates"]}
    order = [c["id"] for c in speed["candidates"]]
    genomes = {i: Genome.from_dict(speed["genomes"][i]["genome"]) for i in order}
    out = Path(a.out)
    doc = json.loads(out.read_text()) if a.resume and out.exists() else {}
    doc.update(benchmark="proxy_fidelity", issue=4, machine=dict(machine(), load_avg_start=loadavg()),
               versions=versions(), command="python benchmarks/proxy_fidelity.py " + " ".join(sys.argv[1:]),
               reference=Path(a.speed).name, run_seed=run_seed, constraints=cons.to_dict(),
               full_training=st["full"], threads=a.threads)
    doc.setdefault("variants", {})
    quick_rows = [{"id": c["id"], "accuracy": c["proxy"]["accuracy"], "expected_macs": c["proxy"]["expected_macs"],
                   "seconds": c["proxy"]["seconds"]} for c in speed["candidates"]]
    doc["variants"]["quick"] = {"budget": dict(VARIANTS["quick"]), "rows": quick_rows, "from": a.speed,
                                "summary": summarise(quick_rows, full)}
    data = nt.data.load(st["dataset"])
    space = SearchSpace.mcu((28, 28, 1), 10)

    def save():
        doc["last_saved"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, out)

    if a.check_quick and "quick_check" not in doc:
        budget = S.Budget.preset("quick")
        sub = S.proxy_subset(data, budget, run_seed)
        checks = []
        for r in quick_rows[:a.check_quick]:
            t0 = time.perf_counter()
            m = S.evaluate_candidate(genomes[r["id"]], space, sub, cons, budget, run_seed)["metrics"]
            checks.append({"id": r["id"], "stored": r["accuracy"], "now": m["accuracy"],
                           "stored_macs": r["expected_macs"], "now_macs": m["expected_macs"],
                           "seconds": round(time.perf_counter() - t0, 2)})
            print(f"quick check {r['id']}: stored acc {r['accuracy']}, now {m['accuracy']}", flush=True)
        doc["quick_check"] = checks
        save()
    for name in a.variants:
        budget = replace(S.Budget.preset("quick"), name=name, **VARIANTS[name])
        entry = doc["variants"].setdefault(name, {"budget": dict(VARIANTS[name]), "rows": []})
        done = {r["id"] for r in entry["rows"]}
        sub = S.proxy_subset(data, budget, run_seed)
        for gid in order:
            if gid in done:
                continue
            t0 = time.perf_counter()
            rec = S.evaluate_candidate(genomes[gid], space, sub, cons, budget, run_seed)
            m = rec["metrics"]
            entry["rows"].append({"id": gid, "accuracy": m["accuracy"], "expected_macs": m["expected_macs"],
                                  "seconds": round(time.perf_counter() - t0, 2), "load": loadavg()})
            entry["summary"] = summarise(entry["rows"], full)
            save()
            print(f"[{time.strftime('%H:%M:%S')}] {name} {gid}: proxy acc {m['accuracy']}, "
                  f"full {full[gid]['test']['accuracy']} ({entry['rows'][-1]['seconds']} s)", flush=True)
        s = entry["summary"]
        print(f"{name}: Spearman {s['thresholded']['spearman']} (thresholded), "
              f"{s['vs_full_final_exit']['spearman']} (vs final exit), {s['expected_macs']['spearman']} (MACs), "
              f"{s['candidates_per_min']} candidates/min", flush=True)
    save()


if __name__ == "__main__":
    main()

"""Collect the figures of a finished `make demo` into one JSON (the README's "make demo, measured" section).

Reads the run folder as the library does (`nachos_tf.load_run`: validated), the export's `evaluate.json`
(`nachos-tf evaluate`), `deploy_check.json` and `verify.json` (the two independent checks `make demo`
runs), and the wall-clock seconds of the whole `make demo` (give them with --seconds, e.g. from the
`DEMO_SECONDS=` line of the timed command below). Nothing is re-computed here.

    start=$(date +%s); make demo; echo "DEMO_SECONDS=$(( $(date +%s) - start ))"
    .venv/bin/python benchmarks/demo_summary.py runs/demo --seconds N --out benchmarks/results/demo.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import RESULTS, read_json, utc_now, write_json  # noqa: E402

import nachos_tf as nt  # noqa: E402


def _solution(s) -> Dict[str, Any]:
    q = s.int8 or {}
    return {"id": s.id, "exits": len(s.exit_macs), "rule": s.rule, "exit_macs": [float(m) for m in s.exit_macs],
            "val": s.val, "test": s.test,
            "int8": {k: q.get(k) for k in ("accuracy", "exit_rates", "expected_macs", "n", "stage_bytes",
                                           "arena_bytes")} if q else None}


def _firmware(path: Path) -> Optional[Dict[str, Any]]:
    """The Cortex-M4F CMSIS-NN firmware report `make demo` writes when TFLM_ROOT is set (else None)."""
    fw = read_json(path)
    if not fw:
        return None
    run, sz = fw["run"], fw["sizes"]
    return {"target": fw["target"], "kernels": fw["kernels"], "machine": fw["machine"], "n": run["n"],
            "agree": run["agree"], "accuracy": run["accuracy"], "flash_bytes": sz["flash_bytes"],
            "model_bytes": sz["model_bytes"], "code_bytes": sz["code_bytes"], "ram_bytes": sz["ram"]["total"],
            "arena_used": run.get("arena_used"), "arena_bytes": fw.get("arena_bytes"),
            "build_seconds": fw.get("build_seconds")}


def summarize(run: Path, seconds: Optional[float], until_checks: Optional[float] = None,
              search_seconds: Optional[float] = None) -> Dict[str, Any]:
    """The demo's figures: search, final stage, admissible set, export, checks."""
    res = nt.load_run(run)
    arch = res.archive
    measured = [r for r in arch if r.measured_ok]
    finals = res.final_records
    deploy = run / "deploy"
    ev = read_json(deploy / "evaluate.json") or {}
    dc = read_json(deploy / "deploy_check.json") or {}
    vr = read_json(run / "verify.json") or {}
    manifest = read_json(deploy / "manifest.json") or {}
    return {
        "benchmark": "make_demo", "issue": 12, "finished": utc_now(), "run": str(run),
        "make_demo_seconds": seconds, "seconds_until_checks_done": until_checks, "search_seconds": search_seconds,
        "config": {k: res.config.get(k) for k in ("seed", "constraints", "budget", "evaluator", "threads")},
        "search": {"candidates": len(arch), "evaluated": len(measured),
                   "pruned_untrained": sum(1 for r in arch if r.pruned),
                   "feasible": sum(1 for r in arch if r.feasible),
                   "evaluate_seconds_sum": round(sum(float(r.seconds or 0) for r in arch), 1),
                   "evaluate_seconds_mean": round(sum(float(r.seconds or 0) for r in measured) / max(1, len(measured)), 2)},
        "final": {"members": len(finals), "dropped": [{"id": f.id, "reason": f.dropped} for f in finals if f.dropped],
                  "search_metrics": {f.id: f.search_metrics for f in finals},
                  "calibration": {f.id: f.extra.get("calibration") for f in finals},
                  "seconds_sum": round(sum(float(f.seconds or 0) for f in finals), 1)},
        "hypervolume": res.hypervolume,
        "admissible": [_solution(s) for s in res.admissible],
        "export": {"solution": manifest.get("solution") or manifest.get("id"),
                   "stage_bytes": [st.get("bytes") for st in manifest.get("stages", [])],
                   "arena_bytes": manifest.get("arena_bytes")},
        "evaluate": {k: ev.get(k) for k in ("n", "accuracy", "exit_rates", "expected_macs", "ms_per_image")},
        "deploy_check_ok": dc.get("ok"), "verify_ok": vr.get("ok"),
        "firmware": _firmware(deploy / "firmware" / "cortex-m4-cmsis-nn.json"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--seconds", type=float, default=None, help="wall-clock seconds of the whole make demo")
    ap.add_argument("--until-checks", type=float, default=None,
                    help="wall-clock seconds from the start of make demo to the end of its two independent checks "
                         "(before the optional firmware build)")
    ap.add_argument("--search-seconds", type=float, default=None,
                    help="wall-clock seconds of the `nachos-tf search` command alone (search and final stage)")
    ap.add_argument("--out", type=Path, default=RESULTS / "demo.json")
    a = ap.parse_args(argv)
    doc = summarize(a.run_dir, a.seconds, a.until_checks, a.search_seconds)
    doc["complete"] = True
    write_json(a.out, doc)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

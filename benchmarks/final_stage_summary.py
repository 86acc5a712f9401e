"""Collect the figures of final stages run again on one search (`nachos-tf finalize`) into one JSON, to compare
final-stage settings or code on the same finalists (README "make demo, measured").

For each refinalized folder: the wall-clock seconds of its `nachos-tf finalize` command (measured outside, given
as FOLDER=SECONDS), the final budget it ran with, each finalist's seconds, the admissible set's figures and its test
hypervolume (`compare.test_hypervolume`). The folders are read as the library reads them (`nachos_tf.load_run`:
validated); nothing is re-computed.

    s=$(date +%s); .venv/bin/nachos-tf finalize runs/dcos2 --out runs/abNew --workers 2; echo $(( $(date +%s) - s ))
    .venv/bin/python benchmarks/final_stage_summary.py runs/abOld=369 runs/abNew=N \
      --note "abOld: commit 409d578; abNew: this commit" --out benchmarks/results/final_stage_ab.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import RESULTS, utc_now, write_json  # noqa: E402
from compare import test_hypervolume  # noqa: E402

import nachos_tf as nt  # noqa: E402

FINAL_KEYS = ("final_train", "final_epochs", "final_head_epochs", "final_schedule", "final_macs", "max_final",
              "finalists", "rescore", "screen")


def summarize(run: Path, seconds: float) -> Dict[str, Any]:
    """One refinalized folder's figures."""
    res = nt.load_run(run)
    budget = res.config.get("budget") or {}
    finals = res.final_records
    sols = [{"id": s.id, "exits": len(s.exit_macs), "val": s.val, "test": s.test,
             "int8": {k: (s.int8 or {}).get(k) for k in ("accuracy", "expected_macs", "n")} if s.int8 else None}
            for s in res.admissible]
    cons = res.config.get("constraints") or {}
    return {"run": str(run), "seconds": float(seconds), "budget": {k: budget.get(k) for k in FINAL_KEYS},
            "finalists": {f.id: {"seconds": f.seconds, "train_seconds": f.train_seconds, "dropped": f.dropped}
                          for f in finals},
            "finalist_seconds_sum": round(sum(float(f.seconds or 0) for f in finals), 1),
            "admissible": sols,
            "test_hypervolume": test_hypervolume(sols, cons)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="FOLDER=SECONDS: a refinalized folder and its command's wall seconds")
    ap.add_argument("--note", default="", help="what differs between the runs (code, settings)")
    ap.add_argument("--out", type=Path, default=RESULTS / "final_stage_ab.json")
    a = ap.parse_args(argv)
    runs = []
    for item in a.runs:
        folder, sep, secs = item.rpartition("=")
        if not sep:
            ap.error(f"{item!r}: give FOLDER=SECONDS")
        try:
            seconds = float(secs)
        except ValueError:
            ap.error(f"{item!r}: SECONDS must be a number")
        runs.append(summarize(Path(folder), seconds))
    write_json(a.out, {"benchmark": "final_stage_ab", "issue": 12, "finished": utc_now(), "note": a.note,
                       "runs": runs})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

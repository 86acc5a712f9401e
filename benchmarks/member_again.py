"""Run the final stage of one member of a finished search again, alone, with whatever `nachos_tf` is imported.

Used to tell a code change from a host difference: run it with today's checkout and with an older commit's
(``git worktree add /tmp/old COMMIT`` then ``PYTHONPATH=/tmp/old``) on the same machine, and compare the two
JSON files. The run folder is only read: the member's search record and the run's config.json go into a new
folder (``--work``), whose final stage (`nachos_tf.refinalize`, ``max_final=1``, the run's own final budget
otherwise) re-scores, fine-tunes and measures that member only.

    PYTHONPATH=/tmp/old58 .venv/bin/python benchmarks/member_again.py runs/compare_f6/random/seed0 c0360 \\
        --work /tmp/only360 --out benchmarks/results/parts/f6_s0_c0360_58ac29e.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _commit(module_file: str) -> dict:
    """The git commit (and dirty files) of the checkout `module_file` lives in."""
    root = Path(module_file).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "nachos_tf", "tflite_export"],
                               capture_output=True, text=True, check=True).stdout.split("\n")
        return {"commit": head, "dirty": [line[3:] for line in dirty if line.strip()], "root": str(root)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "root": str(root)}


def member_folder(run_dir: Path, member: str, work: Path) -> None:
    """A run folder holding only `member`'s search record and `run_dir`'s config.json and search clock."""
    records = [(line, json.loads(line)) for line in (run_dir / "archive.jsonl").read_text().splitlines() if line.strip()]
    lines = [line for line, r in records if r.get("stage") == "search" and r.get("id") == member]
    if len(lines) != 1:
        raise SystemExit(f"{run_dir}/archive.jsonl has {len(lines)} search records of {member} (need one)")
    if work.exists():
        raise SystemExit(f"{work} exists: give a new --work folder")
    work.mkdir(parents=True)
    for name in ("config.json", "search_clock.json"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, work / name)
    (work / "archive.jsonl").write_text(lines[0] + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a finished search's run folder")
    p.add_argument("member", help="the candidate id, e.g. c0360")
    p.add_argument("--work", type=Path, required=True, help="new folder for the one-member search copy")
    p.add_argument("--out", type=Path, required=True, help="result JSON")
    p.add_argument("--final-head-epochs", type=int, default=None, help="change the run's exit-phase epochs")
    p.add_argument("--final-schedule", choices=("constant", "cosine"), default=None,
                   help="change the run's learning-rate schedule of the fine-tune (a commit that has it)")
    a = p.parse_args(argv)
    import nachos_tf as nt

    member_folder(a.run_dir, a.member, a.work)
    t0 = time.time()
    changes = {k: v for k, v in (("final_head_epochs", a.final_head_epochs), ("final_schedule", a.final_schedule))
               if v is not None}
    nt.refinalize(a.work, a.work / "final", max_final=1, **changes)
    pareto = json.loads((a.work / "final" / "pareto.json").read_text())
    doc = {"benchmark": "member_again", "run_dir": str(a.run_dir), "member": a.member, "code": _commit(nt.__file__),
           "seconds": round(time.time() - t0, 1), "argv": sys.argv, "changes": changes, "pareto": pareto}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    sol = next((s for s in pareto["solutions"] if s["id"] == a.member), None)
    print(f"{a.member}: " + ("not kept" if sol is None else
                             f"val {sol['val']['accuracy']:.4f}, test {sol['test']['accuracy']:.4f}, "
                             f"int8 {(sol.get('int8') or {}).get('accuracy')}") + f"; wrote {a.out}")


if __name__ == "__main__":
    main()

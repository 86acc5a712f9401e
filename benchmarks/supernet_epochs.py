"""Does a longer-trained supernet rank stand-alone training better? The estimate of each supernet snapshot
against one reference, side by side.

For every supernet folder given (e.g. the epoch snapshots `scripts/train_default_supernet.py --snapshots`
writes, or folders made from checkpoint copies with its `--export-checkpoint`), `benchmarks/search_speed.py`
measures the supernet estimate of the reference's 20 genomes (``--no-full-training``, the reference's
stand-alone results reused) into ``--work-dir/<name>.json``; a file that is already complete is kept, so the
command resumes. The summary holds, per snapshot: its total training epochs and seconds (its manifest, over
every stage it continued), Spearman / Kendall of the thresholded estimate (the search objective) and of the
final-exit accuracy against the reference, the mean estimate, and how the snapshot ranks the 20 genomes like
the snapshot before it (are the estimates noise, or a consistent judgement?); with a reference trained twice
(`search_speed.py --repeat-full-training`), also against the mean of the two trainings.

Run (stage-2 preset, shipped preset = stage 3, then the stage-4 snapshots):

    git show 0bf17e2:nachos_tf/supernet/presets/fashion_mnist/supernet.weights.h5 > runs/stage2/supernet.weights.h5
    git show 0bf17e2:nachos_tf/supernet/presets/fashion_mnist/supernet.json > runs/stage2/supernet.json
    .venv/bin/python benchmarks/supernet_epochs.py --threads 1 --out benchmarks/results/supernet_epochs.json \
        --supernets runs/stage2 nachos_tf/supernet/presets/fashion_mnist runs/supernet_fm_s4/epochs/e*
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from _common import (ROOT, RESULTS, add_out, add_threads, correlation, environment, read_json, say,
                     supernet_training, two_training_mean, utc_now, write_json)


def measure(folder: Path, out: Path, reference: Path, full: Dict[str, Any], threads: int) -> Dict[str, Any]:
    """search_speed's supernet estimate with `folder`, written to `out` (kept when already complete);
    `full`: the reference's full-training settings (its epochs are passed on)."""
    done = read_json(out)
    if not (done and done.get("complete")):
        cmd = [sys.executable, str(ROOT / "benchmarks" / "search_speed.py"), "--evaluators", "supernet",
               "--supernet-dir", str(folder), "--no-full-training", "--reference", str(reference),
               "--out", str(out), "--work-dir", str(out.with_suffix(""))]
        if full:
            cmd += ["--full-epochs", str(full["epochs"]), "--full-head-epochs", str(full["head_epochs"])]
        if threads:
            cmd += ["--threads", str(threads)]
        say(f"measuring {folder} -> {out}")
        subprocess.run(cmd, check=True)
        done = read_json(out)
    return done


def summarise(name: str, folder: Path, res: Dict[str, Any], prev: Dict[str, float],
              mean: Dict[str, float]) -> Dict[str, Any]:
    """One snapshot's row; `mean`: the mean test accuracy of the reference's two trainings by genome (empty when
    the reference was trained once)."""
    ids = res["settings"]["genome_ids"]
    ref = res["full_training"]["results"]
    rows = {r["id"]: r for r in res["evaluators"]["supernet"]["rows"]}
    est = {i: rows[i]["accuracy"] for i in ids if i in rows and rows[i]["accuracy"] is not None}
    keep = [i for i in ids if i in est and i in ref]
    full = [ref[i]["test"]["accuracy"] for i in keep]
    out = {"name": name, "folder": str(folder), "training": supernet_training(folder),
           "thresholded": correlation([est[i] for i in keep], full),
           "final_exit": correlation([rows[i]["final_exit_accuracy"] for i in keep],
                                     [ref[i]["test"]["final_exit_accuracy"] for i in keep]),
           "mean_estimate": round(sum(est[i] for i in keep) / len(keep), 4),
           "estimates": {i: est[i] for i in keep}}
    both = [i for i in keep if i in mean]
    if len(both) >= 3:
        out["vs_mean_reference"] = correlation([est[i] for i in both], [mean[i] for i in both])
    if prev:
        common = [i for i in keep if i in prev]
        out["agreement_with_previous"] = correlation([est[i] for i in common], [prev[i] for i in common])
    return out


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--supernets", nargs="+", type=Path, required=True,
                   help="supernet folders, in training order (each holds supernet.json)")
    p.add_argument("--reference", type=Path, default=RESULTS / "search_speed_refnoise10.json",
                   help="complete search_speed results holding the stand-alone reference (default: %(default)s, "
                        "the 10-epoch reference of search_speed_ref10.json and its repeat with run seed 1)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "supernet_epochs",
                   help="one search_speed result per snapshot (default: %(default)s)")
    add_threads(p)
    add_out(p, RESULTS / "supernet_epochs.json")
    a = p.parse_args(argv)
    ref = read_json(a.reference)
    if not ref or not ref.get("complete") or "full_training" not in ref:
        p.error(f"{a.reference}: not a complete search_speed result with a full-training reference")
    for f in a.supernets:
        if not (f / "supernet.json").is_file():
            p.error(f"{f}: no supernet.json (not a supernet folder)")
    doc: Dict[str, Any] = {"benchmark": "supernet_epochs", "issue": 12, "started": utc_now(),
                           "reference": str(a.reference), "reference_full": ref["settings"].get("full"),
                           **environment(), "snapshots": [], "complete": False}
    prev: Dict[str, float] = {}
    mean = two_training_mean(ref)
    if mean:
        seeds = [ref["settings"].get("run_seed"), ref["full_training_repeat"]["run_seed"]]
        doc["reference_trainings"] = {"run_seeds": seeds, "genomes_trained_twice": len(mean)}
    for f in a.supernets:
        name = f"{f.parent.parent.name}_{f.name}" if f.parent.name == "epochs" else f.name
        res = measure(f, a.work_dir / f"{name}.json", a.reference, ref["settings"].get("full", {}), a.threads)
        row = summarise(name, f, res, prev, mean)
        prev = row["estimates"]
        doc["snapshots"].append(row)
        t = row["thresholded"]
        say(f"{name}: {row['training']['epochs_done']} epochs, Spearman {t['spearman']} (p {t['spearman_p']}), "
            f"mean estimate {row['mean_estimate']}")
        write_json(a.out, doc)
    doc.update(complete=True, finished=utc_now())
    write_json(a.out, doc)
    print("| supernet | epochs | training s | Spearman (p) | Kendall | final exit | mean estimate | agrees with previous "
          "| vs mean of two trainings |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in doc["snapshots"]:
        t, fe, ag = r["thresholded"], r["final_exit"], r.get("agreement_with_previous", {})
        print(f"| {r['name']} | {r['training']['epochs_done']} | {r['training']['epoch_seconds']:.0f} | "
              f"{t['spearman']} ({t['spearman_p']}) | {t['kendall']} | {fe['spearman']} | {r['mean_estimate']} | "
              f"{ag.get('spearman', '-')} | {r.get('vs_mean_reference', {}).get('spearman', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

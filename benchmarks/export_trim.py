"""What leaving out the stages that never run saves, measured on the admissible solutions of a search run.

For every admissible solution of each RUN given (or those given with --solutions), this converts the saved Keras model to the
staged int8 export twice, as `nachos-tf export` does (same calibration images, rule and thresholds): once as
exported now (`convert_eenn(..., drop_unreachable=True)`: no stage after an early exit whose threshold is -inf)
and once with every stage. Both run image by image on the TFLM micro kernels over the test split
(`tflite_export.evaluate_staged`); the JSON records, per solution, the stage bytes and the exported arena of each,
whether the two give the same exit for every image, and on how many images the class differs (the last exported stage
is converted as a final classifier, class output only, so its int8 rounding may differ from that stage's in the
whole export; the stages before it are the same flatbuffers).

    .venv/bin/python benchmarks/export_trim.py runs/demo runs/compare_cos/{nachos,random}/seed3 \
        --out benchmarks/results/export_trim.json
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import RESULTS, add_out, environment, say, utc_now, write_json  # noqa: E402


def measure(run_dir: Path, solution: str, data) -> Dict[str, Any]:
    """Both exports of one solution, their sizes and their TFLM figures on the test split."""
    import numpy as np

    from tflite_export.c_export import convert_eenn
    from tflite_export.from_run import load_solution_model, pick_solution, representative_x
    from tflite_export.tflm import evaluate_staged

    sol = pick_solution(run_dir, solution)
    model = load_solution_model(run_dir, sol)
    rep = representative_x(data.x_train)
    out: Dict[str, Any] = {"solution": sol.id, "rule": sol.rule, "thresholds": [str(t) for t in sol.thresholds]}
    runs, runs_blobs = {}, {}
    for name, drop in (("exported", True), ("every_stage", False)):
        manifest, blobs = convert_eenn(model, rep, sol.rule, sol.thresholds, sol.exit_macs, drop_unreachable=drop)
        res = evaluate_staged(blobs, data.x_test, data.y_test, manifest=manifest, measure=False, details=True)
        runs[name] = res
        runs_blobs[name] = blobs
        out[name] = {"stages": len(blobs), "stage_bytes": [len(b) for b in blobs],
                     "model_bytes": int(sum(len(b) for b in blobs)), "arena_bytes": int(manifest["arena_bytes"]),
                     "exits_not_exported": manifest["exits_not_exported"], "accuracy": res["accuracy"],
                     "exit_counts": res["exit_counts"], "expected_macs": res["expected_macs"], "n": res["n"]}
    a, b = runs["exported"], runs["every_stage"]
    out["same_class_every_image"] = bool(np.array_equal(a["predictions"], b["predictions"]))
    out["same_exit_every_image"] = bool(np.array_equal(a["exits"], b["exits"]))
    # the last exported stage is converted as a final classifier (class output only), so its int8 rounding may
    # differ from the same stage's in the whole export; every stage before it is the same flatbuffer
    last = len(a["stage_bytes"]) - 1
    at_last = np.asarray(a["exits"]) == last
    out["images_at_last_stage"] = int(at_last.sum())
    out["class_differs_at_last_stage"] = int((np.asarray(a["predictions"]) != np.asarray(b["predictions"]))[at_last].sum())
    out["class_differs_before_it"] = int((np.asarray(a["predictions"]) != np.asarray(b["predictions"]))[~at_last].sum())
    out["stages_before_the_last_identical"] = all(
        x == y for x, y in zip(runs_blobs["exported"][:last], runs_blobs["every_stage"][:last]))
    out["model_bytes_ratio"] = out["every_stage"]["model_bytes"] / out["exported"]["model_bytes"]
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--solutions", nargs="*", default=None, help="ids or positions (default: every admissible one)")
    add_out(p, RESULTS / "export_trim.json")
    a = p.parse_args(argv)
    from nachos_tf.results import load_run
    from tflite_export.from_run import run_dataset

    rows = []
    for run_dir in a.run_dirs:
        data = run_dataset(run_dir)
        sols = a.solutions if a.solutions else [s.id for s in load_run(run_dir).admissible]
        for s in sols:
            r = dict(run=str(run_dir), **measure(run_dir, s, data))
            say(f"{run_dir} {r['solution']}: {r['exported']['stages']} of {r['every_stage']['stages']} stages "
                f"exported, {r['exported']['model_bytes']:,} B instead of {r['every_stage']['model_bytes']:,} B; "
                f"same exit {r['same_exit_every_image']} on {r['exported']['n']} images, class differs on "
                f"{r['class_differs_at_last_stage']} of the {r['images_at_last_stage']} at the last stage")
            rows.append(r)
    doc = {"benchmark": "export_trim", "finished": utc_now(), "runs": [str(r) for r in a.run_dirs],
           "split": "test", "solutions": rows, "complete": True, **environment()}
    write_json(a.out, doc)
    say(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

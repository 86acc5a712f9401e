"""Float vs int8 PTQ vs int8 QAT of one admissible solution of a search run, on the test split.

Why: the search reports float figures; the device runs a staged int8 export. This measures what
quantisation costs, per exit and for the thresholded early-exit network, and whether a short
quantisation-aware fine-tuning (QAT) wins any of it back.

What it measures, for the solution's Keras model and two staged exports made by `export_solution`
(the code behind `nachos-tf export`), one with post-training quantisation (`qat_epochs=0`) and one
fine-tuned quantisation-aware for `--qat-epochs` epochs on the run's training split:

(a) **per-exit accuracy** (every exit on its own, argmax of its class output, no early exiting):
    float from the Keras model; PTQ and QAT from the staged int8 files themselves, run on the TFLM
    interpreter for every stage and every image (the bytes the device gets; equivalent to
    `compare_quantization`, whose one-file conversion would need a second QAT fine-tuning);
(b) **thresholded early exit**: float = the saved `.keras` model with the run's thresholds, simulated
    with `nachos_tf.policy.simulate` (what `pareto.json` reports); PTQ and QAT = the staged exports
    measured on TFLM by `tflite_export.from_run.evaluate_export` (the code behind `nachos-tf evaluate`):
    accuracy, exit rates, expected MACs; plus int8-minus-float gaps in points and the seconds taken.

Thresholds: all three rows use the run's thresholds from `pareto.json` (calibrated on the validation
split for the float model). Neither export re-calibrates them: `export_solution` passes the solution's
float thresholds to the exporter, which only converts them to the device's int8 / float32 form on each
file's output scale. QAT distils every confidence output from the float model's own confidences, so
the float thresholds keep their meaning after fine-tuning.

Run (from the repository root, on the `make demo` run; ~10 minutes on 2 shared cores):

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/quantization.py runs/demo --solution c0007 \
        --qat-epochs 1 --export-dir runs/demo/quant_exports --out benchmarks/results/quantization.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))         # benchmarks/_common (which puts the checkout on sys.path)

from _common import RESULTS, environment, open_interpreters, write_json  # noqa: E402

DEFAULT_OUT = RESULTS / "quantization.json"
THRESHOLD_NOTE = ("the run's thresholds from pareto.json (calibrated on the validation split for the float "
                  "model); not re-calibrated for int8, only converted to the device's int8 / float32 form")


# --------------------------------------------------------------------------- float

def float_figures(solution, x: np.ndarray, y: np.ndarray, model=None) -> Dict[str, Any]:
    """Per-exit accuracy and thresholded early-exit figures of the float Keras model (default: the
    solution's saved model) at the solution's thresholds."""
    from nachos_tf import naming
    from nachos_tf.policy import simulate
    from nachos_tf.train import predict_exits

    t0 = time.perf_counter()
    model = solution.model if model is None else model
    probs, confs = predict_exits(model, x)
    names = [e.name for e in naming.exit_layout(model)]
    per_exit = {n: float(np.mean(np.argmax(p, axis=1) == y)) for n, p in zip(names, probs)}
    sim = simulate(probs, y, solution.thresholds, solution.exit_macs, solution.rule,
                   confs if solution.rule == "confidence" else None)
    return {"per_exit_accuracy": per_exit, "accuracy": float(sim.accuracy),
            "exit_rates": [float(r) for r in sim.exit_rates], "exit_counts": [int(c) for c in sim.exit_counts],
            "expected_macs": float(sim.expected_macs), "n": int(len(y)),
            "thresholds": [float(t) for t in solution.thresholds], "threshold_source": THRESHOLD_NOTE,
            "engine": "Keras float32, nachos_tf.policy.simulate", "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- int8 (staged exports)

def staged_exit_accuracy(export_dir: Path, x: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    """Accuracy of every exit of a staged export on TFLM, all stages run for every image (no exiting)."""
    from tflite_export.int8 import quantize_input
    from tflite_export.tflm import load_export

    manifest, blobs = load_export(export_dir)
    stages = manifest["stages"]
    its = open_interpreters(blobs, manifest)
    shape = tuple(int(d) for d in manifest["input"]["shape"])
    xq = quantize_input(x, float(manifest["input"]["scale"]), int(manifest["input"]["zero_point"]))
    right = np.zeros(len(its), np.int64)
    t0 = time.perf_counter()
    for i in range(len(xq)):
        data = xq[i].reshape(shape)
        for k, it in enumerate(its):
            it.set_input(data, 0)
            it.invoke()
            probs = np.asarray(it.get_output(stages[k]["logits_output"])).reshape(-1)
            right[k] += int(np.argmax(probs) == y[i])
            if k < len(its) - 1:
                data = it.get_output(stages[k]["features_output"])
    names = manifest.get("exit_names") or [st["exit"] for st in stages]
    return {"per_exit_accuracy": {n: float(r) / len(xq) for n, r in zip(names, right)},
            "seconds": time.perf_counter() - t0}


def int8_figures(run_dir: Path, solution_id: str, out_dir: Path, qat_epochs: int, data, x: np.ndarray,
                 y: np.ndarray, limit: Optional[int]) -> Dict[str, Any]:
    """Export the solution (PTQ or QAT), then measure it on TFLM: per-exit and thresholded figures."""
    from tflite_export.from_run import evaluate_export, export_solution

    t0 = time.perf_counter()
    manifest = export_solution(run_dir, solution_id, out_dir, qat_epochs=qat_epochs, data=data)
    export_s = time.perf_counter() - t0
    ref = data_ref(run_dir)
    t1 = time.perf_counter()
    ev = evaluate_export(out_dir, ref["name"], data_path=ref.get("path"), split="test", limit=limit,
                         val_fraction=ref.get("val_fraction", 0.1), seed=ref.get("seed", 0))
    eval_s = time.perf_counter() - t1
    per_exit = staged_exit_accuracy(out_dir, x, y)
    early = manifest["stages"][:-1]
    return {"per_exit_accuracy": per_exit["per_exit_accuracy"], "accuracy": ev["accuracy"],
            "exit_rates": ev["exit_rates"], "exit_counts": ev["exit_counts"], "expected_macs": ev["expected_macs"],
            "n": ev["n"], "thresholds": [st["threshold"] for st in early],
            "thresholds_int8": [st["threshold_int8"] for st in early],
            "thresholds_f32": [st["threshold_f32"] for st in early], "threshold_source": THRESHOLD_NOTE,
            "engine": "TFLM staged (tflite_export.from_run.evaluate_export = nachos-tf evaluate)",
            "quantization": manifest["quantization"], "qat_epochs": manifest["qat_epochs"],
            "stage_bytes": [st["bytes"] for st in manifest["stages"]],
            "arena_bytes": [st["arena_bytes"] for st in manifest["stages"]],
            "cortex_m4": manifest.get("cortex_m4"), "ms_per_image": ev["ms_per_image"],
            "stage_invocations": ev["stage_invocations"], "export_dir": str(out_dir),
            "seconds": {"export": export_s, "evaluate_thresholded": eval_s,
                        "per_exit_all_stages": per_exit["seconds"]}}


def data_ref(run_dir: Path) -> Dict[str, Any]:
    """The dataset reference (name, path, val_fraction, seed) recorded in the run's config.json."""
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    info = cfg.get("data") or {}
    return info.get("ref") or {"name": info.get("name")}


# --------------------------------------------------------------------------- gaps and report

def gaps(row: Dict[str, Any], ref: Dict[str, Any]) -> Dict[str, Any]:
    """int8 minus float: accuracies and exit rates in percentage points, expected MACs in MACs and %."""
    return {
        "accuracy_points": 100.0 * (row["accuracy"] - ref["accuracy"]),
        "per_exit_accuracy_points": {k: 100.0 * (row["per_exit_accuracy"][k] - v)
                                     for k, v in ref["per_exit_accuracy"].items()},
        "exit_rate_points": [100.0 * (a - b) for a, b in zip(row["exit_rates"], ref["exit_rates"])],
        "expected_macs": row["expected_macs"] - ref["expected_macs"],
        "expected_macs_percent": 100.0 * (row["expected_macs"] / ref["expected_macs"] - 1.0),
    }


def markdown(rows: Dict[str, Dict[str, Any]], n: int) -> str:
    """The result as a small markdown table."""
    names = list(rows["float"]["per_exit_accuracy"])
    head = ["", "accuracy", "exit rates (" + " / ".join(names) + ")", "expected MACs",
            "per-exit accuracy (" + " / ".join(names) + ")", "gap vs float (points)"]
    lines = [f"Test split, first {n} images.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in rows.items():
        gap = "" if key == "float" else f"{r['gaps']['accuracy_points']:+.2f}"
        lines.append(f"| {r['label']} | {r['accuracy']:.4f} | " + " / ".join(f"{v:.4f}" for v in r["exit_rates"])
                     + f" | {r['expected_macs']:,.0f} | "
                     + " / ".join(f"{r['per_exit_accuracy'][k]:.4f}" for k in names) + f" | {gap} |")
    if "gaps_vs_float_finetuned" in rows.get("qat", {}):
        lines += ["", f"int8 QAT minus the float model fine-tuned the same way: "
                      f"{rows['qat']['gaps_vs_float_finetuned']['accuracy_points']:+.2f} points."]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="a finished search run folder (pareto.json, models/, config.json)")
    ap.add_argument("--solution", default="0", help="admissible solution id or position (default: the first)")
    ap.add_argument("--qat-epochs", type=int, default=1, help="QAT fine-tuning epochs; 0 skips the QAT row")
    ap.add_argument("--limit", type=int, default=None, help="first N test images (default: the whole split)")
    ap.add_argument("--export-dir", type=Path, default=None,
                    help="keep the exports in DIR/ptq and DIR/qat (default: a temporary folder, removed)")
    ap.add_argument("--data-path", default=None, help="dataset location if not the one in config.json")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.qat_epochs < 0:
        ap.error("--qat-epochs must be >= 0")
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be >= 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    from tflite_export.from_run import pick_solution, run_dataset

    args = parse_args(argv)
    t0 = time.perf_counter()
    sol = pick_solution(args.run_dir, args.solution)
    data = run_dataset(args.run_dir, args.data_path)
    x, y = data.x_test[:args.limit], np.asarray(data.y_test).reshape(-1)[:args.limit]
    report: Dict[str, Any] = {
        "benchmark": "quantization",
        "command": " ".join(["python benchmarks/quantization.py"] + list(sys.argv[1:] if argv is None else argv)),
        "run_dir": str(args.run_dir), "solution": sol.id, "rule": sol.rule, "exit_macs": sol.exit_macs,
        "thresholds": [float(t) for t in sol.thresholds], "threshold_note": THRESHOLD_NOTE,
        "qat_epochs": args.qat_epochs, "split": "test", "n": int(len(y)), "limit": args.limit,
        "pareto_json": {"val": sol.val, "test": sol.test}, **environment(),
    }
    tmp = None
    export_root = args.export_dir
    if export_root is None:
        tmp = tempfile.mkdtemp(prefix="nachos_quant_")
        export_root = Path(tmp)
    try:
        rows: Dict[str, Dict[str, Any]] = {"float": dict(float_figures(sol, x, y), label="float, Keras")}
        if args.limit is None:
            rows["float"]["equals_pareto_test"] = bool(
                abs(rows["float"]["accuracy"] - sol.test["accuracy"]) < 1e-12
                and abs(rows["float"]["expected_macs"] - sol.test["expected_macs"]) < 1e-6)
        print(f"float: accuracy {rows['float']['accuracy']:.4f}", flush=True)
        variants = [("ptq", 0, "int8 PTQ, TFLM staged")]
        if args.qat_epochs:
            variants.append(("qat", args.qat_epochs, f"int8 QAT ({args.qat_epochs} epoch), TFLM staged"))
        if args.qat_epochs:
            # the control: the same fine-tuning as QAT, without fake quantisation, so that the QAT row's
            # gain can be split into "more training" and "quantisation-aware"
            from tflite_export.quantize import float_finetune

            t1 = time.perf_counter()
            tuned = float_finetune(sol.model, data.x_train, data.y_train, epochs=args.qat_epochs)
            r = dict(float_figures(sol, x, y, model=tuned),
                     label=f"float, fine-tuned like QAT ({args.qat_epochs} epoch), Keras",
                     finetune_seconds=time.perf_counter() - t1)
            r["gaps"] = gaps(r, rows["float"])
            rows["float_finetuned"] = r
            print(f"float fine-tuned: accuracy {r['accuracy']:.4f} ({r['gaps']['accuracy_points']:+.2f} points)",
                  flush=True)
        for key, epochs, label in variants:
            r = int8_figures(args.run_dir, sol.id, export_root / key, epochs, data, x, y, args.limit)
            r["label"] = label
            r["gaps"] = gaps(r, rows["float"])
            if key == "qat" and "float_finetuned" in rows:
                r["gaps_vs_float_finetuned"] = gaps(r, rows["float_finetuned"])
            rows[key] = r
            print(f"{key}: accuracy {r['accuracy']:.4f} ({r['gaps']['accuracy_points']:+.2f} points), "
                  f"seconds {r['seconds']}", flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    report["rows"] = rows
    report["wall_seconds"] = time.perf_counter() - t0
    report["exports_kept"] = None if tmp else str(export_root)
    report["markdown"] = markdown(rows, len(y))
    write_json(args.out, report, indent=2)
    print(report["markdown"])
    print(f"wall {report['wall_seconds']:.0f} s; report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

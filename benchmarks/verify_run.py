"""Independent check of a search run folder (issue 4, "done means"): do the saved models give the figures?

For every admissible solution in ``pareto.json`` this script

1. loads ``models/<id>.keras`` with plain ``keras.models.load_model`` (nothing from ``nachos_tf`` is used to
   read or run the model) and takes the outputs by their names (``exit_k``, ``exit_k_conf``, ``final``);
2. computes the softmax itself and decides every sample's exit with the per-sample reference loop of
   ``tests/reference_sim.py`` (plain Python, written apart from ``nachos_tf.policy``) at the solution's
   thresholds and rule;
3. compares accuracy, exit rates and expected MACs (``exit_macs`` of ``pareto.json``, whose profiler is
   checked against the int8 flatbuffer in the tests) with what ``pareto.json`` reports, on the test split and
   on the validation split of the run's own dataset reference, and checks the validation figures against
   the run's constraints.

Exit status 0 when every figure agrees (accuracy and rates to 1e-9, expected MACs to 1e-6 relative, and
validation figures within the constraints), 1 otherwise, 2 when the run cannot be read. A JSON report goes
to ``--out`` when given.

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/verify_run.py runs/demo --out runs/demo/verify.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))            # run from a checkout without installing
sys.path.insert(0, str(HERE.parent / "tests"))  # the independent per-sample reference loop

from reference_sim import reference_simulate  # noqa: E402

import nachos_tf  # noqa: E402,F401  (only to import TensorFlow without its start-up lines; not used to evaluate)

ACC_TOL, MAC_RTOL = 1e-9, 1e-6


class VerifyError(Exception):
    """The run folder cannot be checked (missing or malformed file)."""


def _read(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"{path}: {exc}") from None


def exit_outputs(model, n_exits: int, x: np.ndarray, batch_size: int = 256):
    """Softmax probabilities of every exit (final last) and the early exits' confidences (or None),
    taken from the model's outputs by name."""
    names = list(model.output_names)
    raw = model.predict(x, batch_size=batch_size, verbose=0)
    raw = raw if isinstance(raw, (list, tuple)) else [raw]
    by_name = dict(zip(names, raw))
    logits = [by_name[f"exit_{k}"] for k in range(n_exits - 1)] + [by_name["final"]]
    probs = []
    for z in logits:
        z = np.asarray(z, np.float32)                  # the model's own precision
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append((e / e.sum(axis=1, keepdims=True)).tolist())
    if all(f"exit_{k}_conf" in by_name for k in range(n_exits - 1)) and n_exits > 1:
        confs = [np.asarray(by_name[f"exit_{k}_conf"], np.float32).reshape(-1).tolist() for k in range(n_exits - 1)]
    else:
        confs = None
    return probs, confs


def _compare(reported: Dict[str, Any], mine: Dict[str, Any]) -> List[str]:
    bad = []
    if abs(reported["accuracy"] - mine["accuracy"]) > ACC_TOL:
        bad.append(f"accuracy {reported['accuracy']} != {mine['accuracy']}")
    if len(reported["exit_rates"]) != len(mine["exit_rates"]) or any(
            abs(a - b) > ACC_TOL for a, b in zip(reported["exit_rates"], mine["exit_rates"])):
        bad.append(f"exit rates {reported['exit_rates']} != {mine['exit_rates']}")
    if abs(reported["expected_macs"] - mine["expected_macs"]) > MAC_RTOL * max(1.0, abs(mine["expected_macs"])):
        bad.append(f"expected MACs {reported['expected_macs']} != {mine['expected_macs']}")
    return bad


def verify(run_dir, data=None) -> Dict[str, Any]:
    """Check every admissible solution of `run_dir`; `data`: the run's dataset (default: its config's ref)."""
    import keras

    run = Path(run_dir)
    pareto = _read(run / "pareto.json")
    config = _read(run / "config.json")
    if data is None:
        ref = (config.get("data") or {}).get("ref")
        if ref is None:
            raise VerifyError(f"{run} was searched on an in-memory dataset: pass it to verify(run, data)")
        from nachos_tf.data import load

        data = load(ref["name"], ref.get("path"), ref.get("val_fraction", 0.1), ref.get("seed", 0))
    cons = pareto.get("constraints") or config.get("constraints") or {}
    report: Dict[str, Any] = {"run": str(run), "constraints": cons, "solutions": [], "ok": True}
    for sol in pareto.get("solutions", []):
        path = run / sol["model"]
        if not path.is_file():
            raise VerifyError(f"model file {path} of solution {sol['id']} is missing")
        model = keras.models.load_model(path, compile=False)
        thresholds = [float(t) for t in sol["thresholds"]]
        n_exits = len(sol["exit_macs"])
        entry: Dict[str, Any] = {"id": sol["id"], "rule": sol["rule"], "problems": []}
        for split, x, y in (("test", data.x_test, data.y_test), ("val", data.x_val, data.y_val)):
            probs, confs = exit_outputs(model, n_exits, x)
            mine = reference_simulate(probs, [int(v) for v in y], thresholds, sol["exit_macs"], sol["rule"], confs)
            mine = {k: mine[k] for k in ("accuracy", "exit_rates", "expected_macs")}
            entry[split] = {"independent": mine, "reported": {k: sol[split][k] for k in mine}, "n": len(y)}
            entry["problems"] += [f"{split}: {p}" for p in _compare(sol[split], mine)]
        v = entry["val"]["independent"]
        if cons.get("min_accuracy") is not None and v["accuracy"] < cons["min_accuracy"]:
            entry["problems"].append(f"val accuracy {v['accuracy']:.4f} below min_accuracy {cons['min_accuracy']}")
        if cons.get("max_macs") is not None and v["expected_macs"] > cons["max_macs"]:
            entry["problems"].append(f"val expected MACs {v['expected_macs']:.0f} above max_macs {cons['max_macs']:.0f}")
        report["ok"] = report["ok"] and not entry["problems"]
        report["solutions"].append(entry)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="write the JSON report here")
    a = p.parse_args(argv)
    try:
        rep = verify(a.run_dir)
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for s in rep["solutions"]:
        t, v = s["test"]["independent"], s["val"]["independent"]
        print(f"{s['id']}: test acc {t['accuracy']:.4f}, E[MACs] {t['expected_macs']:,.0f} "
              f"(n={s['test']['n']}); val acc {v['accuracy']:.4f}, E[MACs] {v['expected_macs']:,.0f} -> "
              + ("agrees with pareto.json" if not s["problems"] else "; ".join(s["problems"])))
    if not rep["solutions"]:
        print("no admissible solutions in pareto.json")
    if a.out:
        Path(a.out).write_text(json.dumps(rep, indent=1))
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

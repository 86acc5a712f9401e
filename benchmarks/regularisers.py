"""Benchmark: the NACHOS regularisers on Fashion-MNIST (issue 3, item 5).

One fixed 3-exit EENN genome from the ``mcu`` space (two early exits + final, with learned
confidences) is trained with four head-phase losses, each with several seeds:

* ``ce_sum``    -- the SDN/BranchyNet baseline (sum of per-exit cross-entropies);
* ``nachos``    -- full NACHOS loss (MAC-budget term + support-set calibration);
* ``nachos_np`` -- NACHOS without the support-set calibration term;
* ``nachos_nc`` -- NACHOS without the MAC term (no constraints).

For every (seed, variant) the thresholds are calibrated on the validation split with
``nachos_tf.policy.calibrate(method="pareto")`` under an expected-MAC budget M_max = 60 % of the full
network's (staged) MACs, and the result is reported on the test split: accuracy, expected MACs and
exit rates, mean and sample std over seeds.

Two exit rules are reported: the "primary" rule (``confidence`` -- the learned NACHOS confidence --
for the NACHOS variants; ``max_softmax`` for ``ce_sum``, whose confidence branch is never trained),
and ``max_softmax`` for every variant (like-for-like). The NACHOS variants are also simulated at one
fixed, equal threshold (``confidence`` rule, D_k >= 0.5) to show what the MAC term does to the
learned confidences without any calibration.

Schedule (NACHOS): for each seed the backbone phase (backbone + final classifier, heads frozen) runs
once on a seeded, class-balanced training subset; every variant then starts from those same weights
(including the same untrained head initialisation) and runs the exit-head phase with its own loss,
backbone not frozen. Sharing the backbone phase is equivalent to training each variant from scratch
with the same seed (the backbone phase does not depend on the head loss) and saves 3/4 of its cost.

Run (defaults take ~20-25 min on 2 shared CPU cores):

    python benchmarks/regularisers.py                       # writes benchmarks/results/regularisers.json
    python benchmarks/regularisers.py --seeds 0 --epochs 1 --head-epochs 1 --train-limit 2000   # smoke test
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))         # benchmarks/_common (which puts the checkout on sys.path)

from _common import RESULTS, machine, versions, write_json  # noqa: E402

from nachos_tf import (ExitGene, Genome, LossConfig, SearchSpace, build_eenn, calibrate,  # noqa: E402
                       predict_exits, profile_macs, simulate, train_eenn)
from nachos_tf import data as nt_data  # noqa: E402

import keras  # noqa: E402  (after nachos_tf, which imports TensorFlow without its start-up lines)

VARIANTS = ("ce_sum", "nachos", "nachos_np", "nachos_nc")
BUDGET_FRACTION = 0.60
FIXED_THRESHOLD = 0.5


def the_genome(space: SearchSpace) -> Genome:
    """The fixed genome: a small MobileNetV3-style backbone (~51k parameters, ~0.93 M MACs) with early
    exits after stage 1 (7x7x12 features, ~15 % of the MACs) and stage 3 (4x4x24, ~48 %), each a
    1x1-conv(32) + GAP + dense head with a learned confidence."""
    widths = (12, 16, 24, 32, 40)
    bb = {"resolution": 28, "stem_width": 8}
    for s in range(5):
        bb.update({f"s{s + 1}_depth": 2, f"s{s + 1}_kernel": 3, f"s{s + 1}_expand": 3,
                   f"s{s + 1}_width": widths[s], f"s{s + 1}_se": False,
                   f"s{s + 1}_act": "relu" if s < 2 else "hard_swish"})
    exits = [ExitGene(True, "conv_gap_dense", 32, 2), ExitGene(),
             ExitGene(True, "conv_gap_dense", 32, 1), ExitGene()]
    g = Genome.make(bb, exits)
    space.validate(g)  # canonical member of the space: no repair needed
    return g


def loss_for(variant: str, budget: float, warmup: int) -> LossConfig:
    if variant == "ce_sum":
        return LossConfig.ce_sum()
    if variant == "nachos":
        return LossConfig.nachos(budget, calibration_warmup=warmup)
    if variant == "nachos_np":
        return LossConfig.nachos_np(budget)
    if variant == "nachos_nc":
        return LossConfig.nachos_nc(calibration_warmup=warmup)
    raise ValueError(variant)


def evaluate(model, data, exit_macs, budget: float, rules: List[str], fixed: bool) -> Dict:
    """Calibrate on validation, report on test, for each rule; plus per-exit accuracies."""
    pv, cv = predict_exits(model, data.x_val)
    pt, ct = predict_exits(model, data.x_test)
    out: Dict = {"exit_accuracy_test": [float(np.mean(p.argmax(1) == data.y_test)) for p in pt],
                 "exit_accuracy_val": [float(np.mean(p.argmax(1) == data.y_val)) for p in pv],
                 "rules": {}}
    for rule in rules:
        conf_v = cv if rule == "confidence" else None
        conf_t = ct if rule == "confidence" else None
        r: Dict = {}
        for method in ("pareto", "grid"):
            cal = calibrate(pv, data.y_val, exit_macs, rule=rule, confidences=conf_v, max_macs=budget,
                            method=method)
            test = cal.evaluate(pt, data.y_test, conf_t)
            r[method] = {"thresholds": cal.to_dict(with_curve=False)["thresholds"],
                         "admissible_val": bool(cal.admissible), "val": cal.result.to_dict(),
                         "test": test.to_dict(), "admissible_test": bool(test.expected_macs <= budget)}
        out["rules"][rule] = r
    if fixed:
        t = [FIXED_THRESHOLD] * (len(pt) - 1)
        out["fixed_confidence_0.5_test"] = simulate(pt, data.y_test, t, exit_macs, "confidence", ct).to_dict()
        out["mean_confidence_test"] = [float(np.mean(c)) for c in ct]
    return out


def stats(values) -> Dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "values": [float(v) for v in a]}


def summarise(runs: List[Dict], full_macs: float, budget: float) -> List[Dict]:
    rows = []
    for variant in VARIANTS:
        vr = [r for r in runs if r["variant"] == variant]
        if not vr:
            continue
        primary = "max_softmax" if variant == "ce_sum" else "confidence"
        for rule in dict.fromkeys([primary, "max_softmax"]):
            tests = [r["eval"]["rules"][rule]["pareto"]["test"] for r in vr]
            rows.append({
                "variant": variant, "rule": rule, "primary": rule == primary, "seeds": [r["seed"] for r in vr],
                "accuracy": stats([t["accuracy"] for t in tests]),
                "expected_macs": stats([t["expected_macs"] for t in tests]),
                "macs_fraction": stats([t["expected_macs"] / full_macs for t in tests]),
                "exit_rates": [stats([t["exit_rates"][k] for t in tests]) for k in range(len(tests[0]["exit_rates"]))],
                "admissible_test": sum(r["eval"]["rules"][rule]["pareto"]["admissible_test"] for r in vr),
                "grid_accuracy": stats([r["eval"]["rules"][rule]["grid"]["test"]["accuracy"] for r in vr]),
                "grid_expected_macs": stats([r["eval"]["rules"][rule]["grid"]["test"]["expected_macs"] for r in vr]),
                "final_exit_accuracy": stats([r["eval"]["exit_accuracy_test"][-1] for r in vr]),
            })
        if variant != "ce_sum":
            fx = [r["eval"]["fixed_confidence_0.5_test"] for r in vr]
            rows.append({
                "variant": variant, "rule": f"confidence, fixed D_k >= {FIXED_THRESHOLD}", "primary": False,
                "seeds": [r["seed"] for r in vr],
                "accuracy": stats([t["accuracy"] for t in fx]),
                "expected_macs": stats([t["expected_macs"] for t in fx]),
                "macs_fraction": stats([t["expected_macs"] / full_macs for t in fx]),
                "exit_rates": [stats([t["exit_rates"][k] for t in fx]) for k in range(len(fx[0]["exit_rates"]))],
                "admissible_test": sum(t["expected_macs"] <= budget for t in fx),
                "final_exit_accuracy": stats([r["eval"]["exit_accuracy_test"][-1] for r in vr]),
            })
    return rows


def markdown(rows: List[Dict], n_seeds: int) -> str:
    def pm(s, scale=1.0, fmt="{:.2f}"):
        return f"{fmt.format(s['mean'] * scale)} ± {fmt.format(s['std'] * scale)}"

    lines = ["| Head-phase loss | Exit rule (thresholds) | Test accuracy (%) | Expected MACs (k) | % of full "
             "| Exit rates e0 / e1 / final (%) | Within M_max on test | Final exit alone (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rule = r["rule"] if "fixed" in r["rule"] else f"{r['rule']} (calibrated)"
        rates = " / ".join(f"{e['mean'] * 100:.1f}" for e in r["exit_rates"])
        lines.append(f"| {r['variant']} | {rule} | {pm(r['accuracy'], 100)} | "
                     f"{pm(r['expected_macs'], 1e-3, '{:.1f}')} | {pm(r['macs_fraction'], 100, '{:.1f}')} | "
                     f"{rates} | {r['admissible_test']}/{n_seeds} | {pm(r['final_exit_accuracy'], 100)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    ap.add_argument("--epochs", type=int, default=4, help="backbone-phase epochs (default 4)")
    ap.add_argument("--head-epochs", type=int, default=3, help="exit-head-phase epochs (default 3)")
    ap.add_argument("--train-limit", type=int, default=12000,
                    help="class-balanced training subset per seed (default 12000; 0 = all 54000)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate, both phases")
    ap.add_argument("--warmup", type=int, default=1, help="head epochs before the calibration term starts")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--out", default=str(RESULTS / "regularisers.json"))
    ap.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (0, 1, 2)")
    args = ap.parse_args(argv)

    t_start = time.time()
    data = nt_data.load("fashion_mnist")
    space = SearchSpace.mcu(data.input_shape, data.num_classes)
    genome = the_genome(space)
    probe = build_eenn(space, genome)
    report = profile_macs(probe)
    exit_macs = [float(m) for m in report.exit_macs]
    full_macs = exit_macs[-1]
    budget = BUDGET_FRACTION * full_macs
    n_params = int(probe.count_params())
    del probe
    print(f"genome: {genome.key()}")
    print(f"parameters: {n_params}; staged exit MACs: {[int(m) for m in exit_macs]} "
          f"({', '.join(f'{m / full_macs:.1%}' for m in exit_macs)} of full)")
    print(f"full network MACs: {full_macs:.0f}; M_max = {BUDGET_FRACTION:.0%} of full = {budget:.0f}")

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result: Dict = {
        "benchmark": "regularisers",
        "command": " ".join(["python benchmarks/regularisers.py"] + list(sys.argv[1:] if argv is None else argv)),
        "settings": {"seeds": args.seeds, "epochs": args.epochs, "head_epochs": args.head_epochs,
                     "train_limit": args.train_limit, "batch_size": args.batch_size, "lr": args.lr,
                     "calibration_warmup": args.warmup, "freeze_backbone": False, "backbone_loss": "final",
                     "variants": args.variants, "budget_fraction": BUDGET_FRACTION,
                     "calibration": "policy.calibrate(method='pareto') on the validation split; "
                                    "also method='grid' (NACHOS grid + repair) for reference",
                     "std": "sample standard deviation over seeds (ddof=1)"},
        "dataset": {"name": data.name, "source": data.source, "train_available": int(len(data.y_train)),
                    "val": int(len(data.y_val)), "test": int(len(data.y_test))},
        "genome": genome.to_dict(), "parameters": n_params, "exit_macs": exit_macs,
        "full_macs": full_macs, "max_macs": budget,
        "machine": machine(), "versions": versions(),
        "runs": [], "rows": [], "wall_seconds": None, "finished": False,
    }
    def save():
        write_json(out_path, result)

    for seed in args.seeds:
        limit = None if args.train_limit in (0, None) else args.train_limit
        train = data.subset(train=limit, seed=seed) if limit else data
        # training data without the validation split: no per-epoch validation pass (time); the
        # validation split is used once, for threshold calibration
        fit_data = dataclasses.replace(train, x_val=train.x_val[:0], y_val=train.y_val[:0])
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model = build_eenn(space, genome)
        t0 = time.time()
        hb = train_eenn(model, fit_data, epochs=args.epochs, head_epochs=0, batch_size=args.batch_size,
                        learning_rate=args.lr, exit_macs=exit_macs, seed=seed, verbose=args.verbose)
        start_weights = [w.copy() for w in model.get_weights()]
        backbone_s = time.time() - t0
        print(f"[seed {seed}] backbone phase: {backbone_s:.0f} s, final train acc "
              f"{hb.last('final_acc', 'backbone'):.4f}", flush=True)
        for variant in args.variants:
            keras.backend.clear_session()
            model = build_eenn(space, genome)
            model.set_weights(start_weights)
            t1 = time.time()
            hh = train_eenn(model, fit_data, loss=loss_for(variant, budget, args.warmup), epochs=0,
                            head_epochs=args.head_epochs, batch_size=args.batch_size, learning_rate=args.lr,
                            exit_macs=exit_macs, seed=1000 + seed, verbose=args.verbose)
            train_s = time.time() - t1
            ev = evaluate(model, data, exit_macs, budget,
                          ["max_softmax"] if variant == "ce_sum" else ["confidence", "max_softmax"],
                          fixed=variant != "ce_sum")
            result["runs"].append({"seed": seed, "variant": variant, "backbone_seconds": backbone_s,
                                   "head_seconds": train_s, "backbone_history": hb.to_dict()["phases"],
                                   "head_history": hh.to_dict()["phases"],
                                   "support_accuracy": hh.support_accuracy, "eval": ev})
            p = ev["rules"]["max_softmax" if variant == "ce_sum" else "confidence"]["pareto"]["test"]
            print(f"[seed {seed}] {variant}: head phase {train_s:.0f} s; test acc {p['accuracy']:.4f}, "
                  f"E[MACs] {p['expected_macs']:.0f} ({p['expected_macs'] / full_macs:.1%}), rates "
                  f"{[round(x, 3) for x in p['exit_rates']]}; per-exit acc "
                  f"{[round(x, 4) for x in ev['exit_accuracy_test']]}", flush=True)
            result["wall_seconds"] = time.time() - t_start
            save()

    result["rows"] = summarise(result["runs"], full_macs, budget)
    result["wall_seconds"] = time.time() - t_start
    result["finished"] = True
    table = markdown(result["rows"], len(args.seeds))
    result["markdown"] = table
    save()
    print()
    print(f"Fashion-MNIST, genome with exits at {[int(m) for m in exit_macs]} MACs; full network "
          f"{full_macs / 1e3:.1f} k MACs, M_max = {BUDGET_FRACTION:.0%} = {budget / 1e3:.1f} k MACs; "
          f"mean ± std over seeds {args.seeds}")
    print(table)
    print(f"\nwall time {result['wall_seconds']:.0f} s; JSON: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

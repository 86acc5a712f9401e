"""Benchmark: nachos-tf search against the alternatives, side by side in one run (issue 6).

Methods, each with the same Fashion-MNIST splits, the same constraints, the same wall-clock search budget
(`--budget` seconds; the search stops at the end of the generation running at the deadline, then the
admissible front is re-trained the same way for every method) and the same seeds:

* ``nachos``        nachos-tf: joint backbone + exit NAS (NSGA-II), NACHOS loss, our calibration;
* ``static``        the same search on the same backbone space with exits switched off (one exit);
* ``random``        random search (pymoo RandomSearch) over the same EENN space, same evaluator;
* ``handmade``      a fixed MobileNet-style EENN from the same space (depth 2, kernel 3, expansion 4 in
                    every stage; exits after stages 2 and 4), trained with the plain CE sum for the final
                    training budget, max-softmax thresholds calibrated on validation;
* ``paper_choices`` our search with the NACHOS paper's choices where ours differ: per-exit costs that
                    ignore earlier heads, the MAC term without gradient, grid + repair calibration
                    (training and threshold choice use the paper's belief; figures use what the device
                    pays).

Per method and seed: hypervolume of the admissible solutions' (test error, test expected MACs) with the
fixed reference point (error 1.0, MACs of the full network of the largest genome), normalised to [0, 1];
best test accuracy with expected MACs <= 0.5M and <= 1.0M (thresholds of each solution re-chosen on
validation for that budget with the method's own calibration; the test figure is reported); expected-MAC
saving at equal accuracy versus the best static network of the same seed (cheapest validation-calibrated
operating point whose test accuracy reaches the static network's); int8 TFLM test accuracy of the most
accurate solution; candidates evaluated; wall time. Writes ``--out`` (JSON, rewritten after every run, so
``--resume`` continues), a Markdown table and a plot (accuracy vs expected MACs, all fronts).

Run (the published table; see the README for the machine and the exact numbers):

    python benchmarks/compare.py                          # default: 30 min search per method and seed
    # or one process per seed (each runs every method, so its savings against static stay in-process),
    # then join the parts:
    python benchmarks/compare.py --budget 400 --seeds 0 --threads 1 --out runs/bench/compare_seed0.json  # & 1, 2
    python benchmarks/compare.py --merge runs/bench/compare_seed{0,1,2}.json --out benchmarks/results/compare.json
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
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nachos_tf as nt  # noqa: E402
from nachos_tf.errors import NoAdmissibleSolutionError  # noqa: E402
from nachos_tf.losses import LossConfig  # noqa: E402
from nachos_tf.space import ExitGene, Genome, SearchSpace  # noqa: E402
from nachos_tf.units import parse_size  # noqa: E402
from search_speed import loadavg, machine, versions  # noqa: E402

S = importlib.import_module("nachos_tf.search")
METHODS = ("nachos", "static", "random", "handmade", "paper_choices")
METRICS = ("hypervolume", "best_acc_at_0.5M", "best_acc_at_1.0M", "mac_saving_vs_static", "int8_best_acc",
           "candidates", "wall_s")


# --------------------------------------------------------------------------------------------------
# the paper's choices, as an evaluator / finalizer pair of the search (top level: picklable)
# --------------------------------------------------------------------------------------------------

def paper_evaluate(genome, space, data, constraints, budget, seed, loss=None):
    """`evaluate_candidate` with the paper's per-exit costs and grid + repair calibration."""
    return S.evaluate_candidate(genome, space, data, constraints, budget, seed, loss,
                                calibration="grid", cost_model="paper")


def paper_finalize(rec, space, data, constraints, budget, seed, loss, out_dir):
    """`finalize_candidate` with the same choices; reported figures use the staged (true) costs."""
    return S.finalize_candidate(rec, space, data, constraints, budget, seed, loss, out_dir,
                                calibration="grid", cost_model="paper")


def paper_loss(constraints) -> LossConfig:
    """The NACHOS loss as the authors' code computes it: the MAC term carries no gradient."""
    return LossConfig.nachos(mac_budget=constraints.max_macs, mac_term_detached=True)


# --------------------------------------------------------------------------------------------------
# fixed networks
# --------------------------------------------------------------------------------------------------

def handmade_genome(space: SearchSpace) -> Genome:
    """MobileNet-style: every stage depth 2, kernel 3, expansion 4, middle width, ReLU, no SE, full
    resolution, stem 16; exits (gap + dense, width 16) after stages 2 and 4."""
    genes = {g.name: g.values for g in space.backbone_genes}
    bb: Dict[str, Any] = {"resolution": max(genes["resolution"]), "stem_width": 16}
    for s in range(1, 6):
        bb.update({f"s{s}_depth": 2, f"s{s}_kernel": 3, f"s{s}_expand": 4,
                   f"s{s}_width": genes[f"s{s}_width"][1], f"s{s}_se": False, f"s{s}_act": "relu"})
    exits = [ExitGene(enabled=i in (1, 3), head="gap_dense", width=16, pool=1) for i in range(space.n_exit_points)]
    return space.repair(Genome.make(bb, exits))


def largest_genome(space: SearchSpace) -> Genome:
    """Every backbone gene at its largest choice, every exit on with its largest head."""
    bb = {g.name: max(g.values) if not isinstance(g.values[0], str) else g.values[-1] for g in space.backbone_genes}
    exits = [ExitGene(True, "conv_gap_dense", 32, 1) for _ in range(space.n_exit_points)]
    return space.repair(Genome.make(bb, exits))


def reference_macs(space: SearchSpace) -> float:
    from nachos_tf.builder import build_eenn
    from nachos_tf.macs import profile_macs

    return float(profile_macs(build_eenn(space, largest_genome(space))).exit_macs[-1])


# --------------------------------------------------------------------------------------------------
# figures of one method and seed
# --------------------------------------------------------------------------------------------------

class Outputs:
    """Validation and test outputs of one trained EENN (computed once, reused by every figure)."""

    def __init__(self, model, exit_macs: Sequence[float], rule: str, data, calibration: str, thresholds):
        from nachos_tf.train import predict_exits

        self.exit_macs, self.rule, self.calibration = [float(m) for m in exit_macs], rule, calibration
        self.thresholds = list(thresholds)
        self.val = predict_exits(model, data.x_val)
        self.test = predict_exits(model, data.x_test)
        self.y_val, self.y_test = data.y_val, data.y_test

    def _conf(self, out):
        return out[1] if self.rule == "confidence" else None

    def simulate(self, thresholds, split: str):
        from nachos_tf.policy import simulate

        probs, y = (self.val, self.y_val) if split == "val" else (self.test, self.y_test)
        return simulate(probs[0], y, thresholds, self.exit_macs, self.rule, self._conf(probs))

    def calibrate(self, max_macs: Optional[float], min_accuracy: Optional[float], prefer: str = "accuracy",
                  split: str = "val"):
        from nachos_tf.policy import calibrate

        probs, y = (self.val, self.y_val) if split == "val" else (self.test, self.y_test)
        kw = {"prefer": prefer} if self.calibration == "pareto" else {}
        return calibrate(probs[0], y, self.exit_macs, rule=self.rule, confidences=self._conf(probs),
                         max_macs=max_macs, min_accuracy=min_accuracy, method=self.calibration, **kw)


def best_at(outs: Sequence[Outputs], budget_macs: float) -> Optional[float]:
    """Best test accuracy among solutions whose thresholds, chosen on validation for this budget, keep
    validation expected MACs within it (None: no solution can)."""
    best = None
    for o in outs:
        if len(o.exit_macs) == 1:
            if o.exit_macs[0] > budget_macs:
                continue
            acc = float(o.simulate([], "test").accuracy)
        else:
            cal = o.calibrate(budget_macs, None)
            if cal.result.expected_macs > budget_macs:
                continue
            acc = float(o.simulate(cal.thresholds, "test").accuracy)
        best = acc if best is None else max(best, acc)
    return best


def cheapest_at(outs: Sequence[Outputs], accuracy: float) -> Optional[float]:
    """Lowest test expected MACs of an operating point whose test accuracy reaches `accuracy`; operating
    points are the solutions' validation trade-off curves (our calibration) or their own thresholds."""
    best = None
    for o in outs:
        points = [o.thresholds]
        if len(o.exit_macs) > 1:
            curve = o.calibrate(None, None).curve
            if curve is not None:
                points += [list(t) for t in curve.thresholds]
        for t in points:
            r = o.simulate(t, "test")
            if r.accuracy >= accuracy - 1e-12:
                best = float(r.expected_macs) if best is None else min(best, float(r.expected_macs))
    return best


def hypervolume(points: Sequence[Sequence[float]], ref_macs: float) -> float:
    """pymoo HV of (error, expected MACs / ref_macs) points, reference (1, 1)."""
    from pymoo.indicators.hv import HV

    if not points:
        return 0.0
    F = np.array([[e, m / ref_macs] for e, m in points], dtype=float)
    return float(HV(ref_point=np.array([1.0, 1.0]))(F))


# --------------------------------------------------------------------------------------------------
# running the methods
# --------------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.out = Path(args.out)
        self.runs = Path(args.runs_dir)
        self.constraints = S.Constraints(min_accuracy=args.min_accuracy, max_macs=parse_size(args.max_macs))
        quick = S.Budget.preset("quick")
        self.budget = replace(quick, name="compare", population=args.population, generations=100000,
                              proxy_train=args.proxy_train, proxy_val=args.proxy_val, head_epochs=args.head_epochs,
                              final_train=args.final_train, final_epochs=0, final_head_epochs=args.final_epochs,
                              max_final=args.max_final)
        self.doc: Dict[str, Any] = {}

    def say(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.doc["last_saved"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1))
        os.replace(tmp, self.out)

    def search_method(self, method: str, seed: int):
        """One search run; returns (solutions as Outputs, records for the JSON, candidates, int8 acc)."""
        space = self.space_static if method == "static" else self.space
        kw: Dict[str, Any] = {}
        if method == "random":
            kw["algorithm"] = "random"
        if method == "paper_choices":
            kw.update(evaluator=paper_evaluate, finalizer=paper_finalize, loss=paper_loss(self.constraints))
        out_dir = self.runs / method / f"seed{seed}"
        if out_dir.exists():
            import shutil

            shutil.rmtree(out_dir)
        try:
            res = S.search(space, self.data, self.constraints, budget=self.budget, seed=seed, out_dir=out_dir,
                           max_seconds=self.a.budget, threads=self.a.threads, progress=self.say, **kw)
            sols = res.admissible
            archive = res.archive
        except NoAdmissibleSolutionError as exc:
            self.say(f"{method} seed {seed}: no admissible solution ({str(exc).splitlines()[0]})")
            sols = []
            from nachos_tf import results as R

            archive = [r for r in R.Archive(out_dir / R.ARCHIVE).read()[0] if r.get("stage") == R.STAGE_SEARCH]
        calibration = "grid" if method == "paper_choices" else "pareto"
        outs = [Outputs(s.model, s.exit_macs, s.rule, self.data, calibration, s.thresholds) for s in sols]
        best = max(sols, key=lambda s: s.test["accuracy"]) if sols else None
        int8 = best.int8["accuracy"] if best is not None and best.int8 else None
        recs = [{"id": s.id, "test": s.test, "val": s.val, "int8": s.int8, "exit_macs": s.exit_macs}
                for s in sols]
        trained = sum(1 for r in archive if not r.get("pruned"))
        return outs, recs, trained, int8

    def handmade(self, seed: int):
        from nachos_tf.builder import build_eenn
        from nachos_tf.macs import profile_macs

        genome = handmade_genome(self.space)
        cseed = S.candidate_seed(seed, genome)
        train = (self.data.subset(train=self.budget.final_train, val=0, test=0, seed=seed)
                 if self.budget.final_train is not None else self.data)
        model, exit_macs = S.build_candidate(self.space, genome, cseed)
        S.train_built(model, exit_macs, train, LossConfig.ce_sum(), cseed, self.budget.final_epochs,
                      self.budget.final_head_epochs, self.budget.batch_size, self.budget.learning_rate)
        rule = "max_softmax"            # the CE sum trains no confidence branch
        cal = S.calibrate_model(model, exit_macs, self.data.x_val, self.data.y_val, rule, self.constraints)
        o = Outputs(model, exit_macs, rule, self.data, "pareto", cal.thresholds)
        test = o.simulate(cal.thresholds, "test")
        rec = {"id": "handmade", "genome": genome.to_dict(), "exit_macs": o.exit_macs,
               "val": S.figures(cal.result), "test": S.figures(test), "admissible": bool(cal.admissible)}
        int8 = None
        if cal.admissible:
            rec["int8"] = S.int8_figures(model, self.data, cal.thresholds, exit_macs, rule)
            int8 = rec["int8"]["accuracy"]
        assert profile_macs(model).exit_macs == [int(m) for m in exit_macs]
        return ([o] if cal.admissible else []), [rec] if cal.admissible else [], 1, int8, rec

    def run_one(self, method: str, seed: int) -> Dict[str, Any]:
        t0 = time.time()
        load0 = loadavg()
        extra = None
        if method == "handmade":
            outs, recs, cands, int8, extra = self.handmade(seed)
        else:
            outs, recs, cands, int8 = self.search_method(method, seed)
        wall = time.time() - t0
        points = [(1.0 - r["test"]["accuracy"], r["test"]["expected_macs"]) for r in recs]
        row = {"method": method, "seed": seed, "solutions": recs, "candidates": cands, "wall_s": round(wall, 1),
               "hypervolume": hypervolume(points, self.ref_macs), "int8_best_acc": int8,
               "best_acc_at_0.5M": best_at(outs, 0.5e6), "best_acc_at_1.0M": best_at(outs, 1.0e6),
               "load_before": load0, "load_after": loadavg(), "_outs": outs}
        if extra is not None and not recs:
            row["handmade_not_admissible"] = extra
        return row

    def main(self) -> None:
        a = self.a
        if a.threads:
            S.pin_threads(a.threads)
        self.data = nt.data.load("fashion_mnist")
        self.space = SearchSpace.mcu((28, 28, 1), 10)
        self.space_static = SearchSpace.mcu((28, 28, 1), 10, early_exits=False)
        self.ref_macs = reference_macs(self.space)
        prev = json.loads(self.out.read_text()) if a.resume and self.out.exists() else None
        self.doc = {"benchmark": "compare", "issue": 6, "machine": dict(machine(), load_avg_start=loadavg()),
                    "versions": versions(), "budget_s": a.budget, "seeds": list(a.seeds),
                    "command": "python benchmarks/compare.py " + " ".join(sys.argv[1:]),
                    "settings": {"constraints": self.constraints.to_dict(), "budget": self.budget.to_dict(),
                                 "threads": a.threads, "reference_point": {"error": 1.0, "macs": self.ref_macs},
                                 "handmade_genome": handmade_genome(self.space).to_dict()},
                    "runs": [], "methods": {}}
        if prev is not None:
            if prev.get("settings") != json.loads(json.dumps(self.doc["settings"])) or prev.get("budget_s") != a.budget:
                raise SystemExit(f"--resume: {self.out} was written with other settings")
            self.doc["runs"] = prev.get("runs", [])
        done = {(r["method"], r["seed"]) for r in self.doc["runs"]}
        outs: Dict[tuple, List[Outputs]] = {}
        # seeds outermost: every seed's row of the table is complete before the next seed starts
        for seed in a.seeds:
            for method in a.methods:
                if (method, seed) in done:
                    continue
                self.say(f"--- {method}, seed {seed} ---")
                row = self.run_one(method, seed)
                outs[(method, seed)] = row.pop("_outs")
                self.doc["runs"].append(row)
                self.fill_savings(outs)
                self.summarise()
                self.save()
                self.say(f"{method} seed {seed}: {len(row['solutions'])} admissible, HV {row['hypervolume']:.4f}, "
                         f"best@1.0M {row['best_acc_at_1.0M']}, int8 {row['int8_best_acc']}, "
                         f"{row['candidates']} candidates, {row['wall_s']:.0f} s")
        self.fill_savings(outs)
        self.summarise()
        self.doc["complete"] = all((m, s) in {(r["method"], r["seed"]) for r in self.doc["runs"]}
                                   for m in METHODS for s in a.seeds)
        self.save()
        write_table(self.doc, self.out.with_suffix(".md"))
        plot(self.doc, self.out.with_suffix(".png"), self.constraints)
        self.say(f"wrote {self.out}, {self.out.with_suffix('.md')}, {self.out.with_suffix('.png')}")

    def fill_savings(self, outs: Dict[tuple, List[Outputs]]) -> None:
        """mac_saving_vs_static: 1 - (cheapest MACs at the static best's test accuracy) / (its MACs)."""
        static = {r["seed"]: r for r in self.doc["runs"] if r["method"] == "static"}
        for r in self.doc["runs"]:
            s = static.get(r["seed"])
            if "mac_saving_vs_static" in r and r["mac_saving_vs_static"] is not None:
                continue
            if s is None or not s["solutions"] or (r["method"], r["seed"]) not in outs:
                r.setdefault("mac_saving_vs_static", None)
                continue
            ref = max(s["solutions"], key=lambda x: x["test"]["accuracy"])["test"]
            m = cheapest_at(outs[(r["method"], r["seed"])], ref["accuracy"])
            r["mac_saving_vs_static"] = None if m is None else round(1.0 - m / ref["expected_macs"], 4)

    def summarise(self) -> None:
        self.doc["methods"] = summarise_runs(self.doc["runs"])


def summarise_runs(runs: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, List[Any]]]:
    """Per method, each metric as a list over seeds (seed order)."""
    methods: Dict[str, Dict[str, List[Any]]] = {}
    for m in METHODS:
        rows = sorted((r for r in runs if r["method"] == m), key=lambda r: r["seed"])
        if rows:
            methods[m] = {k: [r.get(k) for r in rows] for k in METRICS}
            methods[m]["seeds"] = [r["seed"] for r in rows]
    return methods


def merge(parts: Sequence[Path], out: Path) -> Dict[str, Any]:
    """Join result files of runs made in parallel (e.g. one process per seed, each with every method so
    that the savings against its own static run are computed in-process) into one `out` + table + plot.
    Refuses parts written with other settings or budgets, and (method, seed) rows present twice."""
    docs = [json.loads(Path(p).read_text()) for p in parts]
    first = docs[0]
    for p, d in zip(parts, docs):
        if d.get("settings") != first.get("settings") or d.get("budget_s") != first.get("budget_s"):
            raise SystemExit(f"--merge: {p} was written with other settings than {parts[0]}")
    runs: List[Dict[str, Any]] = []
    seen = set()
    for p, d in zip(parts, docs):
        for r in d.get("runs", []):
            key = (r["method"], r["seed"])
            if key in seen:
                raise SystemExit(f"--merge: {key} appears twice (again in {p})")
            seen.add(key)
            runs.append(r)
    seeds = sorted({s for d in docs for s in d.get("seeds", [])})
    doc = {k: first[k] for k in ("benchmark", "issue", "versions", "budget_s", "settings")}
    doc.update(machine=first["machine"], seeds=seeds, runs=runs, methods=summarise_runs(runs),
               command=[d["command"] for d in docs], parts=[{"file": Path(p).name, "machine": d["machine"],
                                                              "last_saved": d.get("last_saved")}
                                                             for p, d in zip(parts, docs)],
               merged=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               complete=all((m, s) in seen for m in METHODS for s in seeds))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    write_table(doc, out.with_suffix(".md"))
    plot(doc, out.with_suffix(".png"), S.Constraints.from_dict(doc["settings"]["constraints"]))
    return doc


# --------------------------------------------------------------------------------------------------
# table and plot
# --------------------------------------------------------------------------------------------------

def _cell(values: Sequence[Optional[float]], scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    v = [x * scale for x in values if x is not None]
    missing = sum(1 for x in values if x is None)
    if not v:
        return "–" if not missing else f"none (0/{len(values)})"
    s = f"{np.mean(v):.{digits}f}{unit}" + (f" ± {np.std(v):.{digits}f}" if len(v) > 1 else "")
    return s + (f" ({len(v)}/{len(values)})" if missing else "")


def write_table(doc: Dict[str, Any], path: Path) -> str:
    head = ("| method | hypervolume | best acc @ ≤0.5M MACs (%) | best acc @ ≤1.0M MACs (%) | MAC saving vs static (%) "
            "| int8 TFLM acc of best (%) | candidates | wall (s) |")
    lines = [head, "|" + "---|" * 8]
    for m, v in doc["methods"].items():
        lines.append(f"| {m} | {_cell(v['hypervolume'], digits=4)} | {_cell(v['best_acc_at_0.5M'], 100)} | "
                     f"{_cell(v['best_acc_at_1.0M'], 100)} | {_cell(v['mac_saving_vs_static'], 100, 1)} | "
                     f"{_cell(v['int8_best_acc'], 100)} | {_cell(v['candidates'], digits=1)} | "
                     f"{_cell(v['wall_s'], digits=0)} |")
    text = "\n".join(lines) + (f"\n\nmean ± std over seeds {doc['seeds']}; (k/n): only k of n seeds had a value "
                               "(no admissible solution otherwise).\n")
    path.write_text(text)
    return text


def plot(doc: Dict[str, Any], path: Path, constraints) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = dict(zip(METHODS, "osD^v"))
    for m in METHODS:
        pts = [(s["test"]["expected_macs"], s["test"]["accuracy"]) for r in doc["runs"] if r["method"] == m
               for s in r["solutions"]]
        if pts:
            x, y = zip(*sorted(pts))
            ax.scatter(np.array(x) / 1e6, np.array(y) * 100, marker=markers[m], label=m, alpha=0.8)
    ax.axvline(constraints.max_macs / 1e6, color="grey", ls="--", lw=1)
    ax.axhline(constraints.min_accuracy * 100, color="grey", ls="--", lw=1)
    ax.set_xlabel("expected MACs per inference (M), test")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"admissible solutions, all seeds (search budget {doc['budget_s']:.0f} s per run)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=1800.0, help="search seconds per method and seed (default 1800)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--min-accuracy", type=float, default=0.80)
    p.add_argument("--max-macs", default="1.0M")
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--proxy-train", type=int, default=3000)
    p.add_argument("--proxy-val", type=int, default=1000)
    p.add_argument("--head-epochs", type=int, default=2, help="proxy training epochs per candidate")
    p.add_argument("--final-train", type=int, default=None, help="final re-training subset (default: whole split)")
    p.add_argument("--final-epochs", type=int, default=2)
    p.add_argument("--max-final", type=int, default=1, help="front members re-trained per run")
    p.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "compare"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare.json"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--merge", nargs="+", metavar="PART", default=None,
                   help="join result files of parallel runs (e.g. one --seeds per process) into --out")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.merge:
        merge([Path(p) for p in args.merge], Path(args.out))
        print(Path(args.out).with_suffix(".md").read_text())
    else:
        Bench(args).main()

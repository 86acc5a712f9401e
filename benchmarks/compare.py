"""Benchmark: nachos-tf's search against the alternatives, side by side (issue 12, deliverable 5; issue 6).

Six methods on Fashion-MNIST, with the same splits, constraints, final re-training and seeds:

* ``nachos``        NSGA-II over the joint backbone + exit space, candidates judged by the supernet evaluator;
* ``random``        random search (pymoo RandomSearch) over the same space, the same supernet evaluator;
* ``static``        NSGA-II over the same backbone space with exits off (`SearchSpace.mcu(early_exits=False)`),
                    the same supernet (its backbone genes are the same) as a plain hardware-aware NAS;
* ``handmade``      a fixed MobileNet-style EENN of the space (depth 2, kernel 3, expansion 4 in every stage;
                    exits after stages 2 and 4; no confidence branch), trained from scratch with the plain CE
                    sum by the proxy evaluator's `finalize` (the final budget), max-softmax thresholds;
* ``paper_choices`` NSGA-II with the NACHOS paper's choices where ours differ, candidates trained briefly:
                    `ProxyEvaluator(calibration="grid", cost_model="paper")` and the MAC term without gradient;
* ``nachos_proxy``  NSGA-II with today's proxy evaluator (`ProxyEvaluator()`), every candidate trained briefly.

**One supernet per seed** (`train_supernet(space, data, epochs, seed=seed)` into ``RUNS/supernet/seed<s>``,
resumable from its epoch checkpoints) is shared by the three supernet methods through
`SupernetEvaluator(supernet_dir=...)`; its cost is reported once per seed. **Time**: the supernet methods
each get ``--budget`` seconds of search after it (pymoo's time termination: the generation running at the
deadline finishes), the proxy methods ``--budget`` plus that seed's supernet cost. Every searched method
then finalizes up to ``--max-final`` front members with its evaluator's `finalize` (supernet: fine-tune from
the inherited weights; proxy: train from scratch), the same final budget for all. The search-time accuracy
floor is each evaluator's own (``Budget.accuracy_slack``): 0.03 below the floor for the supernet methods, as
their `quick` budget, 0.15 for the proxy methods, as the proxy's `quick` (`PROXY_BUDGETS`): a brief training
underestimates what a candidate reaches after its final training: with 0.03 (a search floor of 0.77 under the
default 0.80), seed 0 of `nachos_proxy` had 2 feasible candidates of 64 after 28 minutes and `paper_choices`
none of 72 (validation accuracies up to 0.78 and 0.76).

Per method and seed, on the test split of the finalized admissible solutions: hypervolume
(`nachos_tf.results.hypervolume`: the share of the admissible (error, expected MACs) box of the constraints
dominated by the solutions' test figures); the best test accuracy at <= 0.5M and <= 1.0M expected MACs
(each solution's thresholds re-chosen on validation for that bound with the method's calibration) and the
int8 TFLM test accuracy of that best 0.5M point; the expected-MAC saving at the static network's accuracy;
int8 TFLM accuracy of the most accurate solution; candidates evaluated; search and wall seconds.

Resumable across sessions: the JSON (``--out``) is rewritten as each run finishes with ``complete: false``
until every (method, seed) is done; ``--resume`` skips finished runs, continues a half-trained supernet
from its checkpoint and resumes an unfinished search run (`nt.search(..., resume=True)`: the archive is
replayed and the time limit counts the search seconds of the earlier sessions, ``search_clock.json``; the
row's ``search_s`` sums them, ``wall_s`` adds them to the last session's wall time). Table (``.md``) and plot
(``.png``) next to it.

    for s in 0 1 2; do        # one process per seed; the same command continues an interrupted one
      nohup nice -n 10 .venv/bin/python benchmarks/compare.py --seeds $s --threads 1 --resume \\
        --out runs/bench/compare_seed$s.json > runs/bench/compare_seed$s.log 2>&1
    done
    .venv/bin/python benchmarks/compare.py --merge runs/bench/compare_seed{0,1,2}.json \\
        --out benchmarks/results/compare.json
    .venv/bin/python benchmarks/compare_report.py benchmarks/results/compare.json    # redraw table and plot
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import (ResultFile, budget_settings, eval_context, loadavg, pin_threads, read_json, say,  # noqa: E402
                     supernet_training, utc_now)
from compare_args import parse_args  # noqa: E402
from compare_merge import merge  # noqa: E402
from compare_report import METHODS, plot, summarise, write_table  # noqa: E402

import nachos_tf as nt  # noqa: E402
from nachos_tf.errors import NoAdmissibleSolutionError  # noqa: E402
from nachos_tf.nas import PROXY_BUDGETS, Budget, Constraints, DataRef, ProxyEvaluator  # noqa: E402
from nachos_tf.nas.clock import read_clock  # noqa: E402
from nachos_tf.units import parse_size  # noqa: E402

SUPERNET_METHODS = ("nachos", "random", "static")
PROXY_METHODS = ("paper_choices", "nachos_proxy")


# --------------------------------------------------------------------------------------------------
# fixed networks
# --------------------------------------------------------------------------------------------------

def handmade_genome(space) -> nt.Genome:
    """MobileNet-style: every stage depth 2, kernel 3, expansion 4, middle width, ReLU, no SE, full
    resolution, stem 16; exits (gap + dense, width 16) after stages 2 and 4."""
    genes = {g.name: g.values for g in space.backbone_genes}
    bb: Dict[str, Any] = {"resolution": max(genes["resolution"]), "stem_width": 16}
    for s in range(1, 6):
        bb.update({f"s{s}_depth": 2, f"s{s}_kernel": 3, f"s{s}_expand": 4,
                   f"s{s}_width": genes[f"s{s}_width"][1], f"s{s}_se": False, f"s{s}_act": "relu"})
    exits = [nt.ExitGene(enabled=i in (1, 3), head="gap_dense", width=16, pool=1) for i in range(space.n_exit_points)]
    return space.repair(nt.Genome.make(bb, exits))


def paper_loss(constraints) -> nt.LossConfig:
    """The NACHOS loss as the authors' code computes it: the MAC term carries no gradient."""
    return nt.LossConfig.nachos(mac_budget=constraints.max_macs, mac_term_detached=True)


# --------------------------------------------------------------------------------------------------
# figures of a finished run (from its saved models)
# --------------------------------------------------------------------------------------------------

class Outputs:
    """Validation and test outputs of one saved solution (computed once, reused by every figure)."""

    def __init__(self, sol: Dict[str, Any], model, data, calibration: str):
        self.sol, self.model, self.calibration = sol, model, calibration
        self.exit_macs, self.rule = [float(m) for m in sol["exit_macs"]], sol["rule"]
        self.val, self.test = nt.predict_exits(model, data.x_val), nt.predict_exits(model, data.x_test)
        self.y_val, self.y_test = data.y_val, data.y_test

    def simulate(self, thresholds, split: str):
        (probs, conf), y = (self.val, self.y_val) if split == "val" else (self.test, self.y_test)
        return nt.simulate(probs, y, thresholds, self.exit_macs, self.rule, conf if self.rule == "confidence" else None)

    def calibrate(self, max_macs: Optional[float]):
        (probs, conf) = self.val
        return nt.calibrate(probs, self.y_val, self.exit_macs, rule=self.rule,
                            confidences=conf if self.rule == "confidence" else None, max_macs=max_macs,
                            min_accuracy=None, method=self.calibration)

    def at_budget(self, budget_macs: float):
        """(test accuracy, thresholds) of the validation-chosen thresholds for `budget_macs` (None: cannot)."""
        if len(self.exit_macs) == 1:
            return (None, None) if self.exit_macs[0] > budget_macs else (float(self.simulate([], "test").accuracy), [])
        cal = self.calibrate(budget_macs)
        if cal.result.expected_macs > budget_macs:
            return None, None
        return float(self.simulate(cal.thresholds, "test").accuracy), list(cal.thresholds)


def best_at(outs: Sequence[Outputs], budget_macs: float):
    """(best test accuracy, its Outputs, its thresholds) among solutions that can keep validation expected
    MACs within `budget_macs` ((None, None, None): none can)."""
    best = (None, None, None)
    for o in outs:
        acc, t = o.at_budget(budget_macs)
        if acc is not None and (best[0] is None or acc > best[0]):
            best = (acc, o, t)
    return best


def cheapest_at(outs: Sequence[Outputs], accuracy: float) -> Optional[float]:
    """Lowest test expected MACs of an operating point whose test accuracy reaches `accuracy`; operating
    points: each solution's own thresholds and (pareto calibration) its validation trade-off curve."""
    best = None
    for o in outs:
        points = [o.sol["thresholds"]]
        if len(o.exit_macs) > 1 and o.calibration == "pareto":
            curve = o.calibrate(None).curve
            if curve is not None:
                points += [list(t) for t in curve.thresholds]
        for t in points:
            r = o.simulate(t, "test")
            if r.accuracy >= accuracy - 1e-12:
                best = float(r.expected_macs) if best is None else min(best, float(r.expected_macs))
    return best


def test_hypervolume(solutions: Sequence[Dict[str, Any]], constraints: Dict[str, Any]) -> float:
    """`nachos_tf.results.hypervolume` of the solutions' test figures in the constraints' box."""
    from nachos_tf.results import hypervolume

    recs = [{"id": s["id"], "feasible": True,
             "metrics": {"error": 1.0 - s["test"]["accuracy"], "expected_macs": s["test"]["expected_macs"]}}
            for s in solutions]
    return hypervolume(recs, constraints)


# --------------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.runs = Path(a.runs_dir)
        self.constraints = Constraints(min_accuracy=a.min_accuracy, max_macs=parse_size(a.max_macs))
        self.budget = replace(Budget.preset("quick"), name="compare", population=a.population, generations=100000,
                              proxy_train=a.proxy_train, proxy_val=a.proxy_val, head_epochs=a.head_epochs,
                              final_train=a.final_train, final_epochs=0, final_head_epochs=a.final_epochs,
                              final_schedule=a.final_schedule, max_final=a.max_final, final_macs=a.final_macs,
                              accuracy_tolerance=a.accuracy_tolerance, rescore=a.rescore, finalists=a.finalists,
                              screen=a.screen, screen_train=a.screen_train, confirm=a.confirm, crossfit=a.crossfit,
                              mutation=a.mutation, mutation_rate=a.mutation_rate)
        self.outs: Dict[tuple, List[Outputs]] = {}

    def settings(self) -> Dict[str, Any]:
        a = self.a
        sn = dict(self.supernet_kw(), **{"from": {str(k): v for k, v in (a.supernet_from or [])},
                                          "any": a.any_supernet})
        budget = budget_settings(self.budget)     # without mutation, mutation_rate, screen at their old values
        if budget["final_macs"] == "budget":     # the behaviour before the field existed: seed 0's files lack it
            budget.pop("final_macs")
        if not budget["accuracy_tolerance"]:      # likewise for the files written before accuracy_tolerance
            budget.pop("accuracy_tolerance")
        if not budget["rescore"]:                 # and before Budget.rescore (the final stage chose unrescored)
            budget.pop("rescore")
        if not budget["confirm"]:                 # and before Budget.confirm (the search ranked on the subset only)
            budget.pop("confirm")
        if budget["finalists"] == "spread":       # and before Budget.finalists (spread was the only rule)
            budget.pop("finalists")
        more = {"refinalized_from": [str(p) for p in a.refinalize_from]} if a.refinalize_from else {}
        return {**more, "constraints": self.constraints.to_dict(), "budget": budget, "search_s": a.budget,
                "supernet": sn, "proxy_extra_s": a.proxy_extra_s,
                "threads": a.threads, "handmade_genome": handmade_genome(self.space).to_dict(),
                "hypervolume": "nachos_tf.results.hypervolume of the finalized solutions' test (error, expected "
                               "MACs), box of the constraints, reference (1, 1)"}

    # ---------------------------------------------------------------- the shared supernet of a seed
    def supernet_kw(self) -> Dict[str, Any]:
        """`train_supernet` settings of every seed's supernet (defaults: those of scripts/train_default_supernet.py)."""
        a = self.a
        return {"epochs": a.supernet_epochs, "warmup_epochs": a.supernet_warmup_epochs,
                "train_limit": a.supernet_train_limit, "n_random": a.supernet_n_random,
                "batch_size": a.supernet_batch_size}

    def supernet(self, seed: int) -> Dict[str, Any]:
        """Train (or finish training) the seed's supernet; returns its record with the cost in seconds."""
        from nachos_tf.supernet import train_supernet

        a = self.a
        recs = self.doc.setdefault("supernets", {})
        given = dict(a.supernet_from or [])
        if seed in given:                         # trained elsewhere: its cost is the sum of its epochs' seconds
            if str(seed) not in recs:
                folder = Path(given[seed]).resolve()
                tr = supernet_training(folder)
                st = tr.get("settings") or {}
                want = dict(self.supernet_kw(), seed=seed)
                got = {k: st.get(k) for k in want}
                if st.get("warmup_epochs") is not None and want["warmup_epochs"] is None:
                    got.pop("warmup_epochs")
                    want.pop("warmup_epochs")
                if not a.any_supernet and got != want:
                    raise SystemExit(f"--supernet-from {seed}={folder}: trained with {got}, the other seeds' "
                                     f"supernets get {want}")
                recs[str(seed)] = {"folder": str(folder), "training": tr, "seconds": tr["epoch_seconds"],
                                   "cost": "sum of the epochs' seconds in its manifest (trained elsewhere)"}
            return recs[str(seed)]
        rec = recs.setdefault(str(seed), {"folder": str(self.runs / "supernet" / f"seed{seed}"), "calls": []})
        folder = Path(rec["folder"])
        if rec.get("seconds") is not None and (folder / "supernet.json").is_file():
            return rec
        state = read_json(folder / "checkpoint" / "state.json") or {}
        e0 = int(state.get("epochs_done", 0))
        say(f"seed {seed}: training the shared supernet ({a.supernet_epochs} epochs, from epoch {e0}) into {folder}")
        t0 = time.time()
        train_supernet(self.space, self.data, folder=folder, seed=seed, verbose=2, **self.supernet_kw())
        tr = supernet_training(folder)
        rec["calls"].append({"from_epoch": e0, "to_epoch": tr["epochs_done"], "seconds": round(time.time() - t0, 1),
                             "load_avg_end": loadavg(), "time": utc_now()})
        # cost: the calls timed here, plus the epochs of sessions that died before their call returned
        covered = {e for c in rec["calls"] for e in range(c["from_epoch"] + 1, c["to_epoch"] + 1)}
        manifest = read_json(folder / "supernet.json") or {}
        lost = sum(float(h.get("seconds") or 0) for h in manifest.get("history", []) if h.get("epoch") not in covered)
        rec.update(training=tr, seconds=round(sum(c["seconds"] for c in rec["calls"]) + lost, 1))
        self.res.save()
        say(f"seed {seed}: supernet ready, cost {rec['seconds']:.0f}s")
        return rec

    # ---------------------------------------------------------------- one run
    def search_run(self, method: str, seed: int) -> Dict[str, Any]:
        from nachos_tf.nas.evaluators.supernet import SupernetEvaluator

        a = self.a
        out_dir = self.runs / method / f"seed{seed}"
        resume = bool(a.resume and (out_dir / "config.json").exists())   # an unfinished run of an earlier session
        if out_dir.exists() and not resume:
            shutil.rmtree(out_dir)
        kw: Dict[str, Any] = {"algorithm": "random" if method == "random" else "nsga2"}
        space = self.space_static if method == "static" else self.space
        seconds = float(a.budget)
        budget = self.budget
        if method in SUPERNET_METHODS:
            sn = self.supernet(seed)
            kw["evaluator"] = SupernetEvaluator(supernet_dir=str(Path(sn["folder"]).resolve()))
        else:
            seconds += float(self.supernet(seed)["seconds"] if a.proxy_extra_s is None else a.proxy_extra_s)
            kw["evaluator"] = (ProxyEvaluator(calibration="grid", cost_model="paper") if method == "paper_choices"
                               else ProxyEvaluator())
            if method == "paper_choices":
                kw["loss"] = paper_loss(self.constraints)
            # the proxy's own search-time floor: a brief training underestimates a candidate's final accuracy
            budget = replace(budget, accuracy_slack=PROXY_BUDGETS["quick"].accuracy_slack)
        marks: Dict[str, float] = {}

        def progress(line: str) -> None:
            if line.startswith("gen "):
                marks["search_end"] = time.time()
            say(f"{method} s{seed}: {line}")

        t0 = time.time()
        try:
            r = nt.search(space, self.data_ref, self.constraints, budget=budget, seed=seed, out_dir=out_dir,
                          max_seconds=seconds, threads=a.threads, progress=progress, resume=resume, **kw)
            sols = [s.to_dict() for s in r.admissible]
            archive, hv_search = r.archive, r.hypervolume
        except NoAdmissibleSolutionError as exc:
            say(f"{method} seed {seed}: no admissible solution ({str(exc).splitlines()[0]})")
            from nachos_tf.results import ARCHIVE, Archive, split_records

            sols, hv_search = [], 0.0
            archive = split_records(Archive(out_dir / ARCHIVE).records())[0]
        ev = kw["evaluator"]
        clock = read_clock(out_dir)               # search seconds over every session of the run
        sessions = clock["sessions"] if clock else []
        earlier = sum(float(x["seconds"]) for x in sessions[:-1])
        search_s = clock["seconds"] if clock else marks.get("search_end", time.time()) - t0
        return {"run_dir": str(out_dir), "solutions": sols, "time_limit_s": round(seconds, 1),
                "accuracy_slack": budget.accuracy_slack,
                "search_s": round(search_s, 1), "sessions": len(sessions) or 1,
                "earlier_sessions_s": round(earlier, 1),
                "setup_s": getattr(ev, "setup_seconds", None), "evaluator": ev.to_dict(),
                "candidates": sum(1 for c in archive if c.measured_ok),
                "pruned": sum(1 for c in archive if c.pruned), "search_hypervolume": hv_search,
                "confirmed": sum(1 for c in archive if c.extra.get("rescored"))}

    def refinalize_run(self, method: str, seed: int) -> Dict[str, Any]:
        """The final stage of an earlier part's run of (method, seed) again (`nachos_tf.refinalize`) with this
        benchmark's final budget: the same search, other finalists. Its search figures are the earlier row's."""
        from nachos_tf.nas.runner import FINAL_FIELDS

        old = self.earlier[(method, seed)]
        out_dir = self.runs / method / f"seed{seed}"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        changes = {k: getattr(self.budget, k) for k in FINAL_FIELDS}
        try:
            r = nt.refinalize(old["run_dir"], out_dir, progress=lambda line: say(f"{method} s{seed}: {line}"),
                              **changes)
            sols = [s.to_dict() for s in r.admissible]
        except NoAdmissibleSolutionError as exc:
            say(f"{method} seed {seed}: no admissible solution ({str(exc).splitlines()[0]})")
            sols = []
        row = {k: old.get(k) for k in ("time_limit_s", "search_s", "setup_s", "evaluator", "candidates", "pruned",
                                       "search_hypervolume")}
        return dict(row, run_dir=str(out_dir), solutions=sols, refinalized_from=old["run_dir"])

    def handmade_run(self, seed: int) -> Dict[str, Any]:
        """The fixed genome, trained by the proxy evaluator's finalize (CE sum, the final budget)."""
        from nachos_tf.nas.final_points import measure_pending_int8

        out_dir = self.runs / "handmade" / f"seed{seed}"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        space = nt.SearchSpace.mcu((28, 28, 1), 10, confidence=False)   # CE sum trains no confidence: max-softmax
        genome = handmade_genome(space)
        ev = ProxyEvaluator()
        ev.setup(eval_context(space, self.data, self.constraints.relaxed(self.budget.accuracy_slack), self.budget,
                              seed, out_dir, loss=nt.LossConfig.ce_sum(), target=self.constraints))
        rec = ev.evaluate(genome)
        rec.id = "handmade"
        fin = measure_pending_int8(ev.finalize(rec, out_dir), out_dir, self.data)   # as the final stage does
        sol = {k: getattr(fin, k) for k in ("id", "genome", "model", "rule", "thresholds", "exit_macs", "val",
                                            "test", "int8")}
        row = {"run_dir": str(out_dir), "solutions": [] if fin.dropped else [sol], "candidates": 1,
               "evaluator": ev.to_dict(), "time_limit_s": None, "search_s": None}
        if fin.dropped:
            row["handmade_dropped"] = dict(sol, reason=fin.dropped)
        return row

    def figures(self, method: str, seed: int, row: Dict[str, Any]) -> None:
        """Hypervolume, best accuracy at 0.5M / 1.0M (+ int8 at 0.5M), int8 of the best: into `row`."""
        from tflite_export.convert import int8_report

        outs = self.outputs(method, seed, row)
        row["hypervolume"] = test_hypervolume(row["solutions"], self.constraints.to_dict())
        for bound, key in ((0.5e6, "0.5M"), (1.0e6, "1.0M")):
            acc, o, t = best_at(outs, bound)
            row[f"best_acc_at_{key}"] = acc
            if key == "0.5M":
                row["int8_at_0.5M"] = None if o is None else dict(
                    int8_report(o.model, self.data.x_train, self.data.x_test, self.data.y_test, o.rule, t,
                                o.exit_macs), solution=o.sol["id"], thresholds=[float(x) for x in t])
        best = max(row["solutions"], key=lambda s: s["test"]["accuracy"], default=None)
        row["int8_best_acc"] = best["int8"]["accuracy"] if best and best.get("int8") else None

    def outputs(self, method: str, seed: int, row: Dict[str, Any]) -> List[Outputs]:
        """Outputs of a run's saved solutions (cached in this process)."""
        from nachos_tf.macs import load_model_file

        if (method, seed) not in self.outs:
            cal = "grid" if method == "paper_choices" else "pareto"
            self.outs[(method, seed)] = [Outputs(s, load_model_file(Path(row["run_dir"]) / s["model"]), self.data, cal)
                                         for s in row["solutions"]]
        return self.outs[(method, seed)]

    def fill_savings(self) -> None:
        """mac_saving_vs_static: 1 - (cheapest test MACs reaching the best static network's test accuracy) /
        (that static network's test MACs), per seed."""
        static = {r["seed"]: r for r in self.doc["runs"] if r["method"] == "static"}
        for r in self.doc["runs"]:
            s = static.get(r["seed"])
            if r.get("mac_saving_vs_static") is not None or s is None:
                continue
            if not s["solutions"] or not r["solutions"]:
                r["mac_saving_vs_static"] = None
                continue
            ref = max(s["solutions"], key=lambda x: x["test"]["accuracy"])["test"]
            m = cheapest_at(self.outputs(r["method"], r["seed"], r), ref["accuracy"])
            r["mac_saving_vs_static"] = None if m is None else round(1.0 - m / ref["expected_macs"], 4)

    def run_one(self, method: str, seed: int) -> Dict[str, Any]:
        t0, load0 = time.time(), loadavg()
        if self.a.refinalize_from and method == "handmade":
            return dict(self.earlier[(method, seed)], copied_from_part=True)   # a fixed network: no final stage
        if self.a.refinalize_from:
            row = self.refinalize_run(method, seed)
        else:
            row = self.handmade_run(seed) if method == "handmade" else self.search_run(method, seed)
        row.update(method=method, seed=seed)
        self.figures(method, seed, row)
        row.update(wall_s=round(time.time() - t0 + float(row.get("earlier_sessions_s") or 0), 1), load_before=load0,
                   load_after=loadavg(), finished=utc_now())
        if self.a.refinalize_from:
            row.update(final_s=row["wall_s"], wall_s=round(row["wall_s"] + float(row.get("search_s") or 0), 1))
        return row

    def main(self) -> None:
        a = self.a
        pin_threads(a.threads)
        self.data_ref = DataRef("fashion_mnist")   # run folders name their data: resumable, verify_run.py checks them
        self.data = self.data_ref.load()
        self.space = nt.SearchSpace.mcu((28, 28, 1), 10)
        self.space_static = nt.SearchSpace.mcu((28, 28, 1), 10, early_exits=False)
        self.earlier = {}
        for part in a.refinalize_from or ():
            for r in (read_json(part) or {}).get("runs", []):
                if r["method"] not in a.methods or r["seed"] not in a.seeds:
                    continue
                if (r["method"], r["seed"]) in self.earlier:
                    raise SystemExit(f"--refinalize-from: {(r['method'], r['seed'])} appears twice (again in {part})")
                self.earlier[(r["method"], r["seed"])] = r
        missing = [(m, s) for m in a.methods for s in a.seeds if a.refinalize_from and (m, s) not in self.earlier]
        if missing:
            raise SystemExit(f"--refinalize-from: no earlier run of {missing}")
        prev = read_json(a.out) if a.resume else None
        resume = prev is not None and prev.get("issue") == 12     # a file of the issue-6 version is replaced
        self.res = ResultFile(a.out, "compare", self.settings(), resume)
        self.doc = self.res.doc
        self.doc.update(issue=12, methods_run=list(a.methods))
        seeds = sorted(set(self.doc.get("seeds", [])) | set(a.seeds))
        self.doc["seeds"] = seeds
        self.doc.setdefault("runs", [])
        done = {(r["method"], r["seed"]) for r in self.doc["runs"]}
        order = [m for m in METHODS if m in a.methods]
        for seed in a.seeds:                      # seeds outermost: a seed's row is complete before the next
            for method in order:
                if (method, seed) in done:
                    continue
                say(f"--- {method}, seed {seed} ---")
                row = self.run_one(method, seed)
                self.doc["runs"].append(row)
                self.fill_savings()
                self.doc["summary"] = summarise(self.doc)
                self.res.save()
                say(f"{method} seed {seed}: {len(row['solutions'])} admissible, HV {row['hypervolume']:.4f}, "
                    f"best@0.5M {row['best_acc_at_0.5M']}, int8 best {row['int8_best_acc']}, "
                    f"{row['candidates']} candidates, search {row.get('search_s')}s, wall {row['wall_s']:.0f}s")
        self.fill_savings()
        self.doc["summary"] = summarise(self.doc)
        have = {(r["method"], r["seed"]) for r in self.doc["runs"]}
        if all((m, s) in have for m in METHODS for s in seeds):
            self.res.finish()
        else:
            self.res.save()
        self.report(Path(a.out))

    def report(self, out: Path) -> None:
        write_table(self.doc, out.with_suffix(".md"))
        plot(self.doc, out.with_suffix(".png"))
        say(f"wrote {out} (complete: {self.doc['complete']}), {out.with_suffix('.md')}, {out.with_suffix('.png')}")


if __name__ == "__main__":
    args = parse_args(description=__doc__.split("\n")[0])
    if args.merge:
        merge(args.merge, args.out, args.static_from or (), args.nachos_from or (), args.replace or ())
        print(args.out.with_suffix(".md").read_text())
    else:
        try:
            Bench(args).main()
        except KeyboardInterrupt:        # kill -INT / Ctrl-C: the run folder keeps its archive and search clock
            say("interrupted: the same command with --resume continues (benchmarks/run_state.py save carries the "
                "unfinished runs to another checkout)")
            sys.exit(130)

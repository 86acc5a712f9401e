"""Benchmark: speed and ranking fidelity of the search's candidate evaluators (issue 12, deliverable 5).

For every evaluator (``proxy``: `ProxyEvaluator`, each candidate trained briefly from scratch at the
`quick` budget; ``supernet``: `SupernetEvaluator`, each candidate's weights inherited from one trained
weight-sharing supernet, batch norm re-estimated, no training), set up as a `quick` search would:

1. **One-time cost**: the evaluator's `setup(context)`, timed here (proxy: nothing to prepare; supernet:
   load it, or train it). For a supernet trained elsewhere (the shipped preset, the cache, ``--supernet-dir``)
   its training time is read from its manifest (the sum of its epochs' seconds) and stated with it.
2. **Speed after it**: every `evaluate(genome)` call on the same genomes, timed (wall clock, the whole
   call: extract or build + train + calibrate). Candidates per minute at steady state leave out each
   evaluator's first call (graph tracing, TensorFlow start-up); the rate with it is reported too.
3. **Fidelity**: on the 20 genomes of the issue-4 benchmark (sampled from `SearchSpace.mcu((28, 28, 1), 10)`,
   seeds 0.., one over-budget sample skipped), Spearman and Kendall (`scipy.stats`) between each evaluator's
   accuracy estimate (validation accuracy at its calibrated thresholds: the search objective; also its
   final-exit accuracy and expected MACs) and **stand-alone full training** of the same genome: 1 backbone +
   1 NACHOS epoch on all 54,000 training images, thresholds calibrated on the 6,000 validation images,
   figures on the 10,000 test images. Those full-training results are *reused* from the committed results
   (``--reference``, either the issue-4 format or this one); only a genome without one is trained here.
   ``--full-epochs E --full-head-epochs H`` train a longer reference for every genome instead (E + H epochs,
   about 2 minutes per epoch and genome on one core; resumable per genome), and ``--repeat-full-training
   RUN_SEED`` trains the reference again with another seed: its own rank noise, the ceiling of any estimate's
   (with ``--train-only`` split over two processes, then joined by ``--resume`` with ``--reference`` the other's file).

``--proxy-val N`` (0: the whole 6,000-image validation split) and ``--crossfit K`` change the estimate the way
the same `Budget` fields change the search's (images ranked on; K-fold cross-fitted figures instead of the
in-sample ones); with ``--no-full-training`` and a ``--reference`` holding a longer training (its settings equal
to ``--full-epochs`` / ``--full-head-epochs``) they are compared with that reference without training it again.

``--screen-train N`` (supernet evaluator) replaces the estimate with the middle fidelity `Budget.screen` gives the
final stage: each candidate's subnet fine-tuned from its inherited weights for one exit-phase epoch on N training
images (`SupernetEvaluator.screen`), judged on the whole validation split; its seconds count in the speed.

The evaluators' final-exit accuracy is read from the probabilities they hand to `nachos_tf.policy.calibrate`
or `crossfit_calibrate` (pass-through wrappers installed in this process only; they add no work).

Results go to ``--out`` (JSON, rewritten after every evaluation with ``complete: false`` until all are done;
``--resume`` continues it in a later session). Timings are wall clock on whatever else runs on the machine:
the 1-minute load average is recorded around every call.

Run:

    nohup nice -n 10 .venv/bin/python benchmarks/search_speed.py --resume > runs/search_speed.log 2>&1 &
    # a 10-epoch reference (6 backbone + 4 NACHOS epochs per genome) against the shipped supernet:
    nohup .venv/bin/python benchmarks/search_speed.py --evaluators supernet --full-epochs 6 --full-head-epochs 4 \
        --supernet-dir nachos_tf/supernet/presets/fashion_mnist --threads 1 --resume \
        --out runs/bench/search_speed_ref10.json > runs/bench/search_speed_ref10.log 2>&1 &
    # the same supernet estimate, 2-fold cross-fitted, on the whole validation split, against that reference:
    .venv/bin/python benchmarks/search_speed.py --evaluators supernet --full-epochs 6 --full-head-epochs 4 \
        --reference benchmarks/results/search_speed_ref10.json --no-full-training --proxy-val 0 --crossfit 2 \
        --supernet-dir nachos_tf/supernet/presets/fashion_mnist --threads 1 --out runs/bench/ss_ref10_xf.json
    # smoke test (tiny supernet trained here, 3 genomes, figures meaningless):
    .venv/bin/python benchmarks/search_speed.py --smoke --candidates 3 --out /tmp/ss.json --work-dir /tmp/ss
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import (ROOT, RESULTS, ResultFile, add_out, add_resume, add_threads, budget_settings,  # noqa: E402
                     correlation, eval_context, loadavg, pin_threads, positive_int, read_json, say,
                     supernet_training, two_training_mean, utc_now)
from search_speed_genomes import (FULL_SETTINGS, Capture, exit_macs_of, full_training, genome_id,  # noqa: E402
                                  reference_results, sample_genomes)
from search_speed_report import fidelity, fmt, table, timing_summary  # noqa: E402

import nachos_tf as nt  # noqa: E402
from nachos_tf.nas import Budget, Constraints, ProxyEvaluator  # noqa: E402
from nachos_tf.units import parse_size  # noqa: E402

EVALUATORS = ("proxy", "supernet")


# --------------------------------------------------------------------------------------------------
# the benchmark (its statistics: search_speed_report.py)
# --------------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.capture = Capture()
        self.constraints = Constraints(min_accuracy=a.min_accuracy, max_macs=parse_size(a.max_macs))
        b = Budget.preset("quick")
        if a.smoke:
            b = b.with_(proxy_train=500, proxy_val=500, epochs=1, head_epochs=1)
        if a.proxy_val is not None:                # 0: the whole validation split
            b = b.with_(proxy_val=a.proxy_val or None)
        if a.crossfit:
            b = b.with_(crossfit=a.crossfit)
        if a.screen_train:
            b = b.with_(screen_train=a.screen_train)
        self.budget = b
        self.search_constraints = self.constraints.relaxed(b.accuracy_slack)   # what a quick search hands them
        self.work = Path(a.work_dir)

    # ---------------------------------------------------------------- settings (what a resume must match)
    def full_settings(self) -> Dict[str, Any]:
        """FULL_SETTINGS with this command's --full-epochs / --full-head-epochs."""
        a = self.a
        return dict(FULL_SETTINGS, epochs=a.full_epochs or FULL_SETTINGS["epochs"],
                    head_epochs=a.full_head_epochs or FULL_SETTINGS["head_epochs"])

    def settings(self, genomes: Dict[str, Any]) -> Dict[str, Any]:
        a, fs = self.a, self.full_settings()
        return {"evaluators": list(a.evaluators), "genome_ids": list(genomes), "run_seed": a.seed,
                "space": "SearchSpace.mcu((28, 28, 1), 10)", "dataset": "fashion_mnist",
                "constraints": self.constraints.to_dict(), "search_constraints": self.search_constraints.to_dict(),
                "budget": budget_settings(self.budget), "supernet": self.supernet_settings(), "threads": a.threads,
                "smoke": a.smoke, **({"full": fs} if fs != FULL_SETTINGS else {}),
                "timing": "wall clock (time.perf_counter) around each evaluate(genome) call, after setup(context); "
                          "steady state leaves out each evaluator's first call"}

    def supernet_settings(self) -> Dict[str, Any]:
        a = self.a
        if a.supernet_dir:
            return {"source": "given folder", "folder": str(Path(a.supernet_dir).resolve())}
        if a.supernet_epochs:
            return {"source": "trained here", "epochs": a.supernet_epochs, "train_limit": a.supernet_train_limit}
        return {"source": "as a quick search finds it (shipped preset, cache, or trained by setup)"}

    # ---------------------------------------------------------------- evaluators
    def make_evaluator(self, name: str):
        """(evaluator, setup record) set up as a quick search would."""
        ctx = eval_context(self.space, self.data, self.search_constraints, self.budget, self.a.seed,
                           self.work / f"run_{name}", target=self.constraints, progress=say)
        if name == "proxy":
            ev = ProxyEvaluator()
            t0 = time.perf_counter()
            ev.setup(ctx)
            return ev, {"setup_seconds": round(time.perf_counter() - t0, 3), "what": "nothing to prepare"}
        from nachos_tf.nas.evaluators.supernet import SupernetEvaluator

        rec: Dict[str, Any] = {}
        folder = self.a.supernet_dir
        if folder is None and self.a.supernet_epochs:
            folder, rec["trained_here"] = self.train_supernet()
        ev = SupernetEvaluator(supernet_dir=folder)
        t0 = time.perf_counter()
        ev.setup(ctx)
        rec.update(setup_seconds=round(time.perf_counter() - t0, 3), source=ev.source, folder=str(ev.folder),
                   training=supernet_training(ev.folder))
        return ev, rec

    def train_supernet(self) -> Tuple[str, Dict[str, Any]]:
        """Train (or finish training) a supernet in the work folder; (folder, {seconds of this call})."""
        from nachos_tf.supernet import train_supernet

        a = self.a
        folder = self.work / f"supernet_e{a.supernet_epochs}_n{a.supernet_train_limit or 'all'}_s{a.seed}"
        t0 = time.perf_counter()
        if not (folder / "supernet.json").is_file():
            say(f"training a supernet: {a.supernet_epochs} epochs on {a.supernet_train_limit or 'all'} images "
                f"into {folder} (resumable)")
            train_supernet(self.space, self.data, epochs=a.supernet_epochs, train_limit=a.supernet_train_limit,
                           folder=folder, seed=a.seed, verbose=2)
        return str(folder), {"seconds_this_session": round(time.perf_counter() - t0, 1)}

    def evaluate(self, name: str, ev, gid: str, genome, first: bool) -> Dict[str, Any]:
        self.capture.take()
        lb = loadavg()
        t0 = time.perf_counter()
        rec = ev.evaluate(genome)
        if self.a.screen_train and not (rec.pruned or rec.error):
            rec = ev.screen([rec])[0]             # the middle fidelity (Budget.screen) as the estimate
        secs = time.perf_counter() - t0
        exit_acc = self.capture.take()
        m = rec.metrics
        return {"evaluator": name, "id": gid, "seconds": round(secs, 3), "evaluator_seconds": rec.seconds,
                "train_seconds": rec.train_seconds, "first_call": first, "load_before": lb, "load_after": loadavg(),
                "finished": utc_now(), "accuracy": m.accuracy, "expected_macs": m.expected_macs,
                "exit_rates": m.exit_rates, "final_exit_accuracy": None if exit_acc is None else exit_acc[-1],
                "exit_accuracy": exit_acc, "feasible": rec.feasible, "pruned": rec.pruned, "error": rec.error,
                "thresholds": rec.thresholds, "exit_macs": rec.exit_macs}

    # ---------------------------------------------------------------- run
    def run(self) -> None:
        a = self.a
        pin_threads(a.threads)
        self.data = nt.data.load("fashion_mnist")
        self.space = nt.SearchSpace.mcu((28, 28, 1), 10)
        ref_doc = read_json(a.reference) if a.reference else None
        genomes, full, issue4 = reference_results(ref_doc)
        skipped = (ref_doc or {}).get("skipped_samples", [])
        if not genomes or a.first_sample_seed is not None:
            genomes, skipped = sample_genomes(self.space, a.candidates, a.first_sample_seed or 0,
                                              self.constraints.max_macs)
        genomes = dict(list(genomes.items())[:a.candidates])
        unknown = sorted(set(a.train_only or ()) - set(genomes))
        if unknown:
            raise SystemExit(f"--train-only: not among the benchmark's genomes: {', '.join(unknown)}")
        prev = read_json(a.out) if a.resume else None
        resume = prev is not None and "evaluators" in prev       # the issue-4 file is read above, then replaced
        res = ResultFile(a.out, "search_speed", self.settings(genomes), resume)
        d = res.doc
        d["issue"] = 12
        d.setdefault("genomes", genomes)
        d["skipped_samples"] = skipped
        if issue4 is not None:
            d.setdefault("issue4_summary", issue4)
        ref_full = (ref_doc or {}).get("full_training", {}).get("settings") or \
            ((ref_doc or {}).get("settings") or {}).get("full")
        fs = self.full_settings()
        if fs != FULL_SETTINGS and ref_full != fs:  # another reference training: the file's results do not apply
            full, ref_full = {}, None
        ft = d.setdefault("full_training", {"settings": ref_full if full else fs, "order": list(genomes),
                                            "results": {}})
        if not full and ft["settings"] != fs:
            raise SystemExit(f"{a.out} holds full trainings with other settings ({ft['settings']['epochs']}+"
                             f"{ft['settings']['head_epochs']} epochs); use another --out")
        for gid in genomes:
            if gid in full and gid not in ft["results"]:
                ft["results"][gid] = dict(full[gid], source=f"{a.reference} (not re-trained)")
        d.setdefault("evaluators", {n: {"rows": [], "setups": []} for n in a.evaluators})
        self.check_genomes(d)
        res.save()

        # 1. each evaluator: one-time setup, then every genome (first: seconds of work, and a partial reference
        # then already gives rank correlations over the genomes it holds)
        for name in a.evaluators:
            entry = d["evaluators"][name]
            todo = [g for g in genomes if g not in {r["id"] for r in entry["rows"]}]
            if not todo:
                continue
            ev, setup = self.make_evaluator(name)
            entry["setups"].append(dict(setup, session=len(d["sessions"]), load_avg=loadavg(), time=utc_now()))
            entry["to_dict"] = ev.to_dict()
            say(f"{name}: set up in {setup['setup_seconds']:.1f}s ({setup.get('source', setup.get('what'))})")
            res.save()
            for i, gid in enumerate(todo):
                row = self.evaluate(name, ev, gid, nt.Genome.from_dict(genomes[gid]["genome"]), first=i == 0)
                entry["rows"].append(row)
                f = ft["results"].get(gid)
                say(f"{name} {len(entry['rows'])}/{len(genomes)} {gid}: {row['seconds']:.1f}s, acc "
                    f"{fmt(row['accuracy'])}, final-exit {fmt(row['final_exit_accuracy'])}, E[MACs] "
                    f"{fmt(row['expected_macs'], 0)} (full training: {fmt(f and f['test']['accuracy'])}); "
                    f"load {row['load_after']}")
                self.summarise(d)
                res.save()
        # 2. missing stand-alone full-training results (none for the committed 20 genomes)
        missing = [g for g in genomes if g not in ft["results"] and (not a.train_only or g in a.train_only)]
        if missing and not a.no_full_training:
            train = self.data if not a.smoke else self.data.subset(train=1000, val=None, test=None, seed=a.seed)
            for i, gid in enumerate(missing):
                r = full_training(self.space, self.data, nt.Genome.from_dict(genomes[gid]["genome"]), self.constraints,
                                  a.seed, train, self.capture, fs)
                ft["results"][gid] = dict(r, source="trained by this run" + (" (smoke: 1000 images)" if a.smoke else ""))
                say(f"full training {i + 1}/{len(missing)} {gid}: test acc {r['test']['accuracy']:.4f} "
                    f"({r['seconds']:.0f}s)")
                self.summarise(d)
                res.save()

        # 2b. the reference trained again with another run seed (its own noise: how well can any estimate rank?)
        if a.repeat_full_training is not None:
            rep = d.setdefault("full_training_repeat", {"run_seed": a.repeat_full_training, "results": {},
                                                        "settings": ft["settings"]})
            if rep["run_seed"] != a.repeat_full_training:
                raise SystemExit(f"{a.out} repeats the full training with run seed {rep['run_seed']}")
            other = (ref_doc or {}).get("full_training_repeat") or {}   # a second process's share (--train-only)
            if other.get("run_seed") == rep["run_seed"] and other.get("settings") == rep["settings"]:
                joined = [g for g in other.get("results") or {} if g in genomes and g not in rep["results"]]
                for gid in joined:
                    rep["results"][gid] = dict(other["results"][gid], source=f"{a.reference} (joined)")
                if joined:
                    rep.setdefault("joined", []).append({"file": str(a.reference), "genomes": joined,
                                                         "sessions": ref_doc.get("sessions", [])})
            train = self.data if not a.smoke else self.data.subset(train=1000, val=None, test=None, seed=a.seed)
            for gid in [g for g in genomes if g not in rep["results"] and (not a.train_only or g in a.train_only)]:
                r = full_training(self.space, self.data, nt.Genome.from_dict(genomes[gid]["genome"]), self.constraints,
                                  a.repeat_full_training, train, self.capture, rep["settings"])
                rep["results"][gid] = r
                say(f"full training again ({len(rep['results'])}/{len(genomes)}, run seed {rep['run_seed']}) {gid}: "
                    f"test acc {r['test']['accuracy']:.4f} (first: {ft['results'][gid]['test']['accuracy']:.4f}, "
                    f"{r['seconds']:.0f}s)")
                self.summarise(d)
                res.save()

        self.summarise(d)
        if all(len(d["evaluators"][n]["rows"]) >= len(genomes) for n in a.evaluators) and \
                all(g in ft["results"] for g in genomes) and \
                all(g in d.get("full_training_repeat", {"results": genomes})["results"] for g in genomes):
            res.finish()
        else:
            res.save()
        say(f"wrote {a.out} (complete: {d['complete']})")
        print(table(d))

    def check_genomes(self, d: Dict[str, Any]) -> None:
        """The stored genomes must still be members of the space; their exit MACs now are recorded."""
        for gid, g in d["genomes"].items():
            genome = nt.Genome.from_dict(g["genome"])
            self.space.validate(genome)
            if genome_id(genome) != gid:
                raise SystemExit(f"genome {gid}: its id does not match its key any more")
            if "exit_macs_now" not in g:
                g["exit_macs_now"] = exit_macs_of(self.space, genome)
                g["exit_macs_unchanged"] = [int(m) for m in g.get("exit_macs", [])] == g["exit_macs_now"]

    def summarise(self, d: Dict[str, Any]) -> None:
        full = d["full_training"]["results"]
        ids = [g for g in d["genomes"] if g in full]
        fu = [full[g] for g in ids]
        out: Dict[str, Any] = {"n_full": len(ids), "evaluators": {}, "baselines": {
            "total_macs": dict(correlation([f["total_macs"] for f in fu], [f["test"]["accuracy"] for f in fu]),
                               what="naive predictor: total (final-exit) MACs vs full thresholded accuracy"),
            "params": dict(correlation([f["params"] for f in fu], [f["test"]["accuracy"] for f in fu]),
                           what="naive predictor: parameter count vs full thresholded accuracy")},
            "full_accuracy_range": [min((f["test"]["accuracy"] for f in fu), default=None),
                                    max((f["test"]["accuracy"] for f in fu), default=None)]}
        for name, entry in d["evaluators"].items():
            setups = entry.get("setups", [])
            first = setups[0] if setups else {}
            one_time = {"setup_seconds": first.get("setup_seconds"), "source": first.get("source", first.get("what")),
                        "setup_seconds_by_session": [s.get("setup_seconds") for s in setups]}
            if first.get("training"):
                tr = first["training"]
                one_time.update(supernet_training_seconds=tr.get("epoch_seconds"), supernet_epochs=tr.get("epochs_done"),
                                supernet_settings=tr.get("settings"),
                                trained_in_this_benchmark=first.get("trained_here"))
                # setup itself trained it: its seconds hold the training; else training (its epochs' seconds,
                # every session) happened before setup, which only loaded it
                trained_by_setup = str(first.get("source", "")).startswith("trained here")
                one_time["total_seconds"] = round(float(first.get("setup_seconds") or 0) + (
                    0.0 if trained_by_setup else float(tr.get("epoch_seconds") or 0)), 1)
            else:
                one_time["total_seconds"] = first.get("setup_seconds")
            out["evaluators"][name] = {"one_time_cost": one_time, "speed": timing_summary(entry["rows"]),
                                       **fidelity(entry["rows"], full)}
        ev = out["evaluators"]
        if "proxy" in ev and "supernet" in ev and ev["proxy"]["speed"].get("n") and ev["supernet"]["speed"].get("n"):
            tp, ts = ev["proxy"]["speed"]["seconds_mean"], ev["supernet"]["speed"]["seconds_mean"]
            cost = ev["supernet"]["one_time_cost"].get("total_seconds") or 0.0
            out["supernet_pays_off_after"] = (None if tp <= ts else
                                              {"candidates": int(np.ceil(cost / (tp - ts))),
                                               "what": "candidates after which the supernet's one-time cost plus "
                                                       "its evaluations take less time than proxy evaluations"})
        rep = (d.get("full_training_repeat") or {}).get("results") or {}
        mean = two_training_mean(d)
        both = [g for g in ids if g in mean]
        if len(both) >= 3:
            a_acc = [full[g]["test"]["accuracy"] for g in both]
            b_acc = [rep[g]["test"]["accuracy"] for g in both]
            diff = np.abs(np.subtract(a_acc, b_acc))
            out["reference_repeatability"] = dict(
                correlation(a_acc, b_acc), mean_abs_difference=round(float(diff.mean()), 4),
                max_abs_difference=round(float(diff.max()), 4),
                what="test accuracy of the full training, run seed of the reference vs run seed "
                     f"{d['full_training_repeat']['run_seed']} (other initialisation and data order): the ceiling "
                     "any estimate's rank correlation with one training can reach")
            rr = out["reference_repeatability"]["spearman"]
            out["reference_repeatability"]["attenuation_ceiling"] = dict(
                value=None if rr is None else round(float(np.sqrt(max(rr, 0.0))), 4),
                what="sqrt(Spearman between the two trainings): by the attenuation formula, about the correlation "
                     "with one training that an estimate ranking the genomes' expected accuracy perfectly would get")
            macs = [full[g]["total_macs"] for g in both]
            out["baselines_vs_mean_reference"] = {"total_macs": dict(
                correlation(macs, [mean[g] for g in both]),
                what="naive predictor: total MACs vs the mean test accuracy of the two trainings")}
            for name, entry in d["evaluators"].items():
                rows = [r for r in entry["rows"] if r["id"] in mean and r.get("accuracy") is not None]
                if len(rows) >= 3:
                    out["evaluators"][name]["vs_mean_reference"] = dict(
                        correlation([r["accuracy"] for r in rows], [mean[r["id"]] for r in rows]),
                        what="estimate (thresholded val accuracy) vs the mean test accuracy of the two trainings")
        d["summary"] = out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--evaluators", nargs="+", default=list(EVALUATORS), choices=EVALUATORS,
                   help="evaluators to measure, in this order (default: proxy supernet)")
    p.add_argument("--candidates", type=positive_int, default=20, help="genomes (default: the 20 of --reference)")
    p.add_argument("--reference", type=Path, default=RESULTS / "search_speed.json",
                   help="committed results holding the genomes and their full-training results "
                        "(default: %(default)s; read before --out is rewritten)")
    p.add_argument("--first-sample-seed", type=int, default=None,
                   help="sample new genomes from this seed on instead of --reference's (full training then "
                        "runs here: ~6 min per genome)")
    p.add_argument("--no-full-training", action="store_true",
                   help="never train a genome stand-alone (genomes without a result get no correlation)")
    p.add_argument("--train-only", nargs="+", default=None, metavar="ID",
                   help="train only these genomes' missing references (or, with --repeat-full-training, their "
                        "repeats) in this process (two processes on two cores with disjoint sets and their own --out; "
                        "then --resume one with --reference the other and --no-full-training to join them)")
    p.add_argument("--repeat-full-training", type=int, default=None, metavar="RUN_SEED",
                   help="train every genome's reference again with this run seed (other initialisation and data "
                        "order) and report how well the two references rank alike (the reference's own noise)")
    p.add_argument("--full-epochs", type=positive_int, default=None,
                   help="backbone epochs of the stand-alone reference training (default 1, the committed reference's); "
                        "another value trains a new reference for every genome (use another --out)")
    p.add_argument("--full-head-epochs", type=positive_int, default=None,
                   help="exit-phase (NACHOS loss) epochs of the reference training (default 1)")
    p.add_argument("--proxy-val", type=int, default=None, metavar="N",
                   help="validation images each estimate is computed on (default: the quick budget's 2000; "
                        "0: the whole validation split)")
    p.add_argument("--crossfit", type=int, default=0, metavar="K",
                   help="estimate = K-fold cross-fitted figures (Budget.crossfit, nachos-tf search --crossfit K); "
                        "default 0: in-sample, as the search ranks by default")
    p.add_argument("--screen-train", type=positive_int, default=None, metavar="N",
                   help="estimate = the supernet candidate screened as Budget.screen does (one exit-phase epoch "
                        "on N training images from its inherited weights, judged on the whole validation split)")
    p.add_argument("--supernet-dir", default=None, help="use this trained supernet folder as is")
    p.add_argument("--supernet-epochs", type=positive_int, default=None,
                   help="train a supernet here with this many epochs (timed) instead of the one a quick search finds")
    p.add_argument("--supernet-train-limit", type=positive_int, default=None,
                   help="train that supernet on a seeded subset of this many images")
    p.add_argument("--seed", type=int, default=0, help="run seed, as search(seed=): subsets, candidate seeds")
    p.add_argument("--min-accuracy", type=float, default=0.85, help="constraint (make demo: 0.85)")
    p.add_argument("--max-macs", default="1.0M", help="expected-MAC constraint and NACHOS MAC budget (1.0M)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "search_speed",
                   help="evaluator run folders and supernets trained here (default: %(default)s)")
    add_threads(p)
    add_out(p, RESULTS / "search_speed.json")
    add_resume(p)
    p.add_argument("--smoke", action="store_true",
                   help="smoke test: proxy on 500 + 500 samples, 1 + 1 epochs; a 1-epoch supernet on 1000 images "
                        "unless --supernet-dir / --supernet-epochs (figures meaningless)")
    a = p.parse_args(argv)
    if a.candidates < 3:
        p.error("--candidates must be >= 3 for a rank correlation")
    if a.train_only and a.no_full_training:
        p.error("give --train-only or --no-full-training, not both")
    if a.crossfit < 0 or a.crossfit == 1:
        p.error("--crossfit must be 0 (off) or a number of folds >= 2")
    if a.proxy_val is not None and a.proxy_val < 0:
        p.error("--proxy-val must be >= 0")
    if a.screen_train and "proxy" in a.evaluators:
        p.error("--screen-train applies to the supernet evaluator only: give --evaluators supernet")
    if a.supernet_dir and a.supernet_epochs:
        p.error("give --supernet-dir or --supernet-epochs, not both")
    if a.smoke and not a.supernet_dir and not a.supernet_epochs:
        a.supernet_epochs, a.supernet_train_limit = 1, a.supernet_train_limit or 1000
    if a.smoke and Path(a.out).resolve() == (RESULTS / "search_speed.json").resolve():
        p.error("--smoke would overwrite the committed results: give --out")
    return a


def main(argv=None) -> int:
    Bench(parse_args(argv)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

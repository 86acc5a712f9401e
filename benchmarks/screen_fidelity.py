"""Screening fidelity: does a brief fine-tune predict a front member's fine-tuned accuracy better than the
supernet estimate does?

For every finalist of the given finished search runs (supernet evaluator), this benchmark puts three figures
side by side, all on the whole validation split at the member's search-time expected MACs:

* ``estimate``: the supernet estimate the final stage chose it on (the record's ``search_metrics``: inherited
  weights, BN re-estimated; re-scored on the whole split with ``--rescore``);
* ``screen_N``: `SupernetEvaluator.screen` (`Budget.screen`): one exit-phase epoch of fine-tuning on N training
  images, distilled from the largest subnet, BN re-estimated (one figure per ``--screen-train`` N);
* ``final``: the validation accuracy the final stage measured after its fine-tune (what the finalists are
  ranked on in the end), and its test accuracy.

It reports, over all finalists, Spearman and Kendall (`scipy.stats`) between each cheaper figure and the
final validation accuracy, and the mean gap (final minus figure), overall and per method (the run folder's
parent name: nachos, random, static). Each finalist is one unit, written as it finishes (``--resume``
continues; ``--runs`` may be split over processes and the parts joined with ``--merge``).

    .venv/bin/python benchmarks/screen_fidelity.py --runs runs/compare_f4/nachos/seed0 runs/compare_f4/random/seed0 \
        --threads 1 --out runs/bench/screen_fidelity_a.json
    .venv/bin/python benchmarks/screen_fidelity.py --merge runs/bench/screen_fidelity_{a,b}.json \
        --out benchmarks/results/screen_fidelity.json
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (RESULTS, ResultFile, add_out, add_resume, add_threads, correlation, eval_context,  # noqa: E402
                     pin_threads, positive_int, read_json, say, utc_now, write_json)

BENCH = "screen_fidelity"


def finalists(run: Path) -> List[Dict[str, Any]]:
    """The finalize lines of a run's archive (the first line of each finalist: before any move along its
    curve), with the search record each was chosen from."""
    from nachos_tf.results import Archive, split_records

    searched, finals = split_records(Archive(run / "archive.jsonl").records())
    by_id = {str(r.id): r for r in searched}
    seen, out = set(), []
    for f in finals:
        if f.id in seen or f.dropped or not f.val or f.id not in by_id:
            continue
        seen.add(f.id)
        out.append({"final": f, "record": by_id[f.id]})
    return out


def unit_key(run: Path, cid: str) -> str:
    return f"{run}|{cid}"


def measure_run(run: Path, sizes: Sequence[int], res: ResultFile, lr_scale: float = 1.0) -> None:
    """Screen every finalist of one run at each training size; one unit per finalist."""
    import nachos_tf as nt
    from nachos_tf.nas import Constraints, DataRef
    from nachos_tf.nas.evaluators.supernet import SupernetEvaluator
    from nachos_tf.nas.settings import Budget

    cfg = read_json(run / "config.json")
    if not cfg or (cfg.get("evaluator") or {}).get("name") != "supernet":
        raise SystemExit(f"{run}: not a run folder of the supernet evaluator")
    todo = [f for f in finalists(run) if unit_key(run, f["final"].id) not in res["units"]]
    if not todo:
        return
    if not (cfg.get("data") or {}).get("ref"):
        raise SystemExit(f"{run}: its data is not a named dataset")
    space = nt.SearchSpace.from_dict(cfg["space"])
    data = DataRef(**cfg["data"]["ref"]).load()                   # the run's own split
    budget = Budget.from_dict(cfg["budget"])
    budget = budget.with_(learning_rate=budget.learning_rate * lr_scale)   # the screen fine-tunes at a third of it
    target, search = Constraints.from_dict(cfg["constraints"]), Constraints.from_dict(cfg["search_constraints"])
    loss = nt.LossConfig.from_dict(cfg["loss"])
    ev_cfg = cfg["evaluator"]
    evs = {}
    for n in sizes:                                                # one evaluator (and teacher) per size
        ctx = eval_context(space, data, search, budget.with_(screen_train=int(n)), cfg["seed"],
                           run_dir=Path(res.path).parent / f"{BENCH}_work", loss=loss, target=target)
        evs[n] = SupernetEvaluator(supernet_dir=ev_cfg["supernet_dir"], bn_images=ev_cfg.get("bn_images", 2000),
                                   calibration=ev_cfg.get("calibration", "pareto"))
        evs[n].setup(ctx)
    for f in todo:
        fin, rec = f["final"], f["record"]
        est = dict(fin.search_metrics)
        rec = dataclasses.replace(rec, metrics=dataclasses.replace(rec.metrics, accuracy=float(est["accuracy"]),
                                                                   expected_macs=float(est["expected_macs"])))
        unit = {"run": str(run), "method": run.parent.name, "id": fin.id, "genome": fin.genome,
                "estimate": {"accuracy": float(est["accuracy"]), "expected_macs": float(est["expected_macs"])},
                "final": {"val_accuracy": fin.val["accuracy"], "val_expected_macs": fin.val["expected_macs"],
                          "test_accuracy": fin.test["accuracy"],
                          "held_at": (fin.extra.get("calibration") or {}).get("held_at")},
                "screen": {}}
        for n in sizes:
            t0 = time.time()
            s = evs[n].screen([rec])[0]
            unit["screen"][str(n)] = {"accuracy": s.metrics.accuracy, "expected_macs": s.metrics.expected_macs,
                                      "inherited_accuracy": s.extra["screened"]["inherited_accuracy"],
                                      "fine_tuned_kept": s.extra["screened"]["fine_tuned_kept"],
                                      "seconds": round(time.time() - t0, 1)}
        res["units"][unit_key(run, fin.id)] = unit
        say(f"{run.parent.name}/{run.name} {fin.id}: estimate {unit['estimate']['accuracy']:.4f}, screen "
            + ", ".join(f"{k}: {v['accuracy']:.4f} ({v['seconds']:.0f}s)" for k, v in unit["screen"].items())
            + f", final val {fin.val['accuracy']:.4f}")
        res["summary"] = summarise(res["units"])
        res.save()


def summarise(units: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Spearman / Kendall and mean gap of each cheaper figure against the final validation accuracy, over all
    units and per method."""
    rows = list(units.values())
    sizes = sorted({k for u in rows for k in u["screen"]}, key=int)

    def block(sel: List[Dict[str, Any]]) -> Dict[str, Any]:
        final = [u["final"]["val_accuracy"] for u in sel]
        figs = {"estimate": [u["estimate"]["accuracy"] for u in sel],
                "inherited": [u["screen"][sizes[0]]["inherited_accuracy"] if sizes else None for u in sel]}
        for n in sizes:
            figs[f"screen_{n}"] = [u["screen"].get(n, {}).get("accuracy") for u in sel]
        out = {"n": len(sel)}
        for name, xs in figs.items():
            pairs = [(x, y) for x, y in zip(xs, final) if x is not None]
            gap = [y - x for x, y in pairs]
            out[name] = dict(correlation([x for x, _ in pairs], [y for _, y in pairs]),
                             mean_gap=round(sum(gap) / len(gap), 5) if gap else None)
        return out

    return {"all": block(rows), **{m: block([u for u in rows if u["method"] == m])
                                   for m in sorted({u["method"] for u in rows})},
            "screen_train": [int(n) for n in sizes]}


def merge(parts: Sequence[Path], out: Path) -> None:
    docs = [read_json(p) for p in parts]
    if any(d is None or d.get("benchmark") != BENCH for d in docs):
        raise SystemExit("--merge: every part must be a screen_fidelity results file")
    same = [{k: v for k, v in d["settings"].items() if k != "runs"} for d in docs]
    if any(x != same[0] for x in same):
        raise SystemExit("--merge: the parts were screened with other settings (--screen-train, --lr-scale, --threads)")
    units: Dict[str, Any] = {}
    for d in docs:
        units.update(d["units"])
    doc = {"benchmark": BENCH, "complete": all(d.get("complete") for d in docs), "merged": utc_now(),
           "parts": [str(p) for p in parts], "settings": dict(docs[0]["settings"], runs=sorted(
               {r for d in docs for r in d["settings"]["runs"]})),
           "sessions": [s for d in docs for s in d.get("sessions", [])], "machine": docs[0].get("machine"),
           "versions": docs[0].get("versions"), "git": docs[-1].get("git"), "units": units,
           "summary": summarise(units)}
    write_json(out, doc)
    say(f"merged {len(units)} finalists into {out}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", type=Path, default=[], help="finished run folders (supernet evaluator)")
    p.add_argument("--screen-train", type=positive_int, nargs="+", default=[6000, 20000],
                   help="training images of the screening fine-tune, one figure each (6000 20000)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, help="join parts written by earlier calls")
    p.add_argument("--lr-scale", type=float, default=1.0,
                   help="scale the run's learning rate for the screening fine-tune (1: as `Budget.screen` does)")
    add_out(p, RESULTS / f"{BENCH}.json")
    add_resume(p)
    add_threads(p)
    a = p.parse_args(argv)
    if a.merge:
        return merge(a.merge, a.out)
    if not a.runs:
        p.error("--runs or --merge is required")
    for r in a.runs:
        if not (r / "archive.jsonl").is_file():
            p.error(f"{r} is not a run folder (no archive.jsonl)")
    pin_threads(a.threads)
    if not a.lr_scale > 0:
        p.error("--lr-scale must be > 0")
    settings = {"runs": [str(r) for r in a.runs], "screen_train": list(a.screen_train), "threads": a.threads,
                **({"lr_scale": a.lr_scale} if a.lr_scale != 1.0 else {})}
    res = ResultFile(a.out, BENCH, settings, a.resume)
    res.setdefault("units", {})
    for r in a.runs:
        measure_run(r, a.screen_train, res, a.lr_scale)
    res["summary"] = summarise(res["units"])
    res.finish()
    say(f"{len(res['units'])} finalists; written {a.out}")


if __name__ == "__main__":
    main()

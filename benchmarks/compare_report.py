"""Summary, Markdown table and plot of `benchmarks/compare.py` results (a results dict in, files out).

Kept apart from the runner so that a results JSON can be summarised and drawn again without TensorFlow:

    .venv/bin/python benchmarks/compare_report.py benchmarks/results/compare.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import read_json, write_json  # noqa: E402

METHODS = ("nachos", "random", "static", "handmade", "paper_choices", "nachos_proxy")
LABELS = {"nachos": "nachos (NSGA-II + supernet)", "random": "random search + supernet",
          "static": "static NAS (exits off) + supernet", "handmade": "handmade EENN",
          "paper_choices": "paper's choices (proxy)", "nachos_proxy": "nachos with the proxy"}
METRICS = ("hypervolume", "best_acc_at_0.5M", "int8_acc_at_0.5M", "best_acc_at_1.0M", "mac_saving_vs_static",
           "int8_best_acc", "candidates", "search_s", "wall_s")


def _metric(row: Dict[str, Any], key: str) -> Any:
    if key == "int8_acc_at_0.5M":
        v = row.get("int8_at_0.5M")
        return None if not v else v.get("accuracy")
    return row.get(key)


def _ratio(runs: Sequence[Dict[str, Any]], a: str, b: str) -> Dict[str, Any]:
    """Per seed hypervolume(a) / hypervolume(b), where both ran."""
    hv = {(r["method"], r["seed"]): r.get("hypervolume") for r in runs}
    seeds = sorted({s for (m, s) in hv if m == a} & {s for (m, s) in hv if m == b})
    vals = [None if not hv[(b, s)] else hv[(a, s)] / hv[(b, s)] for s in seeds]
    known = [v for v in vals if v is not None]
    total_a, total_b = sum(hv[(a, s)] or 0 for s in seeds), sum(hv[(b, s)] or 0 for s in seeds)
    return {"seeds": seeds, "per_seed": [None if v is None else round(v, 4) for v in vals],
            "mean_of_ratios": round(float(np.mean(known)), 4) if known else None,
            "ratio_of_means": round(total_a / total_b, 4) if total_b else None}


def summarise(doc: Dict[str, Any]) -> Dict[str, Any]:
    """Per method each metric as a list over seeds; hypervolume ratios; the best int8 point at <= 0.5M."""
    runs = doc.get("runs", [])
    methods: Dict[str, Dict[str, List[Any]]] = {}
    for m in METHODS:
        rows = sorted((r for r in runs if r["method"] == m), key=lambda r: r["seed"])
        if rows:
            methods[m] = {k: [_metric(r, k) for r in rows] for k in METRICS}
            methods[m]["seeds"] = [r["seed"] for r in rows]
    best = None
    for r in runs:
        v = r.get("int8_at_0.5M")
        if v and v.get("expected_macs") is not None and v["expected_macs"] <= 0.5e6 and (
                best is None or v["accuracy"] > best["accuracy"]):
            best = {"method": r["method"], "seed": r["seed"], **{k: v.get(k) for k in
                                                                   ("solution", "accuracy", "expected_macs")}}
    sn = doc.get("supernets") or {}
    return {"methods": methods, "hv_nachos_vs_random": _ratio(runs, "nachos", "random"),
            "hv_nachos_vs_static": _ratio(runs, "nachos", "static"),
            "hv_nachos_vs_nachos_proxy": _ratio(runs, "nachos", "nachos_proxy"),
            "best_int8_at_0.5M": best,
            "supernet_seconds": {s: v.get("seconds") for s, v in sorted(sn.items())}}


def _cell(values: Sequence[Optional[float]], scale: float = 1.0, digits: int = 2, na: bool = False) -> str:
    """mean ± std of the known values, "(k/n)" when some are missing; "–" when `na` (not applicable) and none."""
    v = [x * scale for x in values if x is not None]
    missing = sum(1 for x in values if x is None)
    if not v:
        return "–" if not values or na else f"none (0/{len(values)})"
    s = f"{np.mean(v):.{digits}f}" + (f" ± {np.std(v):.{digits}f}" if len(v) > 1 else "")
    return s + (f" ({len(v)}/{len(values)})" if missing else "")


def _seed_cell(row: Optional[Dict[str, Any]]) -> str:
    """One run of the per-seed table: test hypervolume / candidates / admissible finalists / best acc @ 0.5M."""
    if row is None:
        return "–"
    hv, acc = row.get("hypervolume"), row.get("best_acc_at_0.5M")
    return " / ".join([f"{hv:.4f}" if hv is not None else "none", f"{row.get('candidates', 0):,}",
                       str(len(row.get("solutions") or [])), f"{100 * acc:.2f}" if acc is not None else "none"])


def per_seed_table(doc: Dict[str, Any]) -> List[str]:
    """Markdown lines: one row per seed, one column per method that ran (each run's own figures, no means)."""
    runs = {(r["method"], r["seed"]): r for r in doc.get("runs", [])}
    methods = [m for m in METHODS if any(k[0] == m for k in runs)]
    seeds = sorted({k[1] for k in runs})
    lines = ["| seed | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
    lines += [f"| {s} | " + " | ".join(_seed_cell(runs.get((m, s))) for m in methods) + " |" for s in seeds]
    return lines


def write_table(doc: Dict[str, Any], path: Path) -> str:
    """The Markdown table (mean ± std over seeds), the headline ratios and the per-seed table; written to `path`."""
    s = doc.get("summary") or summarise(doc)
    lines = ["| method | hypervolume (test) | best acc @ ≤0.5M (%) | its int8 TFLM acc (%) | best acc @ ≤1.0M (%) "
             "| MAC saving vs static (%) | int8 TFLM acc of best (%) | candidates | search (s) | wall (s) |",
             "|" + "---|" * 10]
    for m, v in s["methods"].items():
        lines.append(f"| {m} | {_cell(v['hypervolume'], digits=4)} | {_cell(v['best_acc_at_0.5M'], 100)} | "
                     f"{_cell(v['int8_acc_at_0.5M'], 100)} | {_cell(v['best_acc_at_1.0M'], 100)} | "
                     f"{_cell(v['mac_saving_vs_static'], 100, 1)} | {_cell(v['int8_best_acc'], 100)} | "
                     f"{_cell(v['candidates'], digits=1)} | {_cell(v['search_s'], digits=0, na=m == 'handmade')} | "
                     f"{_cell(v['wall_s'], digits=0)} |")
    notes = [f"mean ± std over seeds {doc.get('seeds')}; (k/n): only k of n seeds had a value (no admissible "
             "solution, or none within that MAC bound, otherwise)."]
    for key, what in (("hv_nachos_vs_random", "random search"), ("hv_nachos_vs_static", "static NAS"),
                      ("hv_nachos_vs_nachos_proxy", "nachos with the proxy")):
        r = s.get(key) or {}
        if r.get("seeds"):
            notes.append(f"hypervolume nachos / {what}: {r['per_seed']} per seed {r['seeds']}, mean of ratios "
                         f"{r['mean_of_ratios']}, ratio of means {r['ratio_of_means']}.")
    default = ((doc.get("settings") or {}).get("budget") or {}).get("accuracy_slack")   # rows before the field
    slack = {m: sorted({r.get("accuracy_slack", default) for r in doc.get("runs", []) if r["method"] == m
                        and r["method"] != "handmade"} - {None}) for m in METHODS}
    if len({x for v in slack.values() for x in v}) > 1:
        notes.append("search-time accuracy slack below the floor (Budget.accuracy_slack): "
                     + ", ".join(f"{m} {'/'.join(f'{x:g}' for x in v)}" for m, v in slack.items() if v) + ".")
    if s.get("supernet_seconds"):
        notes.append("supernet (one per seed, shared by nachos / random / static): "
                     + ", ".join(f"seed {k}: {v} s" for k, v in s["supernet_seconds"].items()) + ".")
    for rep in doc.get("replaced") or []:
        notes.append(f"seed {rep['seed']}: its own supernet {rep['supernet']} ({rep['seconds']} s) in place of "
                     f"{rep['previous_supernet']} ({rep['previous_seconds']} s); re-run with it: "
                     f"{', '.join(rep['rows_replaced'])}; kept, their time limit set by the earlier cost: "
                     f"{', '.join(rep['rows_kept_with_previous_cost']) or 'none'}"
                     + "".join(f"; {m} later given this cost (time limit {v['time_limit_s']} s)"
                               for m, v in (rep.get("rows_rerun_with_its_cost") or {}).items()) + ".")
    if s.get("best_int8_at_0.5M"):
        b = s["best_int8_at_0.5M"]
        notes.append(f"best int8 TFLM test accuracy at ≤ 0.5M expected MACs: {100 * b['accuracy']:.2f} % "
                     f"({b['method']}, seed {b['seed']}, {b['solution']}, {b['expected_macs']:,.0f} MACs).")
    if not doc.get("complete"):
        notes.append("**incomplete**: not every (method, seed) run has finished.")
    text = "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
    text += ("\nPer seed, each run: test hypervolume / candidates evaluated / admissible finalists / best test "
             "acc @ ≤0.5M expected MACs (%):\n\n" + "\n".join(per_seed_table(doc)) + "\n")
    Path(path).write_text(text)
    return text


def plot(doc: Dict[str, Any], path: Path) -> None:
    """Left: test accuracy vs test expected MACs of every admissible solution (all seeds); right: the
    hypervolume of every method and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cons = (doc.get("settings") or {}).get("constraints") or {}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    markers = dict(zip(METHODS, "osD^vP"))
    for m in METHODS:
        pts = [(s["test"]["expected_macs"], s["test"]["accuracy"]) for r in doc.get("runs", []) if r["method"] == m
               for s in r["solutions"]]
        if pts:
            x, y = zip(*sorted(pts))
            ax.scatter(np.array(x) / 1e6, np.array(y) * 100, marker=markers[m], label=LABELS[m], alpha=0.8)
    if cons.get("max_macs"):
        ax.axvline(cons["max_macs"] / 1e6, color="grey", ls="--", lw=1)
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    if cons.get("min_accuracy"):
        ax.axhline(cons["min_accuracy"] * 100, color="grey", ls="--", lw=1)
    ax.set_xlabel("expected MACs per inference (M), test")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("finalized admissible solutions, all seeds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    names = [m for m in METHODS if any(r["method"] == m for r in doc.get("runs", []))]
    for i, m in enumerate(names):
        hv = [r.get("hypervolume") or 0.0 for r in doc.get("runs", []) if r["method"] == m]
        bx.bar(i, float(np.mean(hv)), color="lightgrey", edgecolor="black")
        bx.scatter([i] * len(hv), hv, color="black", s=12, zorder=3)
    bx.set_xticks(range(len(names)))
    bx.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    bx.set_ylabel("hypervolume (test, constraint box)")
    bx.set_title("hypervolume per method (bar: mean; dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="a compare.json")
    a = p.parse_args(argv)
    doc = read_json(a.results)
    if doc is None:
        raise SystemExit(f"{a.results} does not exist")
    doc["summary"] = summarise(doc)
    write_json(a.results, doc)
    print(write_table(doc, a.results.with_suffix(".md")))
    plot(doc, a.results.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

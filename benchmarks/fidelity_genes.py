"""Diagnosis: which genes decide stand-alone accuracy, and which of them the supernet estimates miss (issue 12).

Reads committed `benchmarks/search_speed.py` results only (nothing is trained or evaluated): the reference
(stand-alone training of the 20 benchmark genomes; the mean of the two trainings when the file has two) and
one or more files of supernet estimates on the same genomes. For every backbone gene (as a number: booleans
0/1, activations 1 for hard-swish) and a few aggregates (sums over the stages, early exits enabled, total
MACs, parameters) it reports the Spearman correlation with the reference, with each estimate, and with each
estimate's error (estimate minus reference), with two-sided p-values and a Bonferroni flag over the features
tested. Then it splits the genomes by the feature that ranks the reference best and reports, per group, the
mean reference and estimate and each estimate's Spearman with the reference inside the group. For every
feature that survives the correction, ``group_analysis`` says how much of the reference that feature's groups
explain (their means alone), how well the two trainings agree inside each group, the between- and within-group
spread of the reference and of each estimate, and what each estimate would reach if an oracle fixed its group
levels (the bound of a few-shot split of the supernet by that feature).

With 20 genomes a single |rho| near 0.45 is within what chance gives among this many features; the flag says
which correlations survive the correction.

    .venv/bin/python benchmarks/fidelity_genes.py --out benchmarks/results/fidelity_genes.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import RESULTS, add_out, correlation, read_json, say, two_training_mean, utc_now, write_json  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_ESTIMATES = ("shipped=search_speed_refnoise10.json", "progressive_5=search_speed_ref10_ps.json",
                     "progressive_7=search_speed_ref10_ps_split.json",
                     "progressive_long=search_speed_ref10_ps_long.json",
                     "progressive_5_kt=search_speed_ref10_ps_kt.json")
ALPHA = 0.05


def _number(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        return float(v == "hard_swish")
    return float(v)


def features(doc: Mapping[str, Any], ids: Sequence[str]) -> Dict[str, List[float]]:
    """Per feature, its value for each genome (in `ids` order): every backbone gene, then aggregates."""
    genomes = [doc["genomes"][i]["genome"] for i in ids]
    full = doc["full_training"]["results"]
    out: Dict[str, List[float]] = {}
    for name in sorted(genomes[0]["backbone"]):
        out[name] = [_number(g["backbone"][name]) for g in genomes]
    stages = sorted({n.split("_", 1)[0] for n in genomes[0]["backbone"] if n[0] == "s" and n[1:2].isdigit()})
    for part in ("depth", "kernel", "expand", "se", "act"):
        key = f"sum_{part}" if part != "act" else "hard_swish_stages"
        out[key] = [sum(_number(g["backbone"][f"{s}_{part}"]) for s in stages) for g in genomes]
    out["early_exits"] = [float(sum(bool(e["enabled"]) for e in g["exits"])) for g in genomes]
    out["total_macs"] = [float(full[i]["total_macs"]) for i in ids]
    out["params"] = [float(full[i]["params"]) for i in ids]
    return {k: v for k, v in out.items() if np.ptp(v) > 0}


def estimates(paths: Sequence[Tuple[str, Path]], ids: Sequence[str]) -> Dict[str, Dict[str, List[float]]]:
    """Per estimate file: the search objective (thresholded val accuracy) and the final-exit val accuracy."""
    out = {}
    for name, path in paths:
        doc = read_json(path)
        if doc is None:
            raise SystemExit(f"{path}: missing or not JSON")
        rows = {r["id"]: r for r in doc["evaluators"]["supernet"]["rows"]}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise SystemExit(f"{path}: no estimate for genomes {missing[:3]}")
        out[name] = {"thresholded": [float(rows[i]["accuracy"]) for i in ids],
                     "final_exit": [float(rows[i]["final_exit_accuracy"]) for i in ids]}
    return out


def _pair(spec: str) -> Tuple[str, Path]:
    name, _, path = spec.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {spec!r}")
    p = Path(path)
    return name, p if p.is_absolute() or p.exists() else RESULTS / p


def diagnose(ref: Mapping[str, float], feats: Mapping[str, List[float]], ests: Mapping[str, Mapping[str, List[float]]],
             ids: Sequence[str], group_by: Optional[str] = None,
             trainings: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> Dict[str, Any]:
    """The correlation table, the split by the strongest (or the given) feature, and `group_analysis` of every
    feature that survives the Bonferroni correction (`trainings`: the two trainings, in `ids` order)."""
    r = [ref[i] for i in ids]
    table = {}
    for name, v in feats.items():
        row = {"reference": correlation(v, r)}
        for e, vals in ests.items():
            est = vals["thresholded"]
            row[e] = {"estimate": correlation(v, est)["spearman"],
                      "error": correlation(v, [a - b for a, b in zip(est, r)])["spearman"]}
        table[name] = row
    bonferroni = ALPHA / len(table)
    for row in table.values():
        p = row["reference"]["spearman_p"]
        row["reference"]["significant_bonferroni"] = p is not None and p < bonferroni
    order = sorted(table, key=lambda k: -abs(table[k]["reference"]["spearman"] or 0.0))
    key = group_by or order[0]
    if key not in feats:
        raise SystemExit(f"--group-by {key!r}: no such varying feature ({', '.join(sorted(feats))})")
    groups = {}
    for value in sorted(set(feats[key])):
        idx = [j for j, v in enumerate(feats[key]) if v == value]
        g = {"n": len(idx), "reference_mean": round(float(np.mean([r[j] for j in idx])), 4)}
        for e, vals in ests.items():
            est = [vals["thresholded"][j] for j in idx]
            g[e] = {"estimate_mean": round(float(np.mean(est)), 4),
                    "spearman_within": correlation(est, [r[j] for j in idx])["spearman"]}
        groups[f"{value:g}"] = g
    overall = {e: correlation(vals["thresholded"], r)["spearman"] for e, vals in ests.items()}
    top = order[:3]
    confounding = {f"{a} ~ {b}": correlation(feats[a], feats[b])["spearman"] for i, a in enumerate(top) for b in top[i + 1:]}
    partial = {a: {b: partial_spearman(feats[a], r, feats[b]) for b in top if b != a} for a in top}
    strong = [k for k in order if table[k]["reference"]["significant_bonferroni"]] or [key]
    analysis = {k: group_analysis(feats[k], r, {e: v["thresholded"] for e, v in ests.items()}, trainings)
                for k in strong}
    return {"features": table, "by_reference_strength": order, "bonferroni_p": round(bonferroni, 5),
            "top_features_with_each_other": confounding, "top_partial_spearman": partial,
            "split_by": key, "groups": groups, "estimate_vs_reference": overall, "group_analysis": analysis}


def _group_means(values: Sequence[float], labels: Sequence[float]) -> np.ndarray:
    """Each item's group mean (groups: equal labels)."""
    v, lab = np.asarray(values, float), np.asarray(labels)
    return np.array([v[lab == x].mean() for x in lab])


def _spread(values: Sequence[float], labels: Sequence[float]) -> Dict[str, float]:
    """Standard deviation of the group means (between) and pooled standard deviation inside the groups."""
    v, lab = np.asarray(values, float), np.asarray(labels)
    means = [v[lab == x].mean() for x in sorted(set(lab))]
    dev = v - _group_means(v, lab)
    dof = max(1, len(v) - len(means))
    between, within = float(np.std(means)), float(np.sqrt((dev ** 2).sum() / dof))
    return {"between_sd": round(between, 4), "within_sd": round(within, 4),
            "ratio": None if within == 0 else round(between / within, 3)}


def group_analysis(labels: Sequence[float], ref: Sequence[float], ests: Mapping[str, Sequence[float]],
                   trainings: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> Dict[str, Any]:
    """How much of the reference one feature explains, and what an estimate would need to match it.

    * ``group_means_vs_reference``: Spearman of the reference's own group means (an oracle knowing only the
      feature's effect; ties inside each group) with the reference.
    * ``trainings_within``: per group (>= 4 genomes), how the two trainings rank its genomes alike (how much
      of the differences inside the group is reproducible at all), next to their overall agreement.
    * ``spread``: between-group and pooled within-group standard deviations of the reference and of each
      estimate (an estimate whose within-group spread dwarfs its between-group spread ranks by other genes).
    * per estimate ``group_shift_vs_reference``: Spearman with the reference after an oracle moves each group
      of the estimate to the reference's group mean (keeping the estimate's order inside the groups): what
      fixing the feature's effect alone (a few-shot split of the supernet by it, say) could reach at best.
    """
    lab = np.asarray(labels)
    r = np.asarray(ref, float)
    out: Dict[str, Any] = {"groups": {f"{x:g}": int((lab == x).sum()) for x in sorted(set(lab))},
                           "group_means_vs_reference": correlation(_group_means(r, lab), r)["spearman"],
                           "spread": {"reference": _spread(r, lab)}}
    if trainings is not None:
        a, b = (np.asarray(t, float) for t in trainings)
        out["trainings_overall"] = correlation(a, b)["spearman"]
        out["trainings_within"] = {f"{x:g}": correlation(a[lab == x], b[lab == x])["spearman"]
                                   for x in sorted(set(lab)) if (lab == x).sum() >= 4}
    shift = {}
    for e, vals in ests.items():
        v = np.asarray(vals, float)
        out["spread"][e] = _spread(v, lab)
        shift[e] = correlation(v - _group_means(v, lab) + _group_means(r, lab), r)["spearman"]
    out["group_shift_vs_reference"] = shift
    return out


def partial_spearman(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> Optional[float]:
    """Spearman of x and y with z held fixed: Pearson of the ranks of x and y after removing, from each, the
    least-squares line on the ranks of z."""
    from scipy.stats import rankdata

    rx, ry, rz = (rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    ex = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    ey = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    den = float(np.sqrt((ex ** 2).sum() * (ey ** 2).sum()))
    return None if den == 0 else round(float((ex * ey).sum() / den), 4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, default=RESULTS / "search_speed_refnoise10.json",
                   help="a search_speed.py result with full trainings (two: their mean is the reference)")
    p.add_argument("--estimates", nargs="+", type=_pair, default=[_pair(s) for s in DEFAULT_ESTIMATES],
                   metavar="NAME=PATH", help="search_speed.py results with supernet estimates of the same genomes")
    p.add_argument("--group-by", default=None, help="feature to split by (default: the one ranking the reference best)")
    add_out(p, RESULTS / "fidelity_genes.json")
    a = p.parse_args(argv)
    doc = read_json(a.reference)
    if doc is None or "full_training" not in doc:
        raise SystemExit(f"{a.reference}: not a search_speed.py result with full training")
    ref = two_training_mean(doc)
    what = "mean of the two stand-alone trainings"
    twice = bool(ref)
    if not twice:
        ref = {g: r["test"]["accuracy"] for g, r in doc["full_training"]["results"].items()}
        what = "stand-alone training"
    ids = [i for i in doc["genomes"] if i in ref]
    trainings = tuple([doc[k]["results"][i]["test"]["accuracy"] for i in ids]
                      for k in ("full_training", "full_training_repeat")) if twice else None
    result = diagnose(ref, features(doc, ids), estimates(a.estimates, ids), ids, a.group_by, trainings)
    out = {"benchmark": "fidelity_genes", "finished": utc_now(), "complete": True,
           "reference": {"file": str(a.reference.name), "what": f"thresholded test accuracy, {what}", "n": len(ids)},
           "estimates": {n: str(Path(pth).name) for n, pth in a.estimates},
           "estimate_what": "thresholded val accuracy of the supernet evaluator (the search objective)", **result}
    write_json(a.out, out)
    for k in result["by_reference_strength"][:6]:
        row = result["features"][k]
        say(f"{k:18s} vs reference {row['reference']['spearman']:+.2f} (p {row['reference']['spearman_p']:.4f})  "
            + "  ".join(f"{e} {row[e]['estimate']:+.2f}" for e in result["estimate_vs_reference"]))
    say(f"top features with each other: {result['top_features_with_each_other']}")
    say(f"partial Spearman with the reference: {result['top_partial_spearman']}")
    for v, g in result["groups"].items():
        say(f"{result['split_by']} = {v}: n {g['n']}, reference {g['reference_mean']:.4f}; "
            + "; ".join(f"{e} {g[e]['estimate_mean']:.4f} (within {g[e]['spearman_within']})"
                        for e in result["estimate_vs_reference"]))
    for k, g in result["group_analysis"].items():
        say(f"{k}: reference group means alone {g['group_means_vs_reference']:+.2f}; two trainings within groups "
            f"{g.get('trainings_within')}; oracle group shift "
            + "  ".join(f"{e} {v:+.2f}" for e, v in g["group_shift_vs_reference"].items()))
    say(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Explanations in words: which constraint a candidate misses and by how much, and, when a search finds no
admissible solution, the closest candidates and what to relax."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from ..macs import human as _human

__all__ = ["describe_violations", "explain_no_admissible"]


def describe_violations(metrics: Mapping[str, Any], g: Mapping[str, Optional[float]], c,
                        names: Sequence[str]) -> str:
    """One phrase per violated constraint in `names`: the value, the bound and by how much it misses."""
    parts = []
    for n in names:
        if n == "accuracy":
            parts.append(f"accuracy {metrics['accuracy']:.4f} < {c.min_accuracy:g} "
                         f"(short by {c.min_accuracy - metrics['accuracy']:.4f})")
        elif n == "macs":
            parts.append(f"expected MACs {_human(metrics['expected_macs'])} > {_human(c.max_macs)} "
                         f"(over by {100 * g['macs']:.1f}%)")
        elif n == "flash":
            parts.append(f"flash {metrics['flash_bytes']} B > {c.max_flash} B (over by {100 * g['flash']:.1f}%)")
        elif n == "ram":
            parts.append(f"RAM {metrics['arena_bytes']} B > {c.max_ram} B (over by {100 * g['ram']:.1f}%)")
    return "; ".join(parts)


def explain_no_admissible(records: Sequence[Mapping[str, Any]], c,
                          target=None, k: int = 3) -> str:
    """Which constraint failed by how much for the closest candidates, and what to relax.

    `c` are the constraints the records were judged by (the search-time ones), `target` the user's.
    """
    ok = [r for r in records if not r.get("error") and not r.get("pruned")]
    slack = "" if target is None or target.min_accuracy == c.min_accuracy else (
        f" (your floor {target.min_accuracy:g}, lowered during the search by the budget's accuracy_slack)")
    lines = [f"no admissible solution: none of the {len(records)} evaluated candidates meets every constraint "
             f"(accuracy >= {c.min_accuracy:.4g}{slack}, expected MACs <= {_human(c.max_macs)}"
             + (f", flash <= {c.max_flash} B" if c.max_flash else "")
             + (f", RAM <= {c.max_ram} B" if c.max_ram else "") + ")."]
    if not ok:
        pruned = [r for r in records if r.get("pruned")]
        if pruned:
            low = min(r["metrics"]["expected_macs"] for r in pruned)
            lines.append(f"every trained candidate failed or was over budget at its first exit; the cheapest "
                         f"first exit found costs {_human(low)}: raise max MACs to >= {_human(math.ceil(low))}, "
                         "or search longer.")
        errs = sorted({str(r.get("error")) for r in records if r.get("error")})[:3]
        if errs:
            lines.append("evaluation errors: " + " | ".join(errs))
        return "\n".join(lines)
    viol = lambda r: sum(max(0.0, v) for v in r["constraints"].values() if v is not None)  # noqa: E731
    closest = sorted(ok, key=lambda r: (viol(r), r["metrics"]["error"], str(r["id"])))[:k]
    lines.append("closest candidates (validation, at their calibrated thresholds):")
    for r in closest:
        failed = [n for n, v in r["constraints"].items() if v is not None and v > 0]
        lines.append(f"  {r['id']}: " + describe_violations(r["metrics"], r["constraints"], c, failed))
    tips = []
    within_macs = [r for r in ok if r["constraints"]["macs"] <= 0]
    if within_macs:
        best = max(r["metrics"]["accuracy"] for r in within_macs)
        best += (target.min_accuracy - c.min_accuracy) if target is not None else 0.0
        tips.append(f"lower min accuracy to <= {math.floor(best * 1000) / 1000:.3f} (best accuracy found within "
                    f"the MAC budget{', plus the slack' if slack else ''})")
    within_acc = [r for r in ok if r["constraints"]["accuracy"] <= 0]
    if within_acc:
        cheapest = min(r["metrics"]["expected_macs"] for r in within_acc)
        tips.append(f"raise max MACs to >= {_human(math.ceil(cheapest))} (cheapest candidate reaching the accuracy)")
    if not tips:
        r = closest[0]["metrics"]
        tips.append(f"relax both: e.g. min accuracy <= {math.floor(r['accuracy'] * 1000) / 1000:.3f} and max MACs "
                    f">= {_human(math.ceil(r['expected_macs']))}")
    for n, bound in (("flash", c.max_flash), ("ram", c.max_ram)):
        if bound and all((r["constraints"].get(n) or 0) > 0 for r in ok):
            tips.append(f"raise max {n} (no candidate fits {bound} B)")
    tips.append("or search longer (a larger --budget, more --generations / --population)")
    lines.append("to relax: " + "; ".join(tips) + ".")
    return "\n".join(lines)

"""Joining `benchmarks/compare.py` result files of runs made in parallel (one process per seed or method) into
one result file with its table and plot (``compare.py --merge``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import read_json, utc_now, write_json  # noqa: E402
from compare_report import METHODS, plot, summarise, write_table  # noqa: E402

from nachos_tf.nas import Budget  # noqa: E402


#: Budget fields a ``--static-from`` / ``--nachos-from`` part may set otherwise than the other parts: a network
#: without early exits has one operating point, which no tolerance moves; NSGA-II's own population and mutation
#: rate are the method's settings (random search draws the same candidates whatever they are).
LOOSE_BUDGET = {"static": ("accuracy_tolerance",), "nachos": ("population", "mutation", "mutation_rate")}


def merge(parts: Sequence[Path], out: Path, static_from: Sequence[Path] = (),
          nachos_from: Sequence[Path] = ()) -> Dict[str, Any]:
    """Join result files of runs made in parallel (one process per seed) into one `out` + table + plot.
    Refuses parts written with other settings, and (method, seed) rows present twice. The `static_from`
    parts give their ``static`` rows only, the `nachos_from` parts their ``nachos`` rows only; each may
    differ from the others in the budget fields `LOOSE_BUDGET` names for its method (those of the
    `nachos_from` parts, which must agree among themselves, are written as ``settings.nachos_budget``)."""
    extra = [(p, "static") for p in static_from] + [(p, "nachos") for p in nachos_from]
    files = list(parts) + [p for p, _ in extra]
    only = [None] * len(parts) + [m for _, m in extra]
    docs = [read_json(p) for p in files]
    first = docs[0]

    def comparable(settings: Dict[str, Any], loose: Sequence[str] = ()) -> Dict[str, Any]:
        """The settings without the per-seed supernet folders (parts of different seeds name their own)."""
        sn = {k: v for k, v in (settings.get("supernet") or {}).items() if k != "from"}
        budget = {k: v for k, v in (settings.get("budget") or {}).items() if k not in loose}
        rest = {k: v for k, v in settings.items()                    # notes on where a part's runs came from
                if k not in ("refinalized_from", "finalists_note")}
        return dict(rest, supernet=sn, budget=budget)

    given: Dict[str, str] = {}
    nachos_budget: Dict[str, Any] = {}
    defaults = Budget()                                           # a part lacks the defaults it used
    for p, d, method in zip(files, docs, only):
        loose = LOOSE_BUDGET.get(method, ())
        if comparable(d.get("settings") or {}, loose) != comparable(first.get("settings") or {}, loose):
            raise SystemExit(f"--merge: {p} was written with other settings than {parts[0]}")
        if method:
            d["runs"] = [r for r in d.get("runs", []) if r["method"] == method]
        if method == "nachos":
            b = (d.get("settings") or {}).get("budget") or {}
            mine = {k: b.get(k, getattr(defaults, k)) for k in loose}
            if nachos_budget.setdefault("fields", mine) != mine:
                raise SystemExit(f"--merge: the --nachos-from parts differ in {', '.join(loose)} ({p})")
        for seed, folder in ((d["settings"].get("supernet") or {}).get("from") or {}).items():
            if given.setdefault(seed, folder) != folder:
                raise SystemExit(f"--merge: seed {seed}'s supernet is {folder} in {p}, {given[seed]} elsewhere")
    runs: List[Dict[str, Any]] = []
    seen = set()
    for p, d in zip(files, docs):
        for r in d.get("runs", []):
            if (r["method"], r["seed"]) in seen:
                raise SystemExit(f"--merge: {(r['method'], r['seed'])} appears twice (again in {p})")
            seen.add((r["method"], r["seed"]))
            runs.append(r)
    seeds = sorted({s for d in docs for s in d.get("seeds", [])})
    doc = {k: first.get(k) for k in ("benchmark", "issue", "versions", "machine", "settings")}
    doc["settings"] = dict(doc["settings"], supernet=dict(doc["settings"].get("supernet") or {}, **{"from": given}))
    if nachos_budget:
        doc["settings"]["nachos_budget"] = nachos_budget["fields"]
    doc.update(seeds=seeds, runs=runs, supernets={k: v for d in docs for k, v in (d.get("supernets") or {}).items()},
               parts=[{"file": str(p), "sessions": d.get("sessions"), "complete": d.get("complete"),
                       "last_saved": d.get("last_saved"), "static_rows_only": method == "static",
                       **({"nachos_rows_only": True} if method == "nachos" else {})}
                      for p, d, method in zip(files, docs, only)],
               merged=utc_now(), complete=all((m, s) in seen for m in METHODS for s in seeds))
    doc["summary"] = summarise(doc)
    write_json(out, doc)
    write_table(doc, out.with_suffix(".md"))
    plot(doc, out.with_suffix(".png"))
    return doc

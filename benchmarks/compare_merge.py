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
          nachos_from: Sequence[Path] = (), replace: Sequence[Path] = ()) -> Dict[str, Any]:
    """Join result files of runs made in parallel (one process per seed) into one `out` + table + plot.
    Refuses parts written with other settings, and (method, seed) rows present twice. The `static_from`
    parts give their ``static`` rows only, the `nachos_from` parts their ``nachos`` rows only; each may
    differ from the others in the budget fields `LOOSE_BUDGET` names for its method (those of the
    `nachos_from` parts, which must agree among themselves, are written as ``settings.nachos_budget``).
    The `replace` parts' rows then take the place of the joined rows of the same (method, seed)
    (`replace_rows`)."""
    extra = [(p, "static") for p in static_from] + [(p, "nachos") for p in nachos_from]
    files = list(parts) + [p for p, _ in extra]
    only = [None] * len(parts) + [m for _, m in extra]
    docs = [read_json(p) for p in files]
    first = docs[0]

    given: Dict[str, str] = {}
    nachos_budget: Dict[str, Any] = {}
    defaults = Budget()                                           # a part lacks the defaults it used
    for p, d, method in zip(files, docs, only):
        loose = LOOSE_BUDGET.get(method, ())
        if _comparable(d.get("settings") or {}, loose) != _comparable(first.get("settings") or {}, loose):
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
    notes: List[Dict[str, Any]] = []                      # a comparison merged again keeps its notes, once each
    for n in (n for d in docs for n in (d.get("replaced") or [])):
        notes += [] if n in notes else [n]
    if notes:
        doc["replaced"] = notes
    if replace:
        doc = replace_rows(doc, replace)
    doc["summary"] = summarise(doc)
    write_json(out, doc)
    write_table(doc, out.with_suffix(".md"))
    plot(doc, out.with_suffix(".png"))
    return doc


def _comparable(settings: Dict[str, Any], loose: Sequence[str] = (),
                notes: Sequence[str] = ("refinalized_from", "finalists_note")) -> Dict[str, Any]:
    """The settings without the per-seed supernet folders (parts of different seeds name their own), the budget
    fields `loose` and the `notes` on where a part's runs came from."""
    sn = {k: v for k, v in (settings.get("supernet") or {}).items() if k != "from"}
    budget = {k: v for k, v in (settings.get("budget") or {}).items() if k not in loose}
    rest = {k: v for k, v in settings.items() if k not in notes}
    return dict(rest, supernet=sn, budget=budget)


def _catch_up(note: Dict[str, Any], new_rows: Dict[Any, Dict[str, Any]]) -> Dict[str, Any]:
    """A seed's replacement note once rows it kept with the earlier supernet's cost are re-run too (e.g. the
    proxy rows cut to the seed's own cost): those move from ``rows_kept_with_previous_cost`` to
    ``rows_rerun_with_its_cost``, each with the time limit it ran with."""
    later = {m: r for (m, s), r in new_rows.items() if s == note["seed"]
             and m in (note.get("rows_kept_with_previous_cost") or [])}
    if not later:
        return note
    done = dict(note.get("rows_rerun_with_its_cost") or {})
    done.update({m: {"time_limit_s": r.get("time_limit_s"), "search_s": r.get("search_s")}
                 for m, r in sorted(later.items())})
    return dict(note, rows_kept_with_previous_cost=[m for m in note["rows_kept_with_previous_cost"]
                                                    if m not in later], rows_rerun_with_its_cost=done)


def replace_rows(doc: Dict[str, Any], parts: Sequence[Path]) -> Dict[str, Any]:
    """`doc` (a joined comparison) with the rows of `parts` in place of its rows of the same (method, seed):
    runs made again, e.g. a seed's supernet methods with a supernet trained for that seed. A part must have
    the comparison's settings (its seeds' supernet folders aside). Where the parts bring a seed's supernet from
    another folder (all of them the same one), every supernet row of that seed (evaluator "supernet") must be
    among their rows (refused otherwise: they would no longer share one supernet); rows of other evaluators
    made with the earlier supernet's cost (the proxy methods' time limit) are kept, and ``replaced`` says which
    and with what cost they ran; when such rows are replaced later (re-run, or cut to the seed's own cost), the
    note moves them to ``rows_rerun_with_its_cost``. Refuses rows present twice among the parts, and rows the
    comparison does not have."""
    doc = dict(doc, runs=list(doc["runs"]), supernets=dict(doc.get("supernets") or {}))
    settings = doc["settings"]
    given = dict((settings.get("supernet") or {}).get("from") or {})
    key = lambda r: (r["method"], r["seed"])  # noqa: E731
    index = {key(r): i for i, r in enumerate(doc["runs"])}
    new_rows: Dict[Any, Dict[str, Any]] = {}
    moved: Dict[str, Dict[str, Any]] = {}                 # seed -> {"folder", "record", "file"}
    for p in parts:
        d = read_json(p)
        if d is None or not d.get("runs"):
            raise SystemExit(f"--replace: {p} is not a comparison result with runs")
        ignored = ("refinalized_from", "finalists_note", "nachos_budget")
        if _comparable(d.get("settings") or {}, notes=ignored) != _comparable(settings, notes=ignored):
            raise SystemExit(f"--replace: {p} was written with other settings than the comparison")
        for r in d["runs"]:
            if key(r) in new_rows:
                raise SystemExit(f"--replace: {key(r)} appears twice (again in {p})")
            if key(r) not in index:
                raise SystemExit(f"--replace: {key(r)} is not a row of the comparison ({p})")
            new_rows[key(r)] = r
        for seed, folder in ((d["settings"].get("supernet") or {}).get("from") or {}).items():
            if given.get(seed) == folder:
                continue
            if moved.setdefault(seed, {"folder": folder, "file": str(p)})["folder"] != folder:
                raise SystemExit(f"--replace: seed {seed}'s supernet is {folder} in {p}, "
                                 f"{moved[seed]['folder']} in {moved[seed]['file']}")
            moved[seed]["record"] = (d.get("supernets") or {}).get(str(seed))
    notes = list(doc.get("replaced") or [])
    for seed, m in sorted(moved.items()):
        mine = {k for k in new_rows if k[1] == int(seed)}
        stale = [r for r in doc["runs"] if r["seed"] == int(seed) and key(r) not in mine]
        left = [r["method"] for r in stale if (r.get("evaluator") or {}).get("name") == "supernet"]
        if left:
            raise SystemExit(f"--replace: seed {seed}'s supernet becomes {m['folder']}, but its "
                             f"{', '.join(left)} row(s) are not re-run with it")
        notes.append({"seed": int(seed), "supernet": m["folder"], "previous_supernet": given.get(seed),
                      "previous_seconds": (doc["supernets"].get(str(seed)) or {}).get("seconds"),
                      "seconds": (m.get("record") or {}).get("seconds"),
                      "rows_replaced": sorted(k[0] for k in mine),
                      "rows_kept_with_previous_cost": sorted(r["method"] for r in stale if r["method"] != "handmade")})
        given[seed] = m["folder"]
        doc["supernets"][str(seed)] = m.get("record")
    notes = [_catch_up(n, new_rows) for n in notes]
    for k, r in new_rows.items():
        doc["runs"][index[k]] = r
    doc["settings"] = dict(settings, supernet=dict(settings.get("supernet") or {}, **{"from": given}))
    doc["replaced"] = notes
    doc["parts"] = list(doc.get("parts") or []) + [{"file": str(p), "replaces_rows": True} for p in parts]
    return doc

"""The benchmarks' result helpers: the non-dominated sets of search_speed's fidelity summary (pymoo) against a
brute-force pairwise check, and compare.py's --merge on parts cut from the committed comparison (joins them back
into the same rows; refuses other settings and rows present twice)."""
import copy
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
COMPARE = BENCH / "results" / "compare.json"


sys.path.insert(0, str(BENCH))       # the benchmarks import their siblings (_common, compare_report) by name


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _brute_front(err, macs):
    keep = []
    for i in range(len(err)):
        dominated = False
        for j in range(len(err)):
            if j != i and err[j] <= err[i] and macs[j] <= macs[i] and (err[j] < err[i] or macs[j] < macs[i]):
                dominated = True
        if not dominated:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_nondominated_matches_pairwise_check(seed):
    report = _load("search_speed_report")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 40))
    err = np.round(rng.uniform(0.05, 0.3, n), 2)         # rounded: ties and duplicates occur
    macs = np.round(rng.uniform(1e5, 1e6, n), -5)
    err[-1], macs[-1] = err[0], macs[0]                   # an exact duplicate: neither dominates the other
    got = report.nondominated(err.tolist(), macs.tolist())
    assert got == _brute_front(err.tolist(), macs.tolist())
    assert (0 in got) == (n - 1 in got)


def _parts(tmp_path):
    doc = json.loads(COMPARE.read_text())
    seeds = sorted({r["seed"] for r in doc["runs"]})
    assert len(seeds) >= 2, "the committed comparison has rows of several seeds"
    paths = []
    for k, group in enumerate((seeds[:1], seeds[1:])):
        part = copy.deepcopy(doc)
        part["runs"] = [r for r in doc["runs"] if r["seed"] in group]
        part["seeds"] = group
        paths.append(tmp_path / f"part{k}.json")
        paths[-1].write_text(json.dumps(part))
    return doc, paths


def test_merge_joins_parts_back(tmp_path):
    merge = _load("compare_merge").merge
    doc, paths = _parts(tmp_path)
    out = merge(paths, tmp_path / "merged.json")
    key = lambda r: (r["method"], r["seed"])  # noqa: E731
    assert sorted(out["runs"], key=key) == sorted(doc["runs"], key=key)
    assert out["seeds"] == sorted({r["seed"] for r in doc["runs"]})
    again = json.loads((tmp_path / "merged.json").read_text())
    for k in ("hv_nachos_vs_random", "hv_nachos_vs_static", "best_int8_at_0.5M"):
        assert again["summary"][k] == doc["summary"][k]
    assert (tmp_path / "merged.md").is_file() and (tmp_path / "merged.png").stat().st_size > 1000


def test_merge_refuses_other_settings_and_twice_the_same_row(tmp_path):
    merge = _load("compare_merge").merge
    _, paths = _parts(tmp_path)
    other = json.loads(paths[1].read_text())
    other["settings"]["budget"]["population"] = other["settings"]["budget"].get("population", 8) + 1
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="other settings"):
        merge([paths[0], bad], tmp_path / "x.json")
    with pytest.raises(SystemExit, match="appears twice"):
        merge([paths[0], paths[0]], tmp_path / "y.json")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()


def test_table_notes_the_search_slack_only_when_methods_differ(tmp_path):
    report = _load("compare_report")
    doc = json.loads(COMPARE.read_text())
    default = doc["settings"]["budget"]["accuracy_slack"]
    doc["runs"] = [r for r in doc["runs"] if r.get("accuracy_slack", default) == default]   # the supernet methods'
    assert doc["runs"] and "slack" not in report.write_table(doc, tmp_path / "a.md")
    row = dict(copy.deepcopy(doc["runs"][0]), method="nachos_proxy", accuracy_slack=0.15)
    doc["runs"].append(row)
    note = [ln for ln in report.write_table(doc, tmp_path / "b.md").splitlines() if "slack" in ln]
    assert len(note) == 1 and f"nachos {default:g}," in note[0] and "nachos_proxy 0.15" in note[0]


def test_per_seed_table_gives_each_run_its_own_figures_and_a_dash_where_none_ran():
    report = _load("compare_report")
    base = {"candidates": 1234, "solutions": [{}, {}]}
    doc = {"runs": [dict(base, method="random", seed=3, hypervolume=0.31234, **{"best_acc_at_0.5M": 0.8801}),
                    dict(base, method="nachos", seed=3, hypervolume=0.25, **{"best_acc_at_0.5M": None}),
                    dict(base, method="nachos", seed=5, hypervolume=None, solutions=[], candidates=7,
                         **{"best_acc_at_0.5M": None})]}
    lines = report.per_seed_table(doc)
    assert lines[0] == "| seed | nachos | random |"           # METHODS order, only methods that ran
    assert lines[2] == "| 3 | 0.2500 / 1,234 / 2 / none | 0.3123 / 1,234 / 2 / 88.01 |"
    assert lines[3] == "| 5 | none / 7 / 0 / none | – |"
    assert len(lines) == 4


def _replacement(doc, seed, methods, folder, tmp_path, name="new", seconds=9000.0):
    """Parts re-running `methods` of `seed` with the supernet in `folder`, one file per method as
    `compare.py --methods M` writes them: the committed rows, changed so that a replaced row is told apart
    from the one it replaces."""
    paths = []
    for m in methods:
        part = copy.deepcopy(doc)
        part["runs"] = [dict(r, candidates=r["candidates"] + 1, hypervolume=(r["hypervolume"] or 0) / 2)
                        for r in doc["runs"] if r["seed"] == seed and r["method"] == m]
        part["seeds"] = [seed]
        part["settings"]["supernet"]["from"] = {str(seed): folder}
        part["supernets"] = {str(seed): {"folder": folder, "seconds": seconds}}
        paths.append(tmp_path / f"{name}_{m}.json")
        paths[-1].write_text(json.dumps(part))
    return paths


def test_merge_replace_puts_rerun_rows_in_place_and_notes_the_kept_proxy_rows(tmp_path):
    merge = _load("compare_merge").merge
    doc, paths = _parts(tmp_path)
    seed = sorted({r["seed"] for r in doc["runs"]})[-1]
    sn_methods = sorted({r["method"] for r in doc["runs"] if (r.get("evaluator") or {}).get("name") == "supernet"})
    assert len(sn_methods) >= 2, "the committed comparison has several supernet methods"
    new = _replacement(doc, seed, sn_methods, "runs/own_supernet", tmp_path)
    out = merge(paths, tmp_path / "m.json", replace=new)
    key = lambda r: (r["method"], r["seed"])  # noqa: E731
    before = {key(r): r for r in doc["runs"]}
    after = {key(r): r for r in out["runs"]}
    assert set(after) == set(before)                       # same rows, none added or lost
    for k, r in after.items():
        if k[1] == seed and k[0] in sn_methods:
            assert r["candidates"] == before[k]["candidates"] + 1
        else:
            assert r == before[k]
    assert out["settings"]["supernet"]["from"][str(seed)] == "runs/own_supernet"
    assert out["supernets"][str(seed)]["seconds"] == 9000.0
    others = {s: v for s, v in out["supernets"].items() if s != str(seed)}
    assert others == {s: v for s, v in doc["supernets"].items() if s != str(seed)}
    *earlier, note = out["replaced"]                       # the seeds replaced before keep their notes
    assert earlier == (doc.get("replaced") or [])
    assert note["seed"] == seed and note["rows_replaced"] == sn_methods
    kept = sorted(m for (m, s) in before if s == seed and m not in sn_methods and m != "handmade")
    assert note["rows_kept_with_previous_cost"] == kept
    assert note["previous_seconds"] == doc["supernets"][str(seed)]["seconds"]
    table = (tmp_path / "m.md").read_text()
    assert f"seed {seed}: its own supernet runs/own_supernet (9000.0 s)" in table
    # the summary is that of the new rows (recomputed, not carried over): halved hypervolumes, the proxy's kept
    m = out["summary"]["methods"]
    i = m["nachos"]["seeds"].index(seed)
    assert m["nachos"]["hypervolume"][i] == pytest.approx(before[("nachos", seed)]["hypervolume"] / 2)
    r = out["summary"]["hv_nachos_vs_nachos_proxy"]
    assert r["per_seed"][r["seeds"].index(seed)] == pytest.approx(
        doc["summary"]["hv_nachos_vs_nachos_proxy"]["per_seed"][r["seeds"].index(seed)] / 2, abs=1e-4)


def test_merge_replace_refuses_a_partial_rerun_and_rows_it_does_not_have(tmp_path):
    merge = _load("compare_merge").merge
    doc, paths = _parts(tmp_path)
    seed = sorted({r["seed"] for r in doc["runs"]})[-1]
    half = _replacement(doc, seed, ["nachos", "random"], "runs/own_supernet", tmp_path, "half")
    with pytest.raises(SystemExit, match=r"its static row\(s\) are not re-run with it"):
        merge(paths, tmp_path / "a.json", replace=half)
    two = _replacement(doc, seed, ["nachos", "random"], "runs/own_supernet", tmp_path, "two") + \
        _replacement(doc, seed, ["static"], "runs/another_supernet", tmp_path, "two")
    with pytest.raises(SystemExit, match="runs/another_supernet in"):
        merge(paths, tmp_path / "a.json", replace=two)
    (same_folder,) = _replacement(doc, seed, ["nachos"], doc["settings"]["supernet"]["from"][str(seed)], tmp_path,
                                  "same", seconds=doc["supernets"][str(seed)]["seconds"])
    out = merge(paths, tmp_path / "b.json", replace=[same_folder])   # same supernet: one row may be re-run
    assert out["replaced"] == (doc.get("replaced") or [])           # no new note
    stranger = json.loads(same_folder.read_text())
    stranger["runs"][0]["seed"] = 99
    (tmp_path / "stranger.json").write_text(json.dumps(stranger))
    with pytest.raises(SystemExit, match="not a row of the comparison"):
        merge(paths, tmp_path / "c.json", replace=[tmp_path / "stranger.json"])
    other = json.loads(same_folder.read_text())
    other["settings"]["budget"]["rescore"] = 7
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="other settings"):
        merge(paths, tmp_path / "d.json", replace=[tmp_path / "other.json"])
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "c.json").exists()


def test_rows_kept_with_the_earlier_cost_and_replaced_later_leave_the_note(tmp_path):
    """A seed's proxy rows kept with the earlier supernet's time limit, then replaced by runs with the seed's own
    cost (same supernet folder): the note lists them as given that cost, with the limit each part ran with."""
    merge = _load("compare_merge").merge
    doc = json.loads(COMPARE.read_text())
    base = copy.deepcopy(doc)
    base["replaced"] = [{"seed": 5, "supernet": "runs/own", "previous_supernet": "preset", "previous_seconds": 100.0,
                         "seconds": 60.0, "rows_replaced": ["nachos"],
                         "rows_kept_with_previous_cost": ["nachos_proxy", "paper_choices"]}]
    base["runs"] = [r for r in doc["runs"] if r["seed"] == doc["seeds"][0]]
    base["runs"] = [dict(r, seed=5) for r in base["runs"]]
    base["seeds"] = [5]
    base["settings"]["supernet"]["from"] = {"5": "runs/own"}
    base["supernets"] = {"5": {"folder": "runs/own", "seconds": 60.0}}
    (tmp_path / "base.json").write_text(json.dumps(base))
    part = copy.deepcopy(base)
    part.pop("replaced")
    part["runs"] = [dict(r, time_limit_s=1260.0, search_s=1262.5) for r in base["runs"] if r["method"] == "nachos_proxy"]
    (tmp_path / "proxy.json").write_text(json.dumps(part))
    out = merge([tmp_path / "base.json"], tmp_path / "m.json", replace=[tmp_path / "proxy.json"])
    (note,) = out["replaced"]
    assert note["rows_kept_with_previous_cost"] == ["paper_choices"]
    assert note["rows_rerun_with_its_cost"] == {"nachos_proxy": {"time_limit_s": 1260.0, "search_s": 1262.5}}
    row = next(r for r in out["runs"] if r["method"] == "nachos_proxy")
    assert row["time_limit_s"] == 1260.0
    line = next(ln for ln in (tmp_path / "m.md").read_text().splitlines() if ln.startswith("seed 5:"))
    assert line.endswith("kept, their time limit set by the earlier cost: paper_choices; nachos_proxy later given "
                         "this cost (time limit 1260.0 s).")
    again = merge([tmp_path / "m.json"], tmp_path / "m2.json")      # merged again: the note as it now stands
    assert again["replaced"] == out["replaced"]


def test_committed_comparison_is_the_shared_preset_one_with_the_own_supernet_parts_in_place():
    """compare.json against its inputs, checked row by row here rather than by re-running the merge: the rows of
    a seed that has its own supernet part are that part's rows, every other row is the shared-preset comparison's,
    and the recorded supernet per seed is the part's folder (or the preset)."""
    results = BENCH / "results"
    doc = json.loads(COMPARE.read_text())
    shared = json.loads((results / "compare_shared_preset.json").read_text())
    assert {Path(v["folder"]).name for v in shared["supernets"].values()} == {"fashion_mnist"}   # one preset for all
    own = {}
    for path in sorted((results / "parts").glob("own_s*_*.json")):
        part = json.loads(path.read_text())
        (run,) = part["runs"]
        own[(run["method"], run["seed"])] = (run, Path(part["supernets"][str(run["seed"])]["folder"]).name)
    assert own, "parts of seeds with their own supernet are committed"
    # a seed is replaced only once all its supernet methods are re-run (--replace refuses less); until then its
    # finished parts wait beside the comparison and its rows stay the shared-preset ones
    done = {seed for _, seed in own if all((m, seed) in own for m in ("nachos", "random", "static"))}
    own = {k: v for k, v in own.items() if k[1] in done}
    rows = {(r["method"], r["seed"]): r for r in doc["runs"]}
    # proxy rows of replaced seeds cut to that seed's own cost (benchmarks/cut_run.py, then resumed): the rule is the
    # supernet methods' search time plus the seed's supernet cost, the generation running at the limit finishing
    cut = {}
    for path in sorted((results / "parts").glob("cut_s*_*.json")):
        (run,) = json.loads(path.read_text())["runs"]
        assert run["method"] in ("nachos_proxy", "paper_choices") and run["seed"] in done, path
        limit = shared["settings"]["search_s"] + doc["supernets"][str(run["seed"])]["seconds"]
        assert run["time_limit_s"] == pytest.approx(limit, abs=0.1), path
        assert limit <= run["search_s"] < limit + 600, path
        cut[(run["method"], run["seed"])] = run
    assert set(rows) == {(r["method"], r["seed"]) for r in shared["runs"]}
    for r in shared["runs"]:
        key = (r["method"], r["seed"])
        assert rows[key] == (own[key][0] if key in own else cut.get(key, r)), key
        if key[0] in ("nachos_proxy", "paper_choices") and key[1] in done:
            assert key in cut, f"{key}: a replaced seed's proxy row keeps the shared preset's time limit"
    for (method, seed), (_, folder) in own.items():
        assert Path(doc["supernets"][str(seed)]["folder"]).name == folder == f"fashion_mnist_seed{seed}"
    replaced = {seed for _, seed in own}
    for seed, v in doc["supernets"].items():
        if int(seed) not in replaced:
            assert Path(v["folder"]).name == "fashion_mnist"
    # the summary's ratios are recomputed from the rows now in place
    for name, other in (("hv_nachos_vs_random", "random"), ("hv_nachos_vs_static", "static")):
        per_seed = [rows[("nachos", s)]["hypervolume"] / rows[(other, s)]["hypervolume"] for s in doc["seeds"]]
        assert doc["summary"][name]["per_seed"] == pytest.approx(per_seed, abs=1e-4)


def test_merge_again_keeps_the_replacement_notes(tmp_path):
    """A comparison merged again (e.g. before a second seed's --replace) keeps the notes of the seeds replaced
    before, in its JSON and its table."""
    merge = _load("compare_merge").merge
    doc = json.loads(COMPARE.read_text())
    assert doc.get("replaced"), "the committed comparison has replaced seeds"
    again = merge([COMPARE], tmp_path / "again.json")
    assert again["replaced"] == doc["replaced"]
    table = (tmp_path / "again.md").read_text()
    assert all(f"seed {n['seed']}: its own supernet" in table for n in doc["replaced"])

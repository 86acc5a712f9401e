"""Issue 14, item 20: every figure the README quotes from a committed result equals that result.

How a figure is tied to its JSON: each entry of TIES (readme_ties.py; the readme_ties_*.py modules register them)
names a README section, a README text template in which ``{}`` stands for a number, and the values (computed here
from benchmarks/results/*.json) that the numbers must show. A README number matches when it is the JSON value
correctly rounded to the digits the README prints (798,245 for 798245.1024; 0.020 for 0.0201; -0.00 for -0.0045),
so a README figure can be neither stale nor mis-rounded. Means and standard deviations are recomputed from the
per-seed values of the JSON files.

Coverage: every table row with a number in a results section must be matched in full by a tie, or be listed in
UNTIED with the reason it has no committed JSON behind it. So a new results table cannot slip in unchecked.
No TensorFlow is imported: this test reads two kinds of text files and runs in well under a second.
"""
from __future__ import annotations

import re

import pytest

import readme_ties_compare  # noqa: F401  (each registers its ties)
import readme_ties_deploy  # noqa: F401
import readme_ties_speed  # noqa: F401
from readme_ties import (RESULTS_SECTIONS, TIES, UNTIED, J, Tie, matches, pattern, section_lines,
                         section_text)
from readme_ties_compare import _SP, _XFC, _cmp_runs
from readme_ties_speed import FG, R10, RN10, SWE, _KT, _P5, _SE, _ps, _scr, _snaps, _stem, _vm


def test_conversion_change_left_the_demo_results_as_they_were():
    """The README says the demo runs with the new int8 conversion kept the same solutions, int8 figures and stage
    sizes as the run before it and as the previous session's; and that every stage converted to the same model."""
    def solutions(name):
        return [(s["id"], s["val"], s["test"], s["int8"]) for s in J(name)["admissible"]]

    ref = solutions("demo_workers.json")
    assert len(ref) == 4
    for name in ("demo_before_concrete.json", "demo_concrete.json", "demo_concrete2.json", "demo_valonce.json"):
        assert solutions(name) == ref, name
        assert J(name)["verify_ok"] and J(name)["deploy_check_ok"]
    speed = J("convert_speed.json")
    assert speed["all_same_content"] and speed["int8_report"]["agrees_with_pareto_json"]
    assert len(speed["stages"]) == 4 and all(r["same_content"] for r in speed["stages"])


def test_c0360_fine_tune_is_the_same_with_the_commit_that_wrote_compare_final6():
    """The README says `c0360`'s 6-epoch final stage gave the same figures, to the last digit, with today's code (in a
    new seed-0 search) and with the code of 58ac29e (which wrote compare_final6.json), on this session's host, and
    other figures on the host of compare_final6.json: a host difference, not a code change."""
    new = next(s for s in J("parts/f6_s0_random.json")["runs"][0]["solutions"] if s["id"] == "c0360")
    again = J("parts/f6_s0_c0360_58ac29e.json")
    assert again["code"]["commit"].startswith("58ac29e") and not again["code"]["dirty"]
    old = next(s for s in again["pareto"]["solutions"] if s["id"] == "c0360")
    assert old["genome"] == new["genome"] and old["thresholds"] == new["thresholds"]
    for key in ("val", "test"):
        assert old[key] == new[key]
    assert old["int8"]["accuracy"] == new["int8"]["accuracy"]
    assert old["int8"]["expected_macs"] == new["int8"]["expected_macs"]
    first = next(s for s in J("compare_final6.json")["runs"][0]["solutions"] if s["id"] == "c0360")
    assert first["genome"] == new["genome"] and first["test"]["accuracy"] != new["test"]["accuracy"]


def test_cosine_gain_is_the_schedule_not_the_host():
    """The README says `c0387` finalized alone with the constant schedule, on the host of the cosine runs, gives the
    constant run's figures to the last digit (so the cosine run's gain is the schedule's), and that the cosine
    comparison is the same searches with the same finalists, only the schedule changed."""
    alone = J("parts/f6_s0_c0387_alone.json")
    assert alone["member"] == "c0387" and "final_schedule" not in alone["changes"]
    one = next(s for s in alone["pareto"]["solutions"] if s["id"] == "c0387")
    const = next(s for s in J("parts/f6_s0_nachos.json")["runs"][0]["solutions"] if s["id"] == "c0387")
    assert one["genome"] == const["genome"]
    for key in ("val", "test"):
        assert one[key] == const[key]
    assert one["int8"]["accuracy"] == const["int8"]["accuracy"]
    for m in ("nachos", "random", "static"):
        cos, old = J(f"parts/cos_s0_{m}.json"), J(f"parts/f6_s0_{m}.json")
        new_budget, old_budget = cos["settings"]["budget"], old["settings"]["budget"]
        assert new_budget["final_schedule"] == "cosine" and "final_schedule" not in old_budget
        assert {k: v for k, v in new_budget.items() if k != "final_schedule"} == old_budget
        ids = [sorted(s["id"] for s in doc["runs"][0]["solutions"]) for doc in (cos, old)]
        assert ids[0] == ids[1]
        assert cos["runs"][0]["refinalized_from"] == old["runs"][0]["run_dir"]


def test_cosine_seeds_1_and_2_are_new_searches_with_seed_0s_settings_and_merge_to_their_ratios():
    """The README says seeds 1 and 2 were searched anew (not refinalized) with their own supernets and the settings of
    seed 0's cosine runs, nachos, random search and the static NAS alike, and gives nachos / random and nachos / static
    per seed from compare_cosine_all.json: the ratios must be the parts' own hypervolumes divided, the merged file
    must hold exactly these parts, and the static NAS kept one admissible finalist on seeds 1 and 2."""
    base = J("parts/cos_s0_nachos.json")["settings"]
    merged = J("compare_cosine_all.json")
    summary = merged["summary"]
    for other in ("random", "static"):
        ratios = dict(zip(summary[f"hv_nachos_vs_{other}"]["seeds"], summary[f"hv_nachos_vs_{other}"]["per_seed"]))
        hv = {}
        for seed in (0, 1, 2):
            for m in ("nachos", other):
                part = J(f"parts/cos_s{seed}_{m}.json")
                run = part["runs"][0]
                assert part["runs"] == [run] and (run["method"], run["seed"]) == (m, seed)
                if seed:
                    assert {k: v for k, v in part["settings"].items() if k not in ("supernet", "refinalized_from")} == \
                        {k: v for k, v in base.items() if k not in ("supernet", "refinalized_from")}
                    assert part["settings"]["supernet"]["from"] == {str(seed): f"benchmarks/supernets/fashion_mnist_seed{seed}"}
                    assert not run.get("refinalized_from") and run["search_s"] >= 1200
                mine = next(r for r in merged["runs"] if r["method"] == m and r["seed"] == seed)
                assert mine["hypervolume"] == run["hypervolume"] and mine["candidates"] == run["candidates"]
                hv[m, seed] = run["hypervolume"]
                if m == "static" and seed:
                    assert len(run["solutions"]) == 1, run["solutions"]
            assert ratios[seed] == pytest.approx(hv["nachos", seed] / hv[other, seed], abs=1e-4)
        assert summary[f"hv_nachos_vs_{other}"]["mean_of_ratios"] == pytest.approx(sum(ratios.values()) / 3, abs=1e-4)
        means = [sum(hv[m, s] for s in (0, 1, 2)) for m in ("nachos", other)]
        assert summary[f"hv_nachos_vs_{other}"]["ratio_of_means"] == pytest.approx(means[0] / means[1], abs=1e-4)
    assert summary["hv_nachos_vs_static"]["mean_of_ratios"] < 1.1    # the README: short of the goal


def test_fourth_seed_is_a_new_search_on_the_preset_and_merges_with_the_other_three():
    """The README says seed 3 was searched anew (not refinalized) with seed 0's settings on the shipped preset, and
    gives four-seed ratios from compare_cosine_4seeds.json: that file must hold exactly the cosine parts of seeds 0-3
    (seeds 0-2 the same runs as compare_cosine_all.json), and its ratios must be the hypervolumes divided."""
    base = J("parts/cos_s0_nachos.json")["settings"]
    four, three = J("compare_cosine_4seeds.json"), J("compare_cosine_all.json")
    runs = {(r["method"], r["seed"]): r for r in four["runs"]}
    assert set(runs) == {(m, s) for m in ("nachos", "random", "static") for s in (0, 1, 2, 3)}
    for r in three["runs"]:
        assert runs[r["method"], r["seed"]]["hypervolume"] == r["hypervolume"]
    for m in ("nachos", "random", "static"):
        part = J(f"parts/cos_s3_{m}.json")
        run = part["runs"][0]
        assert part["runs"] == [run] and (run["method"], run["seed"]) == (m, 3)
        assert {k: v for k, v in part["settings"].items() if k not in ("supernet", "refinalized_from")} == \
            {k: v for k, v in base.items() if k not in ("supernet", "refinalized_from")}
        assert part["settings"]["supernet"]["from"] == {"3": "nachos_tf/supernet/presets/fashion_mnist"}
        assert not run.get("refinalized_from") and run["search_s"] >= 1200
        assert runs[m, 3]["hypervolume"] == run["hypervolume"] and runs[m, 3]["candidates"] == run["candidates"]
    for other in ("random", "static"):
        per = four["summary"][f"hv_nachos_vs_{other}"]
        want = [runs["nachos", s]["hypervolume"] / runs[other, s]["hypervolume"] for s in (0, 1, 2, 3)]
        assert per["seeds"] == [0, 1, 2, 3] and per["per_seed"] == pytest.approx(want, abs=1e-4)
        assert per["mean_of_ratios"] == pytest.approx(sum(want) / 4, abs=1e-4)
        assert per["ratio_of_means"] == pytest.approx(sum(runs["nachos", s]["hypervolume"] for s in range(4))
                                                      / sum(runs[other, s]["hypervolume"] for s in range(4)), abs=1e-4)


def test_cosine_demo_is_the_same_search_with_the_cosine_final_stage():
    """The README says the cosine `make demo` searched the same candidates and re-trained the same four finalists
    (their search figures equal the constant run's) with the same final budget but the schedule, its checks and
    its firmware run agreeing; the first three members dominate their constant-schedule selves."""
    new, old = J("demo_cosine.json"), J("demo_valonce.json")
    assert new["config"]["budget"]["final_schedule"] == "cosine" and "final_schedule" not in old["config"]["budget"]
    assert {k: v for k, v in new["config"]["budget"].items() if k != "final_schedule"} == old["config"]["budget"]
    assert new["search"]["candidates"] == old["search"]["candidates"]
    assert new["final"]["search_metrics"] == old["final"]["search_metrics"]
    assert new["verify_ok"] and new["deploy_check_ok"] and new["firmware"]["agree"] == new["firmware"]["n"] == 2000
    by = {s["id"]: s for s in old["admissible"]}
    for s in new["admissible"]:
        if s["id"] != "c0028":
            assert s["test"]["accuracy"] > by[s["id"]]["test"]["accuracy"]
            assert s["test"]["expected_macs"] < by[s["id"]]["test"]["expected_macs"]


def test_crossfit_comparison_claims():
    """The prose around the cross-fitting figures: random search's seed-1 hypervolume unchanged, `c0360` among its
    seed-0 finalists, NSGA-II's finalists with two or three early exits at 20 or 24 px."""
    assert [r["seed"] for r in _cmp_runs(_XFC, "nachos")] == [0, 1] == [r["seed"] for r in _cmp_runs(_XFC, "random")]
    assert _cmp_runs(_XFC, "random")[1]["hypervolume"] == pytest.approx(_cmp_runs(_SP, "random")[1]["hypervolume"])
    assert "c0360" in [s["id"] for s in _cmp_runs(_XFC, "random")[0]["solutions"]]
    fin = [s["genome"] for r in _cmp_runs(_XFC, "nachos") for s in r["solutions"]]
    assert {sum(e["enabled"] for e in g["exits"]) for g in fin} == {2, 3}
    assert {g["backbone"]["resolution"] for g in fin} == {20, 24}


def test_group_analysis_splits_by_both_strong_genes_and_its_oracle_is_recomputable():
    d = J(FG)
    assert set(d["group_analysis"]) == {"stem_width", "s5_kernel"}
    assert len(d["group_analysis"]["stem_width"]["group_shift_vs_reference"]) == len(d["estimates"]) == 5
    # the oracle recomputed from the committed inputs, apart from the script: group-shifted estimate vs the mean
    import numpy as np
    from scipy.stats import spearmanr

    ref = J("search_speed_refnoise10.json")
    ids = [i for i in ref["genomes"] if i in ref["full_training_repeat"]["results"]]
    mean = np.array([(ref["full_training"]["results"][i]["test"]["accuracy"]
                      + ref["full_training_repeat"]["results"][i]["test"]["accuracy"]) / 2 for i in ids])
    stem = np.array([ref["genomes"][i]["genome"]["backbone"]["stem_width"] for i in ids])
    rows = {r["id"]: r["accuracy"] for r in J(d["estimates"]["progressive_5"])["evaluators"]["supernet"]["rows"]}
    est = np.array([rows[i] for i in ids])
    shifted = est.copy()
    for w in set(stem.tolist()):
        m = stem == w
        shifted[m] += mean[m].mean() - est[m].mean()
    got = spearmanr(shifted, mean)[0]
    assert abs(got - _stem("group_shift_vs_reference", "progressive_5")) < 1e-3


def test_kernel_transformation_run_shares_the_largest_stage_and_has_the_matrices():
    info = _ps(_KT)["one_time_cost"]
    assert info["supernet_settings"].get("kernel_transform") is True
    assert info["supernet_epochs"] == _ps(_P5)["one_time_cost"]["supernet_epochs"]


def test_gene_diagnosis_reads_the_reference_and_estimates_the_tables_use():
    d = J(FG)
    assert d["complete"] and d["reference"]["file"] == "search_speed_refnoise10.json" and d["reference"]["n"] == 20
    assert d["estimates"] == {"shipped": "search_speed_refnoise10.json", "progressive_5": "search_speed_ref10_ps.json",
                              "progressive_7": "search_speed_ref10_ps_split.json",
                              "progressive_long": "search_speed_ref10_ps_long.json",
                              "progressive_5_kt": "search_speed_ref10_ps_kt.json"}
    assert d["split_by"] == "s5_kernel" and set(d["by_reference_strength"][:2]) == {"stem_width", "s5_kernel"}
    # the overall Spearman of each estimate equals the one search_speed.py wrote against the same mean
    for e, name in d["estimates"].items():
        assert matches(f"{d['estimate_vs_reference'][e]:.2f}", _vm(name)["spearman"])


def test_sort_widths_probe_ran_on_the_expansion_stage_and_kept_the_largest_subnet():
    for d in map(J, SWE):
        assert d["complete"] and d["supernet"].endswith("3_expand") and d["val_images"] == 2000
        assert d["before"]["largest"] == d["after"]["largest"]          # function-preserving for the largest
        assert set(d["supernet_record"]["settings"]["elastic"]) == {"resolution", "kernel", "depth", "expand"}
        assert all(len(d["before"][k]) == 20 for k in ("widths_only", "whole_space"))


def test_progressive_supernets_were_measured_like_the_shipped_one():
    """Same 20 genomes, same reference trainings (both), the last stage with every gene group elastic."""
    def tests(doc, key):
        return {g: r["test"] for g, r in doc[key]["results"].items()}

    for name in ("search_speed_ref10_ps.json", "search_speed_ref10_ps_split.json", "search_speed_ref10_ps_long.json"):
        d = J(name)
        assert d["complete"] and set(d["genomes"]) == set(J(RN10)["genomes"])
        assert tests(d, "full_training") == tests(J(RN10), "full_training")
        assert tests(d, "full_training_repeat") == tests(J(RN10), "full_training_repeat")
        assert _ps(name)["one_time_cost"]["supernet_settings"]["elastic"] == [
            "resolution", "stem", "depth", "kernel", "expand", "width", "se", "act", "heads"]
        assert _ps(name)["vs_mean_reference"]["n"] == 20
        two = name.replace("_ref10", "")               # the same supernet against the 2-epoch reference
        assert J(two)["complete"] and set(J(two)["genomes"]) == set(J(RN10)["genomes"])
        assert tests(J(two), "full_training") == tests(J("search_speed.json"), "full_training")
        assert _ps(two)["one_time_cost"]["supernet_settings"] == _ps(name)["one_time_cost"]["supernet_settings"]

def test_refnoise10_repeats_the_10_epoch_reference():
    """The repeat holds all 20 genomes, trained with the 10-epoch reference's settings and another run seed; its
    first training is the 10-epoch reference itself, and the screened files were measured against it."""
    d = J(RN10)
    rep = d["full_training_repeat"]
    assert d["complete"] and rep["run_seed"] != d["settings"]["run_seed"]
    assert rep["settings"] == J(R10)["full_training"]["settings"]
    assert set(rep["results"]) == set(J(R10)["genomes"]) and len(rep["results"]) == 20
    assert {g: r["test"] for g, r in d["full_training"]["results"].items()} == \
        {g: r["test"] for g, r in J(R10)["full_training"]["results"].items()}
    assert all(r["test"] != J(R10)["full_training"]["results"][g]["test"] for g, r in rep["results"].items())
    for n in ("6k", "20k"):
        assert _scr(n)["vs_mean_reference"]["n"] == 20


def test_supernet_epochs_covers_the_training_in_order():
    """The snapshots are consecutive epochs after the stage-2 and stage-3 presets, all against the 10-epoch
    reference (trained twice), each over the same 20 genomes."""
    snaps = _snaps()
    assert J(_SE)["complete"] and J(_SE)["reference"].endswith(RN10)   # first training: the 10-epoch reference
    assert [r["training"]["epochs_done"] for r in snaps] == [17] + list(range(21, 32))
    assert all(r["thresholded"]["n"] == 20 and len(r["estimates"]) == 20 for r in snaps)
    assert all(r["vs_mean_reference"]["n"] == 20 for r in snaps)
    assert snaps[1]["estimates"] == {r["id"]: r["accuracy"] for r in J(R10)["evaluators"]["supernet"]["rows"]}


# --------------------------------------------------------------------------------------------- the checks

@pytest.mark.parametrize("t", TIES, ids=[f"{t.source}:{t.template[:50]}" for t in TIES])
def test_readme_figure_equals_its_json(t: Tie):
    text = section_text(t.section)
    m = re.search(pattern(t.template), text)
    assert m, f"README section {t.section!r} no longer holds {t.template!r} (tied to {t.source})"
    want = list(t.values())
    got = m.groups()
    assert len(got) == len(want), f"template {t.template!r}: {len(got)} numbers, {len(want)} values"
    bad = [(g, w) for g, w in zip(got, want) if not matches(g, w)]
    assert not bad, (f"README {t.section!r}: {m.group(0)!r} disagrees with {t.source}: "
                     + ", ".join(f"shows {g}, JSON gives {w!r}" for g, w in bad))


def _is_separator(line: str) -> bool:
    return bool(re.fullmatch(r"\|[-| :]+\|", line.strip()))


def _result_table_rows():
    """(section, row) of every table body row holding a digit in the results sections (header rows skipped)."""
    for sec in RESULTS_SECTIONS:
        lines = section_lines(sec)
        for i, ln in enumerate(lines):
            s = ln.strip()
            header = i + 1 < len(lines) and _is_separator(lines[i + 1])
            if s.startswith("|") and not header and not _is_separator(s) and re.search(r"\d", s):
                yield sec, " ".join(s.split())


def test_every_results_table_row_is_tied_to_a_json_or_said_to_have_none():
    patterns = [(t.section, re.compile(pattern(t.template))) for t in TIES]
    untied = []
    for sec, row in _result_table_rows():
        if row in UNTIED:
            continue
        if not any(p.fullmatch(row) for _, p in patterns):     # (a ## section also holds its ### ones)
            untied.append(row)
    assert not untied, "results table rows tied to no JSON (add a tie or an UNTIED reason):\n" + "\n".join(untied)


def test_untied_rows_are_still_in_the_readme():
    rows = {row for _, row in _result_table_rows()}
    assert set(UNTIED) <= rows, set(UNTIED) - rows


def test_the_rounding_rule_itself():
    assert matches("798,245", 798245.1024) and not matches("798,246", 798245.1024)
    assert matches("0.020", 0.0201) and matches("-0.00", -0.0045) and matches("0.98", 0.977)
    assert not matches("0.8696", 0.8604) and not matches("911,558", 798245.1)
    assert matches("82.81", 82.8067) and not matches("82.8", 82.86)


def test_random_search_draws_the_same_genomes_whatever_the_supernet():
    """The prose of *One supernet per seed*: seed 1's random search with its own supernet chose `c0065` and `c0219`,
    the same genomes as its run with the shared preset (with 4 finalists, compare_final4.json); NSGA-II's differ."""
    own = {s["id"]: s["genome"] for s in J("parts/own_s1_random.json")["runs"][0]["solutions"]}
    shared = {s["id"]: s["genome"] for r in _cmp_runs("compare_final4.json", "random") if r["seed"] == 1
              for s in r["solutions"]}
    assert sorted(own) == ["c0065", "c0219"] and all(own[k] == shared[k] for k in own)
    nachos_own = [s["genome"] for s in J("parts/own_s1_nachos.json")["runs"][0]["solutions"]]
    nachos_shared = [s["genome"] for r in _cmp_runs(_SP, "nachos") if r["seed"] == 1 for s in r["solutions"]]
    assert not any(g in nachos_shared for g in nachos_own)


def test_shared_teacher_changes_no_figure_and_the_one_phase_demo_is_its_rerun():
    """The README says the final stage with the shared distillation targets gave the same solutions, figure for
    figure, as the code before (same budget), that the one-phase re-run differs from both only in its final budget,
    and that `make demo` with it searched the same candidates, re-trained the same finalists and kept the re-run's
    solutions, its checks and firmware run agreeing."""
    runs = {r["run"].rsplit("/", 1)[-1]: r for r in J("final_stage_ab.json")["runs"]}
    old, teach, new = runs["abOld"], runs["abTeach"], runs["abNew"]
    assert teach["admissible"] == old["admissible"] and teach["budget"] == old["budget"]
    assert (old["budget"]["final_epochs"], old["budget"]["final_head_epochs"]) == (1, 1)
    assert (new["budget"]["final_epochs"], new["budget"]["final_head_epochs"]) == (0, 2)
    assert {k: v for k, v in new["budget"].items() if "epochs" not in k} == \
        {k: v for k, v in old["budget"].items() if "epochs" not in k}
    demo, before = J("demo_onephase.json"), J("demo_cosine.json")
    assert demo["search"]["candidates"] == before["search"]["candidates"]
    assert demo["final"]["search_metrics"] == before["final"]["search_metrics"]
    assert [(s["id"], s["val"], s["test"]) for s in demo["admissible"]] == \
        [(s["id"], s["val"], s["test"]) for s in new["admissible"]]
    assert demo["verify_ok"] and demo["deploy_check_ok"] and demo["firmware"]["agree"] == demo["firmware"]["n"] == 2000
    assert (demo["config"]["budget"]["final_epochs"], demo["config"]["budget"]["final_head_epochs"]) == (0, 2)
    again = J("demo_onephase2.json")
    assert [(s["id"], s["val"], s["test"], s["int8"]) for s in again["admissible"]] == \
        [(s["id"], s["val"], s["test"], s["int8"]) for s in demo["admissible"]]
    assert again["verify_ok"] and again["deploy_check_ok"] and again["firmware"]["agree"] == 2000
    for seed in (1, 2):                       # the seeds-1-2 sentence: the same budget, 4 finalists, none dropped
        run = J(f"demo_onephase_seed{seed}.json")
        assert run["config"]["seed"] == seed and run["config"]["budget"] == demo["config"]["budget"]
        assert run["final"]["members"] == 4 and not run["final"]["dropped"]

"""README ties: candidate evaluation, speed and fidelity (search_speed*.json, the proxy fidelity, the
progressive supernets, the gene diagnosis and the supernet snapshots)."""
from __future__ import annotations

import json
import statistics

from readme_ties import REPO, J, tie



# --------------------------------------------------------------------------------------------- search_speed.json

SPD = "### Candidate evaluation: speed and fidelity"


def _ss():
    return J("search_speed.json")["summary"]


def _sn():
    return _ss()["evaluators"]["supernet"]


def _i4():
    return J("search_speed.json")["issue4_summary"]


def _rc2(key):
    a, b = _sn()["rank_correlation"][key], _i4()["rank_correlation"][key]
    return [a["spearman"], a["spearman_p"], a["kendall"], b["spearman"], b["spearman_p"], b["kendall"]]


def _full_seconds_mean():
    res = J("search_speed.json")["full_training"]["results"].values()
    return statistics.fmean(r["seconds"] for r in res)


tie(SPD, "| `supernet`, stage-1 preset | supernet training {} s ({} epochs, done once and shipped); loading it {} s | {} / {} "
         "(n = {}) | **{}** |", "search_speed.json",
    lambda: [_sn()["one_time_cost"]["supernet_training_seconds"], _sn()["one_time_cost"]["supernet_epochs"],
             _sn()["one_time_cost"]["setup_seconds"], _sn()["speed"]["seconds_mean"], _sn()["speed"]["seconds_median"],
             _sn()["speed"]["n_steady"], _sn()["speed"]["candidates_per_min"]])
tie(SPD, "| `proxy`, `quick` fidelity | none | {} | {} |", "search_speed.json",
    lambda: [_i4()["seconds_per_candidate"]["quick"], _i4()["candidates_per_min"]["quick"]])
tie(SPD, "| `proxy`, `standard` fidelity | none | {} | {} |", "search_speed.json",
    lambda: [_i4()["seconds_per_candidate"]["standard"], _i4()["candidates_per_min"]["standard"]])
tie(SPD, "(1-minute load {} on the 2 cores). The supernet is the stage-1 preset (`scripts/train_default_supernet.py`: "
         "{} epochs, {} of them largest-subnet warm-up, {} training images, {} random subnet per sandwich step)",
    "search_speed.json",
    lambda: [_sn()["speed"]["load_avg_1min_mean"], *[_sn()["one_time_cost"]["supernet_settings"][k]
                                                    for k in ("epochs", "warmup_epochs", "train_limit", "n_random")]])
tie(SPD, "{} s in three sessions", "search_speed.json", lambda: [_i4()["wall_seconds"]])
tie(SPD, "traces its graph once per process ({} s here): {} candidates per minute with it over these {}.",
    "search_speed.json", lambda: [_sn()["speed"]["first_call_seconds"][0], _sn()["speed"]["candidates_per_min_incl_first"],
                                  _sn()["speed"]["n"]])
tie(SPD, "It took {} s per candidate on average.", "search_speed.json", lambda: [_full_seconds_mean()])
# the rows of the rank-correlation tables: (estimate, against, key in rank_correlation, bold)
RC_ROWS = (("thresholded val accuracy (the search objective)", "thresholded test accuracy", "thresholded", True),
           ("thresholded val accuracy", "final-exit test accuracy", "objective_vs_full_final_exit", False),
           ("final-exit val accuracy", "final-exit test accuracy", "final_exit", False),
           ("expected MACs at its thresholds", "expected MACs at its thresholds", "expected_macs", False))
for _label, _against, _key, _bold in RC_ROWS:
    _c = "**{}**" if _bold else "{}"
    tie(SPD, f"| {_label} | {_against} | {_c} ({{}}) | {{}} | {_c} ({{}}) | {{}} |", "search_speed.json",
        lambda key=_key: _rc2(key))
tie(SPD, "total MACs of the network {} (p {}), parameter count {} (p {}).", "search_speed.json",
    lambda: [_ss()["baselines"]["total_macs"]["spearman"], _ss()["baselines"]["total_macs"]["spearman_p"],
             _ss()["baselines"]["params"]["spearman"], _ss()["baselines"]["params"]["spearman_p"]])
tie(SPD, "the supernet evaluator judges about {} candidates a minute, {} times the quick proxy", "search_speed.json",
    lambda: [_sn()["speed"]["candidates_per_min"], _sn()["speed"]["candidates_per_min"] / _i4()["candidates_per_min"]["quick"]])
tie(SPD, "ranks full training at Spearman {} (goal 0.7); its estimates span only {}-{} (full training {}-{}), and the best "
         "fully trained genome is {}th of {} by the supernet.", "search_speed.json",
    lambda: [_sn()["rank_correlation"]["thresholded"]["spearman"], *_sn()["estimate_accuracy_range"],
             *_ss()["full_accuracy_range"], _sn()["selection"]["estimate_rank_of_full_best"], _ss()["n_full"]])
tie(SPD, "A {}-epoch supernet on {} images gave {} on the same genomes", "search_speed_supernet5.json",
    lambda: [J("search_speed_supernet5.json")["summary"]["evaluators"]["supernet"]["one_time_cost"]["supernet_epochs"],
             J("search_speed_supernet5.json")["summary"]["evaluators"]["supernet"]["one_time_cost"]["supernet_settings"][
                 "train_limit"],
             J("search_speed_supernet5.json")["summary"]["evaluators"]["supernet"]["rank_correlation"]["thresholded"][
                 "spearman"]])
tie(SPD, "ran the {} genomes of the issue-4 measurement", "search_speed.json", lambda: [_ss()["n_full"]])

# stages 2 and 3 (continued from the stage-1 preset; stage 3 is shipped): search_speed_supernet17.json (stage 2),
RN = "search_speed_refnoise.json"
VM = "vs_mean_reference" in J(RN)["summary"]["evaluators"].get("supernet", {})
tie(SPD, "genomes the two trainings rank alike at Spearman {} (Kendall {}); their test accuracies differ by {} points on "
         "average and up to {}." + (" Against the mean of the two, the supernet estimate reaches Spearman {}." if VM else ""), RN,
    lambda: [J(RN)["summary"]["reference_repeatability"]["spearman"], J(RN)["summary"]["reference_repeatability"]["kendall"],
             100 * J(RN)["summary"]["reference_repeatability"]["mean_abs_difference"],
             100 * J(RN)["summary"]["reference_repeatability"]["max_abs_difference"],
             ] + ([J(RN)["summary"]["evaluators"]["supernet"]["vs_mean_reference"]["spearman"]] if VM else []))


# search_speed_supernet21.json (stage 3) and the preset's manifest, whose init_from chain holds stages 2 and 1
S17 = "search_speed_supernet17.json"
S21 = "search_speed_supernet21.json"


def _s17():
    return J(S17)["summary"]["evaluators"]["supernet"]


def _s21():
    return J(S21)["summary"]["evaluators"]["supernet"]


def _preset(name):
    return json.loads((REPO / "nachos_tf" / "supernet" / "presets" / "fashion_mnist" / name).read_text())


def _speed_row(s):
    return [s["one_time_cost"]["supernet_training_seconds"], s["one_time_cost"]["supernet_epochs"],
            s["one_time_cost"]["setup_seconds"], s["speed"]["seconds_mean"], s["speed"]["seconds_median"],
            s["speed"]["n_steady"], s["speed"]["candidates_per_min"]]


tie(SPD, "| `supernet`, stage-2 preset | supernet training {} s ({} epochs in all); loading it {} s | {} / {} (n = {}) "
         "| **{}** |", S17, lambda: _speed_row(_s17()))
tie(SPD, "| `supernet` (default), shipped preset (stage 3) | supernet training {} s ({} epochs in all, done once and "
         "shipped); loading it {} s | {} / {} (n = {}) | **{}** |", S21, lambda: _speed_row(_s21()))
tie(SPD, "in its last epoch its random subnets reached {} training accuracy against {} for the smallest", "supernet.json",
    lambda: [_preset("supernet.json")["init_from"]["init_from"]["history"][-1][k] for k in ("acc_random", "acc_smallest")])
tie(SPD, "for {} more sandwich epochs on all 54,000 training images with {} random subnets per step, Adam at {} with "
         "cosine decay; its random subnets then reached {} (smallest {}).", S17,
    lambda: [*[_s17()["one_time_cost"]["supernet_settings"][k] for k in ("epochs", "n_random", "learning_rate")],
             *[_preset("supernet.json")["init_from"]["history"][-1][k] for k in ("acc_random", "acc_smallest")]])
tie(SPD, "Stage 3 continued stage 2 the same way for {} epochs at {}: random subnets {} (smallest {}), and the three "
         "sampled genomes of the preset's `evaluation.json` score {}, {} and {} final-exit validation accuracy "
         "(largest subnet {};", S21,
    lambda: [_s21()["one_time_cost"]["supernet_settings"]["epochs"],
             _s21()["one_time_cost"]["supernet_settings"]["learning_rate"],
             _preset("supernet.json")["history"][-1]["acc_random"], _preset("supernet.json")["history"][-1]["acc_smallest"],
             *[_preset("evaluation.json")[k]["val_acc_final"] for k in ("sample0", "sample1", "sample2", "largest")]])
tie(SPD, "(`..._supernet17.json` for stage 2; machine idle, load {} and {})", S21,
    lambda: [_s21()["speed"]["load_avg_1min_mean"], _s17()["speed"]["load_avg_1min_mean"]])
for _label, _against, _key, _bold in RC_ROWS:
    _c = "**{}**" if _bold else "{}"
    for _stage, _src, _get in (("2", S17, _s17), ("3", S21, _s21)):
        tie(SPD, f"| stage {_stage}: {_label} | {_against} | {_c} ({{}}) | {{}} |", _src,
            lambda key=_key, get=_get: [get()["rank_correlation"][key][k] for k in ("spearman", "spearman_p", "kendall")])


def _rank_by_both():
    r21, r17 = (s()["selection"]["estimate_rank_of_full_best"] for s in (_s21, _s17))
    return r21 if r21 == r17 else -1          # the README says "by both"


tie(SPD, "Stage 3's estimates span {}-{} (stage 2: {}-{}, stage 1: {}-{}); the best fully trained genome is {}th of {} "
         "by both.", S21,
    lambda: [*_s21()["estimate_accuracy_range"], *_s17()["estimate_accuracy_range"], *_sn()["estimate_accuracy_range"],
             _rank_by_both(), J(S21)["summary"]["n_full"]])
tie(SPD, "(stage 3's first call traced in {} s)", S21, lambda: [_s21()["speed"]["first_call_seconds"][0]])
tie(SPD, "but not the rank correlation ({} -> {} is within the noise of 20 genomes)", S21,
    lambda: [_s17()["rank_correlation"]["thresholded"]["spearman"], _s21()["rank_correlation"]["thresholded"]["spearman"]])
tie(SPD, "the objective does not yet beat the naive total-MACs predictor ({}).", S21,
    lambda: [J(S21)["summary"]["baselines"]["total_macs"]["spearman"]])
tie(SPD, "the stage-2 preset {}, stage 3 {}. Two things limit", S21,
    lambda: [_s17()["rank_correlation"]["thresholded"]["spearman"], _s21()["rank_correlation"]["thresholded"]["spearman"]])
tie(SPD, "the supernet is short-trained ({} epochs now;", S21, lambda: [_s21()["one_time_cost"]["supernet_epochs"]])


def _pf(variant):
    return J("proxy_fidelity.json")["variants"][variant]["summary"]


for _label, _train, _variant in (
        ("`quick` as measured above (default threads, loaded machine)", "{} images x {} NACHOS epochs", "quick"),
        ("`quick_now`: the same, re-measured", "{} x {} NACHOS epochs", "quick_now"),
        ("`more_data`", "{} x {} NACHOS epoch", "more_data"),
        ("`backbone_first`", "{} x ({} CE epoch on the final exit + {} NACHOS epoch)", "backbone_first")):
    def _pvals(variant=_variant):
        s = _pf(variant)
        b = J("proxy_fidelity.json")["variants"][variant].get("budget") or {}
        train = [b.get("proxy_train", 3000)]
        train += [b["epochs"], b["head_epochs"]] if "epochs" in b else [b.get("head_epochs", 2)]
        return [*train, s["seconds_mean"], s["thresholded"]["spearman"], s["thresholded"]["spearman_p"],
                s["expected_macs"]["spearman"]]
    tie(SPD, f"| {_label} | {_train} | {{}} | {{}} ({{}}) | {{}} |", "proxy_fidelity.json", _pvals)
tie(SPD, "re-uses the {} full-training results above", "proxy_fidelity.json",
    lambda: [_pf("quick")["n"]])
tie(SPD, "The same `quick` proxy gives {} or {} depending only on the thread count", "proxy_fidelity.json",
    lambda: [_pf("quick")["thresholded"]["spearman"], _pf("quick_now")["thresholded"]["spearman"]])


def _pf_row(variant, gid):
    return next(r for r in J("proxy_fidelity.json")["variants"][variant]["rows"] if r["id"] == gid)


tie(SPD, "On genome `99951b4108`, for example, the proxy accuracy was {} with the default thread count and {} with one "
         "thread.", "proxy_fidelity.json",
    lambda: [_pf_row("quick", "99951b4108")["accuracy"], _pf_row("quick_now", "99951b4108")["accuracy"]])
tie(SPD, "One single-thread process evaluated {} candidates per minute while a second process ran beside it. That is "
         "about {} candidates per minute for the machine, against {} for one process", "proxy_fidelity.json",
    lambda: [_pf("quick_now")["candidates_per_min"], 2 * _pf("quick_now")["candidates_per_min"],
             _pf("quick")["candidates_per_min"]])


# the 10-epoch reference (search_speed_ref10.json) and the estimate variants against both references
R10 = "search_speed_ref10.json"
_XF = (("in-sample (the search objective)", "2,000", "search_speed_supernet21.json", R10),
       ("2-fold cross-fitted", "2,000", "search_speed_xf2.json", "search_speed_ref10_xf2.json"),
       ("in-sample", "6,000", "search_speed_v6.json", "search_speed_ref10_v6.json"),
       ("2-fold cross-fitted", "6,000", "search_speed_v6xf2.json", "search_speed_ref10_v6xf2.json"))


def _th(name):
    return J(name)["summary"]["evaluators"]["supernet"]["rank_correlation"]["thresholded"]


def _ref_agreement():
    """Spearman between the 2-epoch and the 10-epoch reference's test accuracies over the same genomes."""
    from scipy.stats import spearmanr
    a, b = J("search_speed.json")["full_training"]["results"], J(R10)["full_training"]["results"]
    ids = [g for g in b if g in a]
    assert len(ids) == 20
    return spearmanr([a[g]["test"]["accuracy"] for g in ids], [b[g]["test"]["accuracy"] for g in ids]).statistic


for _label, _imgs, _f2, _f10 in _XF:
    tie(SPD, f"| {_label} | {_imgs} | {{}} ({{}}) | {{}} | {{}} ({{}}) | {{}} |", _f10,
        lambda f2=_f2, f10=_f10: [_th(f2)["spearman"], _th(f2)["spearman_p"], _th(f2)["kendall"],
                                  _th(f10)["spearman"], _th(f10)["spearman_p"], _th(f10)["kendall"]])
tie(SPD, "| naive: total MACs of the network | – | {} ({}) | {} | {} ({}) | {} |", R10,
    lambda: [J(f)["summary"]["baselines"]["total_macs"][k] for f in ("search_speed_supernet21.json", R10)
             for k in ("spearman", "spearman_p", "kendall")])
tie(SPD, "54,000 training images (schedule, calibration and run seed as above; {} hours in all", R10,
    lambda: [sum(r["seconds"] for r in J(R10)["full_training"]["results"].values()) / 3600])
tie(SPD, "Its test accuracies span {}-{}, and it ranks the genomes like the 2-epoch reference only at Spearman {}.",
    R10, lambda: [*J(R10)["summary"]["full_accuracy_range"], _ref_agreement()])
tie(SPD, "ranks the genomes at all (Spearman between {} and {} over {}; goal", R10,
    lambda: [min(_th(f)["spearman"] for *_, f in _XF), max(_th(f)["spearman"] for *_, f in _XF), _th(R10)["n"]])
tie(SPD, "against that the estimate ranks finalists at {} (the", "screen_fidelity.json",
    lambda: [J("screen_fidelity.json")["summary"]["all"]["estimate"]["spearman"]])
tie(SPD, "on these two cores {} epochs took {} hours.", "search_speed_supernet21.json",
    lambda: [_s21()["one_time_cost"]["supernet_epochs"], _s21()["one_time_cost"]["supernet_training_seconds"] / 3600])


# supernet_epochs.json (stage-4 snapshots against the 10-epoch reference) and the screened estimates
_SE = "supernet_epochs.json"


def _snaps():
    return J(_SE)["snapshots"]


def _snap_label(r) -> str:
    return {"stage2": "stage-2 preset", "fashion_mnist": "shipped preset (stage 3)"}.get(
        r["name"], "stage 4, epoch " + r["name"].rsplit("_e", 1)[-1])


for _i, _r in enumerate(_snaps()):
    _ag = _r.get("agreement_with_previous")
    tie(SPD, f"| {_snap_label(_r)} | {{}} | {{}} ({{}}) | {{}} | {{}} | {{}} | {'{}' if _ag else '–'} |", _SE,
        lambda i=_i: (lambda r: [r["training"]["epochs_done"], r["thresholded"]["spearman"], r["thresholded"]["spearman_p"],
                                 r["thresholded"]["kendall"], r["final_exit"]["spearman"], r["mean_estimate"]]
                      + ([r["agreement_with_previous"]["spearman"]] if r.get("agreement_with_previous") else []))(_snaps()[i]))
tie(SPD, "Adam at 0.001 with cosine decay; {} s of training,", _SE,
    lambda: [_snaps()[-1]["training"]["epoch_seconds"] - _snaps()[1]["training"]["epoch_seconds"]])
tie(SPD, "raised the mean estimate over the 20 genomes from {} to {}, and", _SE,
    lambda: [_snaps()[1]["mean_estimate"], _snaps()[-1]["mean_estimate"]])
tie(SPD, "(Spearman {} between the last two)", _SE, lambda: [_snaps()[-1]["agreement_with_previous"]["spearman"]])
tie(SPD, "every snapshot, {} to {} epochs, ranks the reference between {} and {}, below the network's total MACs ({}).",
    _SE, lambda: [_snaps()[0]["training"]["epochs_done"], _snaps()[-1]["training"]["epochs_done"],
                  min(r["thresholded"]["spearman"] for r in _snaps()), max(r["thresholded"]["spearman"] for r in _snaps()),
                  J(R10)["summary"]["baselines"]["total_macs"]["spearman"]])


def _scr(n):
    return J(f"search_speed_ref10_screen{n}.json")["summary"]["evaluators"]["supernet"]


for _n, _l in (("6k", "6,000"), ("20k", "20,000")):
    tie(SPD, f"| screened, one epoch on {_l} images | {{}} ({{}}) | {{}} ({{}}) | {{}} | {{}} |",
        f"search_speed_ref10_screen{_n}.json",
        lambda n=_n: [_scr(n)["speed"]["seconds_mean"], _scr(n)["speed"]["load_avg_1min_mean"]]
        + [_scr(n)["rank_correlation"]["thresholded"][k] for k in ("spearman", "spearman_p", "kendall")]
        + [_scr(n)["rank_correlation"]["final_exit"]["spearman"]])
tie(SPD, "Both stay near zero (the in-sample estimate: {}), at about {} and {} s per candidate instead of about {} s",
    R10, lambda: [_th(R10)["spearman"], _scr("6k")["speed"]["seconds_mean"], _scr("20k")["speed"]["seconds_mean"],
                  J(R10)["summary"]["evaluators"]["supernet"]["speed"]["seconds_mean"]])

# search_speed_refnoise10.json: the 10-epoch reference trained again with run seed 1 (its own noise)
RN10 = "search_speed_refnoise10.json"


def _rep10():
    return J(RN10)["summary"]["reference_repeatability"]


def _vm(name):
    return J(name)["summary"]["evaluators"]["supernet"]["vs_mean_reference"]


tie(SPD, "and run seed 1 (other initialisation and data order): {} hours of training,", RN10,
    lambda: [sum(r["seconds"] for r in J(RN10)["full_training_repeat"]["results"].values()) / 3600])
tie(SPD, "The two trainings rank the genomes alike at Spearman {} (p {}; Kendall {}); their test accuracies differ by {} "
         "points on average and by {} at most (the 2-epoch reference: {}, {} and {}, above).", RN10,
    lambda: [_rep10()["spearman"], _rep10()["spearman_p"], _rep10()["kendall"], 100 * _rep10()["mean_abs_difference"],
             100 * _rep10()["max_abs_difference"], J(RN)["summary"]["reference_repeatability"]["spearman"],
             100 * J(RN)["summary"]["reference_repeatability"]["mean_abs_difference"],
             100 * J(RN)["summary"]["reference_repeatability"]["max_abs_difference"]])
tie(SPD, "would reach about {} (the square root of {}) against one training", RN10,
    lambda: [_rep10()["attenuation_ceiling"]["value"], _rep10()["spearman"]])
tie(SPD, "| shipped preset, in-sample (the search objective) | {} | {} ({}) | {} |", RN10,
    lambda: [_th(RN10)["spearman"], _vm(RN10)["spearman"], _vm(RN10)["spearman_p"], _vm(RN10)["kendall"]])
tie(SPD, "| stage-4 snapshots, {}-{} epochs (range over the ten) | {} .. {} | {} .. {} | – |", _SE,
    lambda: [_snaps()[2]["training"]["epochs_done"], _snaps()[-1]["training"]["epochs_done"],
             min(r["thresholded"]["spearman"] for r in _snaps()[2:]), max(r["thresholded"]["spearman"] for r in _snaps()[2:]),
             min(r["vs_mean_reference"]["spearman"] for r in _snaps()[2:]),
             max(r["vs_mean_reference"]["spearman"] for r in _snaps()[2:])])
for _n, _l in (("6k", "6,000"), ("20k", "20,000")):
    tie(SPD, f"| screened, one epoch on {_l} images | {{}} | {{}} ({{}}) | {{}} |", f"search_speed_ref10_screen{_n}.json",
        lambda n=_n: [_scr(n)["rank_correlation"]["thresholded"]["spearman"]]
        + [_scr(n)["vs_mean_reference"][k] for k in ("spearman", "spearman_p", "kendall")])
tie(SPD, "| naive: total MACs of the network | {} | {} ({}) | {} |", RN10,
    lambda: [J(RN10)["summary"]["baselines"]["total_macs"]["spearman"]]
    + [J(RN10)["summary"]["baselines_vs_mean_reference"]["total_macs"][k] for k in ("spearman", "spearman_p", "kendall")])
tie(SPD, "and the network's total MACs does ({} against the mean)", RN10,
    lambda: [J(RN10)["summary"]["baselines_vs_mean_reference"]["total_macs"]["spearman"]])


# search_speed_ref10_ps*.json: supernets trained by progressive shrinking, against the 10-epoch reference
PS_RUNS = (("progressive, 5 stages (`DEFAULT_STAGES`)", "search_speed_ref10_ps.json"),
           ("progressive, 7 stages (`benchmarks/schedules/ps_split.json`)", "search_speed_ref10_ps_split.json"),
           ("progressive, 7 stages, longer (`benchmarks/schedules/ps_long.json`)", "search_speed_ref10_ps_long.json"),
           ("progressive, 5 stages, kernel transformation (`--kernel-transform`)", "search_speed_ref10_ps_kt.json"),
           ("shipped preset (2 largest-only epochs, then every gene elastic)", RN10))


def _ps(name):
    return J(name)["summary"]["evaluators"]["supernet"]


for _label, _name in PS_RUNS:
    tie(SPD, f"| {_label} | {{}} / {{}} | {{}}-{{}} | {{}} ({{}}) | {{}} ({{}}) | {{}} |", _name,
        lambda n=_name: [_ps(n)["one_time_cost"]["supernet_epochs"], _ps(n)["one_time_cost"]["supernet_training_seconds"]]
        + _ps(n)["estimate_accuracy_range"] + [_th(n)["spearman"], _th(n)["spearman_p"], _vm(n)["spearman"],
                                               _vm(n)["spearman_p"], _ps(n)["rank_correlation"]["final_exit"]["spearman"]])

for _label, _name in (("shipped preset", "search_speed_supernet21.json"), ("progressive, 5 stages", "search_speed_ps.json"),
                      ("progressive, 7 stages", "search_speed_ps_split.json"),
                      ("progressive, 7 stages, longer", "search_speed_ps_long.json"),
                      ("progressive, 5 stages, kernel transformation", "search_speed_ps_kt.json")):
    tie(SPD, f"| {_label} (`{_name}`) | {{}} ({{}}) | {{}} | {{}} ({{}}) |", _name,
        lambda n=_name: [_th(n)["spearman"], _th(n)["spearman_p"], _th(n)["kendall"],
                         _ps(n)["rank_correlation"]["final_exit"]["spearman"],
                         _ps(n)["rank_correlation"]["final_exit"]["spearman_p"]])

SWE = ("sort_widths_effect_ps.json", "sort_widths_effect_ps_long.json")
for _snl, _swe in zip(("5 stages", "`ps_long.json`"), SWE):
    for _label, _key in (("largest", "largest"), ("largest but random stem and stage widths (20)", "widths_only"),
                         ("drawn from the whole space (20)", "whole_space")):
        tie(SPD, f"| {_snl} | {_label} | {{}} % | {{}} % | {{}} / {{}} |", _swe,
            lambda k=_key, f=_swe: [100 * J(f)["summary"][k]["mean_before"], 100 * J(f)["summary"][k]["mean_after"],
                                  J(f)["summary"][k]["improved"], J(f)["summary"][k]["worse"]])
tie(SPD, "(here the stem alone, stages 1-{}, stages {}-{})", SWE[0],
    lambda: [J(SWE[0])["width_groups"][1][-1] + 1, J(SWE[0])["width_groups"][2][0] + 1,
             J(SWE[0])["width_groups"][2][-1] + 1])
tie(SPD, "within the sample's noise on the longer-trained supernet ({} better, {} worse)", SWE[1],
    lambda: [J(SWE[1])["summary"]["widths_only"]["improved"], J(SWE[1])["summary"]["widths_only"]["worse"]])


tie(SPD, "lifts the estimates ({}-{}) towards the shipped preset's but ranks no better than the short schedules ({} and {},",
    "search_speed_ref10_ps_long.json",
    lambda: _ps("search_speed_ref10_ps_long.json")["estimate_accuracy_range"]
    + [_th("search_speed_ref10_ps_long.json")["spearman"], _th("search_speed_ps_long.json")["spearman"]])


FG = "fidelity_genes.json"
FG_EST = ("shipped", "progressive_5", "progressive_7", "progressive_long")


def _fg(feature: str) -> dict:
    return J(FG)["features"][feature]


for _label, _feat in (("stem width", "stem_width"), ("stage-5 kernel", "s5_kernel"),
                      ("sum of the five stages' kernels", "sum_kernel"), ("total MACs", "total_macs"),
                      ("stage-1 kernel", "s1_kernel")):
    tie(SPD, f"| {_label} | {{}} ({{}}) | {{}} | {{}} | {{}} | {{}} |", FG,
        lambda f=_feat: [_fg(f)["reference"]["spearman"], _fg(f)["reference"]["spearman_p"]]
        + [_fg(f)[e]["estimate"] for e in FG_EST])
tie(SPD, "genomes (as a number) and a few aggregates, {} varying features in all,", FG, lambda: [len(J(FG)["features"])])
tie(SPD, "kernel each rank it at {}, the only correlations that survive a Bonferroni correction over the {} features "
    "(p < {}); they go together in this sample ({}), and with the other held fixed each keeps {} (partial",
    FG, lambda: [_fg("stem_width")["reference"]["spearman"], len(J(FG)["features"]), J(FG)["bonferroni_p"],
                 J(FG)["top_features_with_each_other"]["s5_kernel ~ stem_width"],
                 J(FG)["top_partial_spearman"]["stem_width"]["s5_kernel"]])
tie(SPD, "which the estimates favour ({}-{}) and the reference, if anything, does not ({}, not significant); the "
    "estimates' error (estimate minus reference) rises with it at {}-{} in all four supernets.", FG,
    lambda: [min(_fg("s1_kernel")[e]["estimate"] for e in FG_EST), max(_fg("s1_kernel")[e]["estimate"] for e in FG_EST),
             _fg("s1_kernel")["reference"]["spearman"], min(_fg("s1_kernel")[e]["error"] for e in FG_EST),
             max(_fg("s1_kernel")[e]["error"] for e in FG_EST)])
tie(SPD, "Grouped by the stage-5 kernel (3, 5, 7: {}, {} and {} genomes), the reference means are {}, {} and {}, and "
    "inside the largest group every estimate ranks the reference backwards ({}, {}, {}, {}).", FG,
    lambda: [J(FG)["groups"][k]["n"] for k in "357"] + [J(FG)["groups"][k]["reference_mean"] for k in "357"]
    + [J(FG)["groups"]["7"][e]["spearman_within"] for e in FG_EST])
tie(SPD, "input ({} of the 20 genomes) stages 3-5 run on 3x3 maps", "search_speed_refnoise10.json",
    lambda: [sum(g["genome"]["backbone"]["resolution"] <= 24 for g in J("search_speed_refnoise10.json")["genomes"].values())])


_KT, _P5 = "search_speed_ref10_ps_kt.json", "search_speed_ref10_ps.json"
tie(SPD, "block above): {} s in all,", _KT, lambda: [_ps(_KT)["one_time_cost"]["supernet_training_seconds"]])
tie(SPD, "Its estimates span {}-{} (without: {}-{}) and rank the genomes as the run without the matrices did: {} against "
    "one 10-epoch training ({} without), {} against the mean of the two ({}), {} against the 2-epoch reference ({});",
    _KT, lambda: _ps(_KT)["estimate_accuracy_range"] + _ps(_P5)["estimate_accuracy_range"]
    + [_th(_KT)["spearman"], _th(_P5)["spearman"], _vm(_KT)["spearman"], _vm(_P5)["spearman"],
       _th("search_speed_ps_kt.json")["spearman"], _th("search_speed_ps.json")["spearman"]])
tie(SPD, "the estimate's error still rises with the stage-1 kernel ({} against {} without;", FG,
    lambda: [_fg("s1_kernel")["progressive_5_kt"]["error"], _fg("s1_kernel")["progressive_5"]["error"]])

_PROG = ("progressive_5", "progressive_7", "progressive_long", "progressive_5_kt")


def _stem(*keys):
    d = J(FG)["group_analysis"]["stem_width"]
    for k in keys:
        d = d[k]
    return d


def _sd(kind: str, who: str) -> float:
    return _stem("spread", who, kind)


tie(SPD, "By the stem width (8 and 16: {} and {} genomes), the two 10-epoch trainings rank the genomes inside each "
    "group alike at only {} and {} ({} over all 20):", FG,
    lambda: [_stem("groups", "8"), _stem("groups", "16"), _stem("trainings_within", "8"),
             _stem("trainings_within", "16"), _stem("trainings_overall")])
tie(SPD, "groups' mean reference accuracies alone rank it at {}.", FG, lambda: [_stem("group_means_vs_reference")])
tie(SPD, "(the standard deviation of the group means: {}-{} against the reference's {}; the shipped preset {}), but "
    "spread the genomes inside a group {} to {} times as widely as the reference does (pooled within-group standard "
    "deviation {}-{} against {}),", FG,
    lambda: [min(_sd("between_sd", e) for e in _PROG), max(_sd("between_sd", e) for e in _PROG),
             _sd("between_sd", "reference"), _sd("between_sd", "shipped"),
             min(_sd("within_sd", e) for e in _PROG) / _sd("within_sd", "reference"),
             max(_sd("within_sd", e) for e in _PROG) / _sd("within_sd", "reference"),
             min(_sd("within_sd", e) for e in _PROG), max(_sd("within_sd", e) for e in _PROG),
             _sd("within_sd", "reference")])
tie(SPD, "an oracle, would still rank the reference at only {}-{} across the five estimates.", FG,
    lambda: [min(_stem("group_shift_vs_reference").values()), max(_stem("group_shift_vs_reference").values())])

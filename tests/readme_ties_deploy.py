"""README ties: the regulariser benchmark, float vs PTQ vs QAT, checking an export, and `make demo`."""
from __future__ import annotations

import statistics

from readme_ties import J, mean_std, tie



# --------------------------------------------------------------------------------------------- regularisers.json

REG = "### Regulariser benchmark"


def _reg_rows():
    return J("regularisers.json")["rows"]


def _reg_label(r) -> str:
    return r["rule"] if "fixed" in r["rule"] else f"{r['rule']} (calibrated)"


for _i, _r in enumerate(_reg_rows()):
    def _vals(i=_i):
        r = _reg_rows()[i]
        acc = mean_std(r["accuracy"]["values"], 1, 100)
        em = mean_std(r["expected_macs"]["values"], 1, 1e-3)
        fr = mean_std(r["macs_fraction"]["values"], 1, 100)
        fin = mean_std(r["final_exit_accuracy"]["values"], 1, 100)
        rates = [mean_std(e["values"], 1, 100)[0] for e in r["exit_rates"]]
        return [*acc, *em, *fr, *rates, r["admissible_test"], len(r["seeds"]), *fin]
    tie(REG, f"| {_r['variant']} | {_reg_label(_r)} | {{}} ± {{}} | {{}} ± {{}} | {{}} ± {{}} | {{}} / {{}} / {{}} | "
             "{}/{} | {} ± {} |", "regularisers.json", _vals)

tie(REG, "`.venv/bin/python benchmarks/regularisers.py` ({} s on this 2-core machine", "regularisers.json",
    lambda: [J("regularisers.json")["wall_seconds"]])
tie(REG, "~{}k parameters", "regularisers.json", lambda: [J("regularisers.json")["parameters"] / 1e3])
tie(REG, "Staged costs {} / {} / {} MACs", "regularisers.json", lambda: J("regularisers.json")["exit_macs"])
tie(REG, "M_max = {} % of the full network = {}k MACs", "regularisers.json",
    lambda: [J("regularisers.json")["settings"]["budget_fraction"] * 100, J("regularisers.json")["max_macs"] / 1e3])
tie(REG, "a class-balanced {}k-image subset", "regularisers.json",
    lambda: [J("regularisers.json")["settings"]["train_limit"] / 1e3])
tie(REG, "the {} validation images, figures on the {} test images", "regularisers.json",
    lambda: [J("regularisers.json")["dataset"]["val"], J("regularisers.json")["dataset"]["test"]])


def _reg(variant, rule):
    return next(r for r in _reg_rows() if r["variant"] == variant and r["rule"] == rule)


FIXED = "confidence, fixed D_k >= 0.5"
tie(REG, "NACHOS equals NACHOS_NC at equal thresholds ({} ± {} % vs {} ± {} % of the full MACs)", "regularisers.json",
    lambda: [*mean_std(_reg("nachos", FIXED)["macs_fraction"]["values"], 1, 100),
             *mean_std(_reg("nachos_nc", FIXED)["macs_fraction"]["values"], 1, 100)])
tie(REG, "makes no difference beyond the spread ({} ± {} vs {} ± {})", "regularisers.json",
    lambda: [*mean_std(_reg("nachos", "confidence")["accuracy"]["values"], 1, 100),
             *mean_std(_reg("nachos_np", "confidence")["accuracy"]["values"], 1, 100)])
tie(REG, "the **plain CE sum is best**: {} % at {} % of the MACs", "regularisers.json",
    lambda: [mean_std(_reg("ce_sum", "max_softmax")["accuracy"]["values"], 1, 100)[0],
             mean_std(_reg("ce_sum", "max_softmax")["macs_fraction"]["values"], 1, 100)[0]])
tie(REG, "which costs about {} points on the final exit", "regularisers.json",
    lambda: [mean_std(_reg("ce_sum", "max_softmax")["final_exit_accuracy"]["values"], 1, 100)[0]
             - mean_std(_reg("nachos", "confidence")["final_exit_accuracy"]["values"], 1, 100)[0]])


def _signal_gaps():
    return [mean_std(_reg(v, "max_softmax")["accuracy"]["values"], 1, 100)[0]
            - mean_std(_reg(v, "confidence")["accuracy"]["values"], 1, 100)[0] for v in ("nachos", "nachos_np", "nachos_nc")]


tie(REG, "a worse exit signal than max-softmax on the same models ({}-{} points)", "regularisers.json",
    lambda: [min(_signal_gaps()), max(_signal_gaps())])


def _over_budget():
    d = J("regularisers.json")
    out = []
    for v in ("nachos", "nachos_np", "nachos_nc"):
        r = _reg(v, "confidence")
        out += [(m - d["max_macs"]) / d["full_macs"] * 100 for m in r["expected_macs"]["values"]]
    return out


tie(REG, "exceeded M_max in {} of {} seeds for the NACHOS variants, by at most {} % of the full MACs",
    "regularisers.json", lambda: [sum(1 for x in _over_budget() if x > 0) // 3, 3, max(_over_budget())])
tie("### Where we differ from NACHOS", "which beat it by {} to {} accuracy points at equal budget", "regularisers.json",
    lambda: [min(_grid_gaps()), max(_grid_gaps())])


def _grid_gaps():
    return [(statistics.fmean(r["accuracy"]["values"]) - statistics.fmean(r["grid_accuracy"]["values"])) * 100
            for r in _reg_rows() if "grid_accuracy" in r]


# --------------------------------------------------------------------------------------------- quantization.json

QNT = "### Float vs PTQ vs QAT"


def _q(row):
    return J("quantization.json")["rows"][row]


def _qrow(row):
    r = _q(row)
    return [r["accuracy"], *r["exit_rates"], r["expected_macs"], r["per_exit_accuracy"]["exit_0"],
            r["per_exit_accuracy"]["final"]]


tie(QNT, "| float, Keras | {} | {} / {} | {} | {} / {} | – |", "quantization.json", lambda: _qrow("float"))
tie(QNT, "| float, fine-tuned like QAT ({} epoch), Keras | {} | {} / {} | {} | {} / {} | +{} pt |", "quantization.json",
    lambda: [J("quantization.json")["qat_epochs"], *_qrow("float_finetuned"), _q("float_finetuned")["gaps"]["accuracy_points"]])
tie(QNT, "| int8 PTQ, TFLM staged | {} | {} / {} | {} | {} / {} | +{} pt |", "quantization.json",
    lambda: [*_qrow("ptq"), _q("ptq")["gaps"]["accuracy_points"]])
tie(QNT, "| int8 QAT ({} epoch), TFLM staged | {} | {} / {} | {} | {} / {} | +{} pt |", "quantization.json",
    lambda: [_q("qat")["qat_epochs"], *_qrow("qat"), _q("qat")["gaps"]["accuracy_points"]])
tie(QNT, "measures the whole Fashion-MNIST test split ({} images)", "quantization.json",
    lambda: [J("quantization.json")["n"]])
tie(QNT, "Every row uses the same threshold, {}, calibrated", "quantization.json",
    lambda: [J("quantization.json")["thresholds"][0]])
tie(QNT, "**PTQ costs nothing here**: +{} points thresholded. Exit 0 gains {} points and the final exit loses {}.",
    "quantization.json", lambda: [_q("ptq")["gaps"]["accuracy_points"],
                                  _q("ptq")["gaps"]["per_exit_accuracy_points"]["exit_0"],
                                  -_q("ptq")["gaps"]["per_exit_accuracy_points"]["final"]])
tie(QNT, "QAT lands {} points above the float model. The float model fine-tuned the same way lands {} points above it, "
         "so QAT beats its own float control by only {} points.", "quantization.json",
    lambda: [_q("qat")["gaps"]["accuracy_points"], _q("float_finetuned")["gaps"]["accuracy_points"],
             _q("qat")["gaps"]["accuracy_points"] - _q("float_finetuned")["gaps"]["accuracy_points"]])
tie(QNT, "took {} s. The float fine-tune took {} s and the PTQ export {} s. The thresholded TFLM evaluation ran at {} "
         "ms per image on this x86 host. The whole script took {} s.", "quantization.json",
    lambda: [_q("qat")["seconds"]["export"], _q("float_finetuned")["finetune_seconds"], _q("ptq")["seconds"]["export"],
             _q("ptq")["ms_per_image"], J("quantization.json")["wall_seconds"]])

# --------------------------------------------------------------------------------------------- deploy_check*.json

DCK = "### Checking an export"
tie(DCK, "**Round trip**: both arrays ({} and {} bytes) are identical byte for byte.", "deploy_check.json",
    lambda: [s["file_bytes"] for s in J("deploy_check.json")["roundtrip"]["stages"]])
tie(DCK, "the firmware section below measured), for the first {} test images", "deploy_check.json",
    lambda: [J("deploy_check.json")["limit"]])
tie(DCK, "**Independent run**: accuracy {}, exit rates {} / {}, expected MACs {}. Stage {} ran {} times.",
    "deploy_check.json", lambda: [J("deploy_check.json")["independent"]["accuracy"],
                                  *J("deploy_check.json")["independent"]["exit_rates"],
                                  J("deploy_check.json")["independent"]["expected_macs"], 1,
                                  J("deploy_check.json")["independent"]["stage_invocations"][1]])
tie(DCK, "also agrees exactly, at {} on the same images", "deploy_check_qat.json",
    lambda: [J("deploy_check_qat.json")["independent"]["accuracy"]])


# --------------------------------------------------------------------------------------------- make demo (quantization + deploy_check)

DEMO = "### `make demo`, measured"


def _d(*keys, source="demo.json"):
    v = J(source)
    for k in keys:
        v = v[k]
    return v


def _sol(*keys):
    v = _d("admissible")[0]
    for k in keys:
        v = v[k]
    return v


tie(DEMO, "From the start to the end of its two independent checks it took **{} s**", "demo.json",
    lambda: [_d("seconds_until_checks_done")])
tie(DEMO, "and with the firmware build and its QEMU run {} s:", "demo.json", lambda: [_d("make_demo_seconds")])
tie(DEMO, "(min accuracy {}, max expected MACs {}M, seed {}) judged {} candidates, {} of them pruned untrained", "demo.json",
    lambda: [_d("config", "constraints", "min_accuracy"), _d("config", "constraints", "max_macs") / 1e6,
             _d("config", "seed"), _d("search", "candidates"), _d("search", "pruned_untrained")])
tie(DEMO, "{} s each on average ({} s in all); {} met the search-time floor.", "demo.json",
    lambda: [_d("search", "evaluate_seconds_mean"), _d("search", "evaluate_seconds_sum"), _d("search", "feasible")])
tie(DEMO, "the final stage fine-tuned {} of them", "demo.json", lambda: [_d("final", "members")])
tie(DEMO, "({} + {} epochs on {} images, {} s for the four)", "demo.json",
    lambda: [_d("config", "budget", "final_epochs"), _d("config", "budget", "final_head_epochs"),
             _d("config", "budget", "final_train"), _d("final", "seconds_sum")])
tie(DEMO, "So the admissible set has **{} solutions**", "demo.json", lambda: [len(_d("admissible"))])


def _r(*keys):
    return _d(*keys, source="demo_recheck.json")


tie(DEMO, "where a candidate took {} s on average instead of {}", "demo_recheck.json",
    lambda: [_r("search", "evaluate_seconds_mean"), _d("search", "evaluate_seconds_mean")])
tie(DEMO, "took **{} s** from the start to the end of its two checks and {} s with", "demo_recheck.json",
    lambda: [_r("seconds_until_checks_done"), _r("make_demo_seconds")])
tie(DEMO, "Its search judged the same {} candidates ({} s in all)", "demo_recheck.json",
    lambda: [_r("search", "candidates"), _r("search", "evaluate_seconds_sum")])
tie(DEMO, "the final stage took {} s for the four,", "demo_recheck.json", lambda: [_r("final", "seconds_sum")])
tie(DEMO, "and kept {} solutions. So the 10-minute goal", "demo_recheck.json", lambda: [len(_r("admissible"))])
tie(DEMO, "holds on the faster machine only (with {} s to spare)", "demo.json",
    lambda: [600 - _d("seconds_until_checks_done")])


def _w(*keys):
    return _d(*keys, source="demo_workers.json")


tie(DEMO, "the `make demo` above took **{} s** until the end of its checks", "demo_one_process.json",
    lambda: [_d("seconds_until_checks_done", source="demo_one_process.json")])
tie(DEMO, "a candidate {} s on average that time", "demo_one_process.json",
    lambda: [_d("search", "evaluate_seconds_mean", source="demo_one_process.json")])
tie(DEMO, "Three changes brought the same `make demo` to **{} s** until the end of its checks and {} s with the "
          "firmware", "demo_workers.json", lambda: [_w("seconds_until_checks_done"), _w("make_demo_seconds")])
tie(DEMO, "with the same {} candidates, the same four finalists and the same {} solutions", "demo_workers.json",
    lambda: [_w("search", "candidates"), len(_w("admissible"))])
tie(DEMO, "a check beside the export (2026-12-07): {} s on that slower machine", "demo_workers.json",
    lambda: [_w("seconds_until_checks_done")])
tie(DEMO, "with {} s to spare until the checks and {} s with the firmware", "demo_workers.json",
    lambda: [600 - _w("seconds_until_checks_done"), 600 - _w("make_demo_seconds")])
tie(DEMO, "a candidate took {} s on average in this run", "demo_workers.json",
    lambda: [_w("search", "evaluate_seconds_mean")])


CONCRETE = ("demo_before_concrete.json", "demo_concrete.json", "demo_concrete2.json")


def _cs(*keys):
    v = J("convert_speed.json")
    for k in keys:
        v = v[k]
    return v


tie(DEMO, "the conversion took {} s through the SavedModel export and {} s without it", "convert_speed.json",
    lambda: [_cs("seconds_keras_export"), _cs("seconds_concrete_function")])
tie(DEMO, "TFLM on the 10,000 test images) {} s", "convert_speed.json", lambda: [_cs("int8_report", "seconds")])
tie(DEMO, "a candidate took {} to {} s on average with the two workers, {} s in the run above", "demo_concrete*.json",
    lambda: [min(_d("search", "evaluate_seconds_mean", source=f) for f in CONCRETE),
             max(_d("search", "evaluate_seconds_mean", source=f) for f in CONCRETE),
             _w("search", "evaluate_seconds_mean")])
tie(DEMO, "of the commit before took **{} s** until the end of its checks", CONCRETE[0],
    lambda: [_d("seconds_until_checks_done", source=CONCRETE[0])])
tie(DEMO, "with the change **{} s** and **{} s** in two runs after it", "demo_concrete*.json",
    lambda: [_d("seconds_until_checks_done", source=f) for f in CONCRETE[1:]])
tie(DEMO, "each with the same {} candidates, the same four finalists and the same {} solutions", "demo_concrete*.json",
    lambda: [_d("search", "candidates", source=CONCRETE[2]), len(_d("admissible", source=CONCRETE[2]))])


def _demo_member(sid):
    return next(a for a in _d("admissible") if a["id"] == sid)


def _demo_moved(sid):
    """(val accuracy, MACs) the demo's member `sid` was moved from, and to."""
    was = _d("final", "calibration", sid, "moved", "from")
    return was["accuracy"], was["expected_macs"], _demo_member(sid)["val"]["accuracy"], \
        _demo_member(sid)["val"]["expected_macs"]


tie(DEMO, "After re-training `c0040` ({} at {} expected MACs) dominated `c0027` ({} at {}) and `c0028` ({} at {}); the "
          "final stage moved both along their own trade-off curves to cheaper points, `c0027` to {} at {} and `c0028` "
          "to {} at {}.", "demo.json",
    lambda: [_demo_member("c0040")["val"]["accuracy"], _demo_member("c0040")["val"]["expected_macs"],
             *_demo_moved("c0027")[:2], *_demo_moved("c0028")[:2], *_demo_moved("c0027")[2:],
             *_demo_moved("c0028")[2:]])
tie(DEMO, "({} % and {} % fewer MACs for {} and {} points less validation accuracy)", "demo.json",
    lambda: [100 * (1 - _demo_member(i)["val"]["expected_macs"] / _demo_member("c0040")["val"]["expected_macs"])
             for i in ("c0027", "c0028")]
    + [100 * (_demo_member("c0040")["val"]["accuracy"] - _demo_member(i)["val"]["accuracy"])
       for i in ("c0027", "c0028")])


def _demo_row(i):
    s = _d("admissible")[i]
    return [s["exits"], s["val"]["accuracy"], s["val"]["expected_macs"], s["test"]["accuracy"],
            s["test"]["expected_macs"], s["int8"]["accuracy"], s["int8"]["expected_macs"], sum(s["int8"]["stage_bytes"]),
            s["int8"]["arena_bytes"]]


for _i, _s in enumerate(J("demo.json")["admissible"]):
    tie(DEMO, f"| `{_s['id']}` | {{}} | {{}} | {{}} | {{}} | {{}} | {{}} | {{}} | {{}} | {{}} |", "demo.json",
        lambda i=_i: _demo_row(i))
tie(DEMO, "`c0040` was judged {} at {} expected MACs on the {} validation images of the search, and reached {} at {} on "
          "all 6,000 after fine-tuning.", "demo.json",
    lambda: [_d("final", "search_metrics", "c0040", "accuracy"), _d("final", "search_metrics", "c0040", "expected_macs"),
             _d("config", "budget", "proxy_val"), _demo_member("c0040")["val"]["accuracy"],
             _demo_member("c0040")["val"]["expected_macs"]])
def _seed(i, *keys):
    v = J(f"demo_seed{i}.json")
    for k in keys:
        v = v[k]
    return v


def _moved(i, sid):
    """(val accuracy, val MACs) a seed run's member was moved from, and to (a solution of that run)."""
    was = _seed(i, "final", "calibration", sid, "moved", "from")
    now = next(a for a in _seed(i, "admissible") if a["id"] == sid)["val"]
    return was["accuracy"], was["expected_macs"], now["accuracy"], now["expected_macs"]


tie(DEMO, "kept **{}** and **{}** solutions of {} finalists each, in {} s and {} s.", "demo_seed1.json",
    lambda: [len(_seed(1, "admissible")), len(_seed(2, "admissible")),
             _seed(1, "final", "members") if _seed(1, "final", "members") == _seed(2, "final", "members") else -1,
             _seed(1, "search_seconds"), _seed(2, "search_seconds")])
tie(DEMO, "with seed 1 `c0046` ({} at {} expected MACs after its fine-tune) was dominated by `c0028` ({} at {}) and "
          "moved along its own trade-off curve to {} at {};", "demo_seed1.json",
    lambda: [*_moved(1, "c0046")[:2],
             next(a for a in _seed(1, "admissible") if a["id"] == "c0028")["val"]["accuracy"],
             next(a for a in _seed(1, "admissible") if a["id"] == "c0028")["val"]["expected_macs"],
             *_moved(1, "c0046")[2:]])
tie(DEMO, "with seed 2, `c0013` ({} at {}, dominated by `c0026`, {} at {}) moved to {} at {}, the cheapest solution",
    "demo_seed2.json",
    lambda: [*_moved(2, "c0013")[:2],
             next(a for a in _seed(2, "admissible") if a["id"] == "c0026")["val"]["accuracy"],
             next(a for a in _seed(2, "admissible") if a["id"] == "c0026")["val"]["expected_macs"],
             *_moved(2, "c0013")[2:]]
    if min(a["val"]["expected_macs"] for a in _seed(2, "admissible")) == _moved(2, "c0013")[3] else [-1])
tie(DEMO, "kept **{}** and **{}** solutions; with seed 3 `c0024` ({} at {} after its fine-tune, dominated) moved to {} "
          "at {}, the cheapest solution of that run; with seed 4 no member moved.", "demo_seed3.json",
    lambda: [len(_seed(3, "admissible")), len(_seed(4, "admissible")), *_moved(3, "c0024")]
    if not any((c or {}).get("moved") for c in _seed(4, "final", "calibration").values())
    and min(a["val"]["expected_macs"] for a in _seed(3, "admissible")) == _moved(3, "c0024")[3] else [-1])
tie(DEMO, "The best solutions of seeds 1 and 2 reach {} and {} int8 TFLM test accuracy.", "demo_seed1.json",
    lambda: [max(a["int8"]["accuracy"] for a in _seed(i, "admissible")) for i in (1, 2)])
tie(DEMO, "`make demo` exports solution 0 (the cheapest), `c0028`: {} exits, rule `confidence`, staged costs {} / {} / "
          "{} / {} MACs.", "demo.json",
    lambda: [_sol("exits"), *_sol("exit_macs")] if _sol("id") == _d("export", "solution") == "c0028" else [-1])
tie(DEMO, "| validation, float | {} | {} |", "demo.json", lambda: [_sol("val", "accuracy"), _sol("val", "expected_macs")])
tie(DEMO, "| test ({} images), float | {} | {} |", "demo.json",
    lambda: [_sol("int8", "n"), _sol("test", "accuracy"), _sol("test", "expected_macs")])
tie(DEMO, "| test ({} images), int8 TFLM staged (`pareto.json` \"int8\") | {} | {} |", "demo.json",
    lambda: [_sol("int8", "n"), _sol("int8", "accuracy"), _sol("int8", "expected_macs")])
tie(DEMO, "| test, first {} images, int8 TFLM staged (`nachos-tf evaluate`) | {} | {} |", "demo.json",
    lambda: [_d("evaluate", "n"), _d("evaluate", "accuracy"), _d("evaluate", "expected_macs")])
tie(DEMO, "The four stage files are {}, {}, {} and {} bytes, with one exported arena of {} bytes", "demo.json",
    lambda: [*_d("export", "stage_bytes"), _d("export", "arena_bytes")])
tie(DEMO, "The firmware gave the class and exit of `nachos-tf evaluate` on {} of {} test images; its flash is {} B (model "
          "arrays {} + code {}) and its RAM {} B (it used at most {} B of the arena, in the third stage; none of these "
          "images reached the fourth).", "demo.json",
    lambda: [_d("firmware", "agree"), _d("firmware", "n"), _d("firmware", "flash_bytes"), _d("firmware", "model_bytes"),
             _d("firmware", "code_bytes"), _d("firmware", "ram_bytes"),
             max(_d("firmware", "arena_used")) if _d("firmware", "arena_used")[2] == max(_d("firmware", "arena_used"))
             and _d("firmware", "arena_used")[3] == 0 else -1])
tie(DEMO, "so the whole `make demo` took {} s.", "demo.json", lambda: [_d("make_demo_seconds")])
tie(DEMO, "TFLM took {} ms per image on this x86 host.", "demo.json", lambda: [_d("evaluate", "ms_per_image")])

# one validation pass fewer per finalist (demo_valonce.json)
_VO = "demo_valonce.json"
tie(DEMO, "One `make demo` with it took **{} s** until the end of its checks", _VO,
    lambda: [_d("seconds_until_checks_done", source=_VO)])
tie(DEMO, "`benchmarks/demo_summary.py runs/dd --until-checks {} --out ...`", _VO,
    lambda: [_d("seconds_until_checks_done", source=_VO)])
tie(DEMO, "with the same {} candidates, the same four finalists and the same {} solutions, figure for figure; a "
          "candidate took {} s on average (the runs above: {}-{} s). The four finalists' seconds summed to {} s (the "
          "runs above: {}-{} s)", _VO,
    lambda: [_d("search", "candidates", source=_VO), len(_d("admissible", source=_VO)),
             _d("search", "evaluate_seconds_mean", source=_VO),
             min(_d("search", "evaluate_seconds_mean", source=f) for f in CONCRETE),
             max(_d("search", "evaluate_seconds_mean", source=f) for f in CONCRETE),
             _d("final", "seconds_sum", source=_VO),
             min(_d("final", "seconds_sum", source=f) for f in CONCRETE),
             max(_d("final", "seconds_sum", source=f) for f in CONCRETE)])

# the cosine final stage in the presets (demo_cosine.json) against the constant schedule's run (demo_valonce.json)
_DC = "demo_cosine.json"


def _dc_sol(source, sid):
    return next(s for s in _d("admissible", source=source) if s["id"] == sid)


tie(DEMO, "`benchmarks/demo_summary.py runs/dcos2 --seconds {} --until-checks {} --out ...`) searched the same {} "
          "candidates", _DC,
    lambda: [_d("make_demo_seconds", source=_DC), _d("seconds_until_checks_done", source=_DC),
             _d("search", "candidates", source=_DC)])
tie(DEMO, "kept **{} solutions**; three are more accurate", _DC, lambda: [len(_d("admissible", source=_DC))])
tie(DEMO, "`c0040` {} % at {} ({} % at {}), `c0027` {} % at {} ({} % at {}), `c0038` {} % at {} ({} % at {}); `c0028`, "
          "dominated after its fine-tune, moved along its own curve to {} % at {}", _DC,
    lambda: [v for sid in ("c0040", "c0027", "c0038")
             for v in (100 * _dc_sol(_DC, sid)["test"]["accuracy"], _dc_sol(_DC, sid)["test"]["expected_macs"],
                       100 * _dc_sol(_VO, sid)["test"]["accuracy"], _dc_sol(_VO, sid)["test"]["expected_macs"])]
    + [100 * _dc_sol(_DC, "c0028")["test"]["accuracy"], _dc_sol(_DC, "c0028")["test"]["expected_macs"]])
tie(DEMO, "It took **{} s** until the end of its checks, over the 10-minute goal, and {} s with the Cortex-M4F firmware",
    _DC, lambda: [_d("seconds_until_checks_done", source=_DC), _d("make_demo_seconds", source=_DC)])
tie(DEMO, "this run's candidates took {} s on average and its finalists {} s in all ({} s and {} s in the run before "
          "it", _DC,
    lambda: [_d("search", "evaluate_seconds_mean", source=_DC), _d("final", "seconds_sum", source=_DC),
             _d("search", "evaluate_seconds_mean", source=_VO), _d("final", "seconds_sum", source=_VO)])

# the final stage's shared distillation targets and one fine-tuning phase (final_stage_ab.json, demo_onephase.json)
_FA, _DO = "final_stage_ab.json", "demo_onephase.json"


def _fa(label):
    return next(r for r in _d("runs", source=_FA) if r["run"].endswith(label))


def _fa_sol(label, sid):
    return next(s for s in _fa(label)["admissible"] if s["id"] == sid)


tie(DEMO, "`benchmarks/final_stage_summary.py runs/abOld={} runs/abTeach={} runs/abNew={} --out ...`", _FA,
    lambda: [_fa(k)["seconds"] for k in ("abOld", "abTeach", "abNew")])
tie(DEMO, "with the code before these changes {} s, with the shared targets {} s (the same {} solutions, figure for "
          "figure), and with one phase as well {} s", _FA,
    lambda: [_fa("abOld")["seconds"], _fa("abTeach")["seconds"], len(_fa("abTeach")["admissible"]),
             _fa("abNew")["seconds"]])
tie(DEMO, "larger test hypervolume on this search ({} against {})", _FA,
    lambda: [_fa("abNew")["test_hypervolume"], _fa("abTeach")["test_hypervolume"]])
tie(DEMO, "`c0040` {} % at {} expected MACs, `c0028` {} % at {}, `c0038` {} % at {}, and `c0027`, dominated after its "
          "fine-tune, moved along its own curve to {} % at {}", _FA,
    lambda: [v for sid in ("c0040", "c0028", "c0038", "c0027")
             for v in (100 * _fa_sol("abNew", sid)["test"]["accuracy"], _fa_sol("abNew", sid)["test"]["expected_macs"])])
tie(DEMO, "`benchmarks/demo_summary.py runs/d02 --seconds {} --until-checks {} --out ...`) searched the same {} "
          "candidates", _DO,
    lambda: [_d("make_demo_seconds", source=_DO), _d("seconds_until_checks_done", source=_DO),
             _d("search", "candidates", source=_DO)])
tie(DEMO, "kept **{} solutions**, those of the re-run above; it took **{} s** until the end of its checks and {} s with "
          "the Cortex-M4F firmware and its QEMU run ({}/{} images", _DO,
    lambda: [len(_d("admissible", source=_DO)), _d("seconds_until_checks_done", source=_DO),
             _d("make_demo_seconds", source=_DO), _d("firmware", "agree", source=_DO), _d("firmware", "n", source=_DO)])
tie(DEMO, "Its candidates took {} s on average (the {}-s run above: {} s)", _DO,
    lambda: [_d("search", "evaluate_seconds_mean", source=_DO), _d("seconds_until_checks_done", source=_DC),
             _d("search", "evaluate_seconds_mean", source=_DC)])
tie(DEMO, "on the same machine the final stage took {} s less ({} against {} s above)", _FA,
    lambda: [_fa("abOld")["seconds"] - _fa("abNew")["seconds"], _fa("abOld")["seconds"], _fa("abNew")["seconds"]])
_DO2 = "demo_onephase2.json"
tie(DEMO, "(`benchmarks/results/demo_onephase2.json`, `runs/d03`, `--seconds {} --until-checks {}`) gave the same {} "
          "solutions, figure for figure, in **{} s** until the end of its checks and {} s with the firmware (candidates "
          "{} s on average)", _DO2,
    lambda: [_d("make_demo_seconds", source=_DO2), _d("seconds_until_checks_done", source=_DO2),
             len(_d("admissible", source=_DO2)), _d("seconds_until_checks_done", source=_DO2),
             _d("make_demo_seconds", source=_DO2), _d("search", "evaluate_seconds_mean", source=_DO2)])
_S1P, _S2P = "demo_onephase_seed1.json", "demo_onephase_seed2.json"
tie(DEMO, "kept **{}** and **{}** solutions of {} finalists each, in {} s and {} s; their best reach {} and {} int8 TFLM "
          "test accuracy", _S1P,
    lambda: [len(_d("admissible", source=_S1P)), len(_d("admissible", source=_S2P)),
             _d("final", "members", source=_S1P), _d("search_seconds", source=_S1P), _d("search_seconds", source=_S2P),
             max(s["int8"]["accuracy"] for s in _d("admissible", source=_S1P)),
             max(s["int8"]["accuracy"] for s in _d("admissible", source=_S2P))])


# --------------------------------------------------------------------------------------------- stages that never run
TRIM = "demo_trimmed.json"


def _trim_row(run_end, sid):
    return next(r for r in J("export_trim.json")["solutions"] if r["run"].endswith(run_end) and r["solution"] == sid)


def _onephase_member(sid):
    return next(a for a in _d("admissible", source="demo_onephase.json") if a["id"] == sid)


def _trim_member(sid):
    return next(a for a in _d("admissible", source=TRIM) if a["id"] == sid)


tie(DEMO, "`c0027` in `demo_onephase.json` exported four stages, {} B, of which no image ran the fourth ({} B)",
    "demo_onephase.json",
    lambda: [sum(_d("export", "stage_bytes", source="demo_onephase.json")),
             _d("export", "stage_bytes", source="demo_onephase.json")[3]
             if _d("firmware", "arena_used", source="demo_onephase.json")[3] == 0
             and _onephase_member("c0027")["test"]["exit_rates"][3] == 0 else -1])
tie(DEMO, "`c0028` in `demo_cosine.json` took every image at its first exit yet exported {} B of stages", "demo_cosine.json",
    lambda: [sum(_d("export", "stage_bytes", source="demo_cosine.json"))
             if next(a for a in _d("admissible", source="demo_cosine.json") if a["id"] == "c0028")["test"]["exit_rates"][0]
             == 1.0 and _d("export", "solution", source="demo_cosine.json") == "c0028" else -1])
tie(DEMO, "`benchmarks/demo_summary.py runs/demo --seconds {} --until-checks {} --out ...`) judged the same {} candidates",
    TRIM, lambda: [_d("make_demo_seconds", source=TRIM), _d("seconds_until_checks_done", source=TRIM),
                   _d("search", "candidates", source=TRIM)])
tie(DEMO, "re-trained them and kept **{} solutions**", TRIM, lambda: [len(_d("admissible", source=TRIM))])
tie(DEMO, "(for example `c0040`: {} % test at {} expected MACs)", TRIM,
    lambda: [100 * _trim_member("c0040")["test"]["accuracy"], _trim_member("c0040")["test"]["expected_macs"]])
tie(DEMO, "`c0027` ({} validation accuracy at {} expected MACs, exit 1's threshold -inf), exports as **{} stages, {} B** "
          "({} + {}): the export of every stage of the same model would be {} B, {} times as much", "export_trim.json",
    lambda: [_trim_member("c0027")["val"]["accuracy"], _trim_member("c0027")["val"]["expected_macs"],
             _trim_row("runs/demo", "c0027")["exported"]["stages"], _trim_row("runs/demo", "c0027")["exported"]["model_bytes"],
             *_trim_row("runs/demo", "c0027")["exported"]["stage_bytes"],
             _trim_row("runs/demo", "c0027")["every_stage"]["model_bytes"],
             _trim_row("runs/demo", "c0027")["model_bytes_ratio"]])
tie(DEMO, "The arena stays {} B (stage 0 needs the most).", "export_trim.json",
    lambda: [_trim_row("runs/demo", "c0027")["exported"]["arena_bytes"]
             if _trim_row("runs/demo", "c0027")["every_stage"]["arena_bytes"]
             == _trim_row("runs/demo", "c0027")["exported"]["arena_bytes"] == _d("export", "arena_bytes", source=TRIM)
             else -1])
tie(DEMO, "takes **{} B** of flash (model arrays {} + code {}; `demo_onephase.json`: {} B) and gave the class and exit of "
          "`nachos-tf evaluate` on {} of {} images under QEMU", TRIM,
    lambda: [_d("firmware", "flash_bytes", source=TRIM), _d("firmware", "model_bytes", source=TRIM),
             _d("firmware", "code_bytes", source=TRIM), _d("firmware", "flash_bytes", source="demo_onephase.json"),
             _d("firmware", "agree", source=TRIM), _d("firmware", "n", source=TRIM)])
tie(DEMO, "Of the {} admissible solutions measured (this demo's {} and the seed-3 comparison's nachos and random-search "
          "runs, {} each), {} had such an exit", "export_trim.json",
    lambda: [len(J("export_trim.json")["solutions"]),
             sum(r["run"] == "runs/demo" for r in J("export_trim.json")["solutions"]),
             sum(r["run"].endswith("nachos/seed3") for r in J("export_trim.json")["solutions"]),
             sum(bool(r["exported"]["exits_not_exported"]) for r in J("export_trim.json")["solutions"])])
tie(DEMO, "each lose their final stage: {} B instead of {} and {} B instead of {}.", "export_trim.json",
    lambda: [_trim_row("nachos/seed3", "c1588")["exported"]["model_bytes"],
             _trim_row("nachos/seed3", "c1588")["every_stage"]["model_bytes"],
             _trim_row("random/seed3", "c0576")["exported"]["model_bytes"],
             _trim_row("random/seed3", "c0576")["every_stage"]["model_bytes"]])
tie(DEMO, "gives another class on {} of the {} and {} of the {} images that reach it (int8 test accuracy {} % against {} %, "
          "and {} % against {} %)", "export_trim.json",
    lambda: [_trim_row("nachos/seed3", "c1588")["class_differs_at_last_stage"],
             _trim_row("nachos/seed3", "c1588")["images_at_last_stage"],
             _trim_row("random/seed3", "c0576")["class_differs_at_last_stage"],
             _trim_row("random/seed3", "c0576")["images_at_last_stage"],
             100 * _trim_row("nachos/seed3", "c1588")["exported"]["accuracy"],
             100 * _trim_row("nachos/seed3", "c1588")["every_stage"]["accuracy"],
             100 * _trim_row("random/seed3", "c0576")["exported"]["accuracy"],
             100 * _trim_row("random/seed3", "c0576")["every_stage"]["accuracy"]])
tie(DEMO, "This session's machine was fast: {} s until the end of the checks, {} s with the firmware, a candidate {} s "
          "on average.", TRIM,
    lambda: [_d("seconds_until_checks_done", source=TRIM), _d("make_demo_seconds", source=TRIM),
             _d("search", "evaluate_seconds_mean", source=TRIM)])

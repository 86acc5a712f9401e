"""An early exit whose threshold is -inf takes every image that reaches it: the staged export leaves out the
stages after it (no flash, no arena for stages that never run). Every image leaves at the same exit as with every
stage exported, the stages before the last are the same flatbuffers, and the last one (converted as a final
classifier) classifies as that stage does in the whole export up to int8 rounding; checked on the real TFLM
interpreter and through the C runner's sources."""
import math
import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

from tflite_export import c_export, stages as stg, tflm  # noqa: E402
from tflite_export.convert import int8_report  # noqa: E402
from tflite_export.from_run import manifest_summary  # noqa: E402

from test_export_pipeline import _tflm_syntax_check, train_tiny_eenn  # noqa: E402

N_TEST = 200


@pytest.fixture(scope="module")
def trained():
    return train_tiny_eenn(2000, N_TEST, seed=1)


def _both(m, x, rule, thresholds):
    kept = c_export.convert_eenn(m, x[:128], rule, thresholds, measure_arena=False)
    whole = c_export.convert_eenn(m, x[:128], rule, thresholds, measure_arena=False, drop_unreachable=False)
    return kept, whole


@pytest.mark.parametrize("rule, t0", [("max_softmax", 0.6), ("confidence", 0.5), ("entropy", -1.0)])
def test_stages_after_an_exit_that_takes_every_image_are_not_exported(trained, rule, t0):
    m, x, y, xt, yt = trained
    (man, blobs), (man_all, blobs_all) = _both(m, x, rule, [t0, -math.inf])
    assert len(blobs) == 2 and len(blobs_all) == 3
    assert man["exit_names"] == ["exit_0", "exit_1"] and man["exits_not_exported"] == ["final"]
    assert man_all["exits_not_exported"] == [] and man_all["exit_names"] == ["exit_0", "exit_1", "final"]
    assert man["exit_macs"] == man_all["exit_macs"][:2]
    assert blobs[0] == blobs_all[0]                         # stage 0 is converted exactly as before
    last = man["stages"][-1]
    assert last["features_output"] is None and last["confidence_output"] is None and last["threshold"] is None
    assert sum(len(b) for b in blobs) < sum(len(b) for b in blobs_all[:2])   # no features / confidence out
    tflm.validate_manifest(man, len(blobs))
    # the same class and exit for every image as the whole network at the same thresholds
    a = tflm.evaluate_staged(blobs, xt, yt, manifest=man, measure=False, details=True)
    b = tflm.evaluate_staged(blobs_all, xt, yt, manifest=man_all, measure=False, details=True)
    assert b["exit_counts"][2] == 0 and 0 < b["exit_counts"][0] < len(yt)
    np.testing.assert_array_equal(a["exits"], b["exits"])
    early = a["exits"] == 0                                 # decided by the same stage-0 flatbuffer
    np.testing.assert_array_equal(a["predictions"][early], b["predictions"][early])
    # the last stage, converted as a final classifier, may round differently: the same class almost everywhere
    assert np.mean(a["predictions"][~early] == b["predictions"][~early]) >= 0.95
    assert abs(a["accuracy"] - b["accuracy"]) <= 0.02 and a["expected_macs"] == b["expected_macs"]
    assert a["exit_counts"] == b["exit_counts"][:2]


def test_an_exit_zero_that_takes_every_image_leaves_one_stage(trained):
    m, x, y, xt, yt = trained
    (man, blobs), (man_all, blobs_all) = _both(m, x, "max_softmax", [-math.inf, 0.7])
    assert len(blobs) == 1 and man["exits_not_exported"] == ["exit_1", "final"]
    assert man["stages"][0]["features_output"] is None and man["stages"][0]["threshold"] is None
    a = tflm.evaluate_staged(blobs, xt, yt, manifest=man, measure=False, details=True)
    b = tflm.evaluate_staged(blobs_all, xt, yt, manifest=man_all, measure=False, details=True)
    assert a["exit_counts"] == [len(yt)] and b["exit_counts"][0] == len(yt)
    assert np.mean(a["predictions"] == b["predictions"]) >= 0.95      # one stage, converted as a final classifier
    assert "not exported: exit_1, final" in manifest_summary(man)


@pytest.mark.parametrize("thresholds", [[0.6, 0.7], [math.inf, 0.7], [0.6, math.inf], [math.inf, math.inf]])
def test_finite_and_never_exit_thresholds_keep_every_stage(trained, thresholds):
    m, x, y, xt, yt = trained
    man, blobs = c_export.convert_eenn(m, x[:128], "max_softmax", thresholds, measure_arena=False)
    assert len(blobs) == 3 and man["exits_not_exported"] == []


def test_split_stages_refuses_a_stage_count_outside_the_model(trained):
    from nachos_tf.errors import ExportError

    for n in (0, 4):
        with pytest.raises(ExportError, match="n_stages"):
            stg.split_stages(trained[0], n_stages=n)


def test_int8_report_keeps_one_rate_per_exit_of_the_model(trained):
    m, x, y, xt, yt = trained
    em = [100.0, 300.0, 700.0]
    q = int8_report(m, x, xt, yt, "max_softmax", [0.6, -math.inf], em)
    assert len(q["exit_rates"]) == 3 and q["exit_rates"][2] == 0.0
    assert math.isclose(sum(q["exit_rates"]), 1.0) and len(q["stage_bytes"]) == 2
    assert q["expected_macs"] == pytest.approx(q["exit_rates"][0] * 100 + q["exit_rates"][1] * 300)


def test_the_shortened_export_writes_c_sources_that_compile_against_tflm(trained, tmp_path):
    m, x, y, xt, yt = trained
    man = c_export.export_eenn(m, tmp_path, x[:128], "confidence", [0.5, -math.inf], cortex_m4=False,
                               measure_arena=False)
    assert [st["tflite"] for st in man["stages"]] == ["stage0.tflite", "stage1.tflite"]
    assert sorted(p.name for p in tmp_path.glob("stage*.tflite")) == ["stage0.tflite", "stage1.tflite"]
    assert "constexpr int kNumStages = 2;" in (tmp_path / "nachos_eenn.cc").read_text()
    assert "(final) are not exported" in (tmp_path / "README.md").read_text()
    res = tflm.evaluate_staged(tmp_path, xt, yt, limit=50, measure=False)
    assert len(res["exit_rates"]) == 2
    if not shutil.which("g++"):
        pytest.skip("g++ not installed")
    _tflm_syntax_check(tmp_path, ("nachos_eenn.cc", "nachos_decision.cc", "nachos_model_data.cc"))


# ----------------------------------------------------------------------------- the search's int8 sizes

def test_exported_stages_counts_up_to_the_first_exit_that_takes_every_image():
    from nachos_tf.policy import exported_stages

    assert exported_stages([0.5, 0.7, 0.9]) == 4
    assert exported_stages(["inf", 0.2, "-inf"]) == 3
    assert exported_stages([-math.inf, -math.inf]) == 1
    assert exported_stages([]) == 1
    with pytest.raises(ValueError):
        exported_stages(["nan-ish"])


def test_search_sizes_are_those_of_the_export_at_the_candidates_thresholds(trained):
    """Under a flash / RAM bound a candidate is judged on what `nachos-tf export` would ship at its calibrated
    thresholds (no stage after an exit whose threshold is -inf), and sizes measured at other thresholds are
    re-used only while the export keeps the same stages."""
    import dataclasses
    import time

    import nachos_tf as nt
    from nachos_tf.nas.evaluators.common import calibrate_outputs, candidate_record, int8_sizes, sizes_still_hold
    from nachos_tf.policy import simulate
    from nachos_tf.predict import predict_exits

    m, x, y, xt, yt = trained
    c = nt.Constraints(min_accuracy=0.1, max_macs=1e9, max_flash=10_000_000, max_ram=10_000_000)
    em = [100.0, 300.0, 700.0]
    probs, confs = predict_exits(m, xt)
    cal = calibrate_outputs(probs, confs, em, yt, "max_softmax", c)
    th = np.array([0.6, -np.inf])
    cut = dataclasses.replace(cal, thresholds=th, result=simulate(probs, yt, th, em, "max_softmax"))
    genome = nt.SearchSpace.mcu((28, 28, 1), 10).sample(seed=0)          # record metadata only
    rec = candidate_record(genome, m, cut, em, c, "max_softmax", x[:64], 0, 0.0, time.time())
    man, blobs = c_export.convert_eenn(m, x[:64], "max_softmax", list(th), em, num_samples=64)
    assert rec.metrics.flash_bytes == sum(len(b) for b in blobs) and rec.metrics.arena_bytes == man["arena_bytes"]
    every = int8_sizes(m, x[:64], c)                                       # no thresholds: every stage
    assert every["flash_bytes"] > rec.metrics.flash_bytes
    assert rec.constraints["flash"] == pytest.approx((rec.metrics.flash_bytes - 10_000_000) / 10_000_000)
    known = {"flash_bytes": rec.metrics.flash_bytes, "arena_bytes": rec.metrics.arena_bytes}
    assert sizes_still_hold(known, rec.thresholds, [0.3, "-inf"]) == known
    assert sizes_still_hold(known, rec.thresholds, [0.3, 0.4]) is None
    assert sizes_still_hold(None, rec.thresholds, [0.3, "-inf"]) is None

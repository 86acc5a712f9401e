"""benchmarks/deploy_check.py on a tiny export of a small synthetic EENN (seeded, untrained, random images):
the independent staged TFLM run agrees exactly with the library for every exit rule, and the C round
trip passes on the export and catches one corrupted byte in nachos_model_data.cc."""
import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

from nachos_tf import policy  # noqa: E402
from nachos_tf.train import predict_exits  # noqa: E402
from tflite_export import c_export, tflm  # noqa: E402
from test_export_pipeline import tiny_eenn  # noqa: E402  (the pipeline tests' 3-exit EENN)

ROOT = Path(__file__).resolve().parents[1]
N = 80


def _load_deploy_check():
    spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "benchmarks" / "deploy_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


dc = _load_deploy_check()


def _thresholds(probs, confs, rule):
    """Per-early-exit thresholds at score quantiles, so that every exit takes some samples."""
    scores = policy.exit_scores(probs, rule, confs if rule == "confidence" else None)
    return [float(np.quantile(s, q)) for s, q in zip(scores, (0.6, 0.5))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    m = tiny_eenn()
    for name in ("exit_0", "exit_1", "exit_0_conf", "exit_1_conf"):   # spread the untrained scores
        layer = m.get_layer(name)
        layer.set_weights([w * 40.0 for w in layer.get_weights()])
    x = rng.uniform(0, 255, (N + 32, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, N).astype(np.int64)
    probs, confs = predict_exits(m, x[32:])
    out = tmp_path_factory.mktemp("tiny") / "deploy"
    man = c_export.export_eenn(m, out, x[:32], "confidence", _thresholds(probs, confs, "confidence"),
                               None, num_samples=32, name="tiny", cortex_m4=False)
    return out, man, x[32:], y, probs, confs


def _with_rule(tiny, rule, tmp_path):
    out, man, x, y, probs, confs = tiny
    if rule == "confidence":
        return out
    d = tmp_path / f"deploy_{rule}"
    shutil.copytree(out, d)
    new = tflm.with_policy(man, rule, _thresholds(probs, confs, rule))
    (d / "manifest.json").write_text(json.dumps(new, indent=2))
    return d


@pytest.mark.parametrize("rule", ["confidence", "max_softmax", "margin", "entropy"])
def test_independent_run_agrees_exactly_with_the_library(tiny, tmp_path, rule):
    d = _with_rule(tiny, rule, tmp_path)
    x, y = tiny[2], tiny[3]
    res = dc.agreement(d, x, y, measure=False)
    assert res["ok"], res["problems"]
    ours = res["independent"]
    assert ours["rule"] == rule and ours["n"] == N
    assert all(c > 0 for c in ours["exit_counts"]), ours["exit_counts"]    # every exit is exercised
    np.testing.assert_array_equal(ours["predictions"], res["library"]["predictions"])
    np.testing.assert_array_equal(ours["exits"], res["library"]["exits"])
    # a single changed exit is reported
    lib = dict(res["library"], exits=res["library"]["exits"].copy())
    lib["exits"][0] = (lib["exits"][0] + 1) % 3
    assert any("exits differ on 1 samples" in p for p in dc.compare(ours, lib, "x"))


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_c_roundtrip_passes_and_detects_a_corrupted_byte(tiny, tmp_path):
    out, man = tiny[0], tiny[1]
    ok = dc.c_roundtrip(out)
    assert ok["ok"], ok
    assert [s["c_array_bytes"] for s in ok["stages"]] == [s["bytes"] for s in man["stages"]]

    bad = tmp_path / "corrupt"
    shutil.copytree(out, bad)
    src = (bad / "nachos_model_data.cc").read_text()
    start = src.index("tiny_stage1[] = {")
    hexes = list(re.finditer(r"0x([0-9a-f]{2})", src[start:]))
    pos = 1000                                             # byte 1000 of stage 1
    h = hexes[pos]
    new = f"0x{(int(h.group(1), 16) ^ 0x01):02x}"
    a, b = start + h.start(), start + h.end()
    (bad / "nachos_model_data.cc").write_text(src[:a] + new + src[b:])
    res = dc.c_roundtrip(bad)
    assert not res["ok"]
    assert [s["identical"] for s in res["stages"]] == [True, False, True]
    assert res["stages"][1]["first_difference"] == pos

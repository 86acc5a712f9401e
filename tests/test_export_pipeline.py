"""Staged int8 export of a small trained EENN: stage split, boundary quantisation, manifest, C sources
(compiled with g++ / arm-none-eabi-g++), and staged TFLM evaluation checked against a second,
independent TFLM code path written here."""
import gzip
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

from nachos_tf import naming, policy  # noqa: E402
from nachos_tf.errors import ExportError  # noqa: E402
from tflite_export import c_export, flatbuffer as fb, graph, stages as stg, tflm  # noqa: E402
from tflite_export.quantize import quantize_input, to_int8_tflite  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
N_TEST = 300
THRESHOLDS = [0.8, 0.7]


def _idx(split):
    p = "train" if split == "train" else "t10k"
    if not (FMNIST / f"{p}-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) not installed")
    with gzip.open(FMNIST / f"{p}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(FMNIST / f"{p}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x.astype(np.float32), y.astype(np.int64)


def tiny_eenn(classes=10, skip_across=False):
    """3 exits, learned confidences, a Flatten head, a residual block; follows nachos_tf.naming."""
    L = keras.layers
    inp = keras.Input((28, 28, 1), name="image")
    x = L.Rescaling(1 / 255.0, name="rescale")(inp)
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="c1")(x)
    x = L.BatchNormalization(momentum=0.9, name="bn1")(x)
    x0 = x = L.ReLU(name="r1")(x)
    x = L.Identity(name="exit_0_point")(x)
    v = L.Flatten(name="e0_flat")(L.AveragePooling2D(2, name="e0_pool")(x))
    outs = [L.Dense(classes, name="exit_0")(v), L.Dense(1, activation="sigmoid", name="exit_0_conf")(v)]
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw2")(x)
    x = L.ReLU(name="r2")(L.BatchNormalization(momentum=0.9, name="bn2")(x))
    x = L.Conv2D(32, 1, use_bias=False, name="pw2")(x)
    x = L.ReLU(name="r2b")(L.BatchNormalization(momentum=0.9, name="bn2b")(x))
    x = L.Identity(name="exit_1_point")(x)
    v = L.GlobalAveragePooling2D(name="e1_gap")(x)
    outs += [L.Dense(classes, name="exit_1")(v), L.Dense(1, activation="sigmoid", name="exit_1_conf")(v)]
    y = L.Conv2D(32, 3, padding="same", use_bias=False, name="c3")(x)
    y = L.ReLU(name="r3")(L.BatchNormalization(momentum=0.9, name="bn3")(y))
    x = L.Add(name="add3")([x, y])
    v = L.GlobalAveragePooling2D(name="f_gap")(x)
    if skip_across:   # a connection from stage 0 into the final stage: cannot be split
        v = L.Concatenate(name="cat")([v, L.GlobalAveragePooling2D(name="skip_gap")(x0)])
    outs.append(L.Dense(classes, name="final")(v))
    return keras.Model(inp, outs)


def train_tiny_eenn(n_train: int, n_test: int, seed: int):
    """`tiny_eenn` trained one epoch on the first `n_train` Fashion-MNIST images: (model, x, y, x_test, y_test)."""
    keras.utils.set_random_seed(seed)
    x, y = _idx("train")
    xt, yt = _idx("test")
    x, y = x[:n_train], y[:n_train]
    m = tiny_eenn()
    names = naming.output_names(m)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    m.compile(keras.optimizers.Adam(3e-3), [("binary_crossentropy" if "conf" in n else ce) for n in names])
    # confidences learn "label < 5": any learnable binary target spreads them over (0, 1)
    ys = [((y < 5).astype(np.float32)[:, None] if "conf" in n else y) for n in names]
    m.fit(x, ys, epochs=1, batch_size=32, verbose=0)
    return m, x, y, xt[:n_test], yt[:n_test]


@pytest.fixture(scope="module")
def trained():
    return train_tiny_eenn(2500, N_TEST, seed=0)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    m, x, y, xt, yt = trained
    out = tmp_path_factory.mktemp("deploy") / "my export dir"
    man = c_export.export_eenn(m, out, x[:200], "max_softmax", THRESHOLDS, None)
    blobs = [(out / s["tflite"]).read_bytes() for s in man["stages"]]
    return out, man, blobs


@pytest.fixture(scope="module")
def independent(trained, exported):
    """Second code path: every stage run on every image with our own TFLM interpreters, outputs
    found through the SignatureDef here (not through the manifest), int8 features handed on."""
    m, x, y, xt, yt = trained
    out, man, blobs = exported
    its = [runtime.Interpreter.from_bytes(b, arena_size=1 << 20) for b in blobs]
    sig = [fb.signature_outputs(b) for b in blobs]
    s_in = fb.signature_inputs(blobs[0])[0]
    probs = [[] for _ in blobs]
    confs = [[] for _ in blobs[:-1]]
    for i in range(len(xt)):
        data = np.clip(np.floor(xt[i:i + 1] / np.float32(s_in.scale) + np.float32(0.5)) + s_in.zero_point,
                       -128, 127).astype(np.int8)
        for k, it in enumerate(its):
            it.set_input(data, 0)
            it.invoke()
            probs[k].append(it.get_output(sig[k][0].position).reshape(-1).copy())
            if k < len(its) - 1:
                confs[k].append(int(it.get_output(sig[k][1].position).reshape(-1)[0]))
                data = it.get_output(sig[k][2].position)
    pq = [(s.scale, s.zero_point) for s in (sg[0] for sg in sig)]
    return {"probs_q": [np.stack(p) for p in probs], "conf_q": [np.array(c) for c in confs], "probs_quant": pq,
            "conf_quant": [(sg[1].scale, sg[1].zero_point) for sg in sig[:-1]]}


def _deq(q, sz):
    return (np.asarray(q, np.float64) - sz[1]) * float(np.float32(sz[0]))


# ----------------------------------------------------------------------------- stages

def test_stage_models_chain_to_the_eenn(trained):
    m, x, y, xt, yt = trained
    st = stg.split_stages(m, batch_size=None)
    assert [s.exit_name for s in st] == ["exit_0", "exit_1", "final"]
    assert [s.outputs for s in st] == [["probs", "confidence", "features"]] * 2 + [["probs"]]
    ref = m.predict(xt[:20], verbose=0)
    feats = xt[:20]
    for s, (li, ci) in zip(st, [(0, 1), (2, 3), (4, None)]):
        o = s.model.predict(feats, verbose=0)
        o = o if isinstance(o, list) else [o]
        np.testing.assert_allclose(o[0], policy.softmax(ref[li]), atol=1e-5)
        if ci is not None:
            np.testing.assert_allclose(o[1], ref[ci], atol=1e-6)
            feats = o[2]


def test_skip_connection_across_a_boundary_is_refused():
    with pytest.raises(ExportError, match="crosses the stage boundary"):
        stg.split_stages(tiny_eenn(skip_across=True))


def test_model_without_exit_points_is_refused():
    inp = keras.Input((8,))
    h = keras.layers.Dense(4)(inp)
    m = keras.Model(inp, [keras.layers.Dense(3, name="exit_0")(h), keras.layers.Dense(3, name="final")(h)])
    with pytest.raises(ExportError, match="exit_0_point"):
        stg.split_stages(m)
    with pytest.raises(ExportError, match="no output named 'final'"):
        stg.split_stages(keras.Model(inp, keras.layers.Dense(3, name="logits")(inp)))


def test_stage_boundaries_keep_scale_and_zero_point(exported):
    out, man, blobs = exported
    recs = stg.check_boundaries(blobs)
    assert len(recs) == 2
    for k, r in enumerate(recs):
        a = fb.signature_outputs(blobs[k])[-1]
        b = fb.signature_inputs(blobs[k + 1])[0]
        assert np.float32(a.scale) == np.float32(b.scale) and a.zero_point == b.zero_point
        assert a.shape == b.shape and a.dtype == b.dtype == "int8"
    # a mismatched boundary is detected
    bad = stg.set_input_quant(blobs[1], recs[0]["scale"] * 1.01, recs[0]["zero_point"])
    with pytest.raises(ExportError, match="boundary 0->1"):
        stg.check_boundaries([blobs[0], bad, blobs[2]])


def test_stage_boundaries_change_no_number(trained, exported):
    """int8 features out of stage k, fed to stage k+1, equal the same tensors of a one-file int8 run
    of the whole network (all boundary tensors as extra outputs)."""
    m, x, y, xt, yt = trained
    out, man, blobs = exported
    inp = keras.Input((28, 28, 1), batch_size=1)
    pts = [m.get_layer(naming.point_name(k)).output for k in range(2)]
    whole = keras.Model(inp, graph.subgraph(m, {id(m.inputs[0]): inp}, pts, "whole"))
    wb = to_int8_tflite(whole, x[:200])
    wo = fb.signature_outputs(wb)
    W = runtime.Interpreter.from_bytes(wb, arena_size=1 << 20)
    its = [runtime.Interpreter.from_bytes(b, arena_size=1 << 20) for b in blobs[:2]]
    sig = [fb.signature_outputs(b) for b in blobs[:2]]
    same = total = 0
    for i in range(20):
        q = quantize_input(xt[i:i + 1], man["input"]["scale"], man["input"]["zero_point"])
        W.set_input(q, 0)
        W.invoke()
        data = q
        for k in range(2):
            its[k].set_input(data, 0)
            its[k].invoke()
            f = its[k].get_output(sig[k][-1].position)
            w = W.get_output(wo[k].position)
            assert abs(wo[k].scale - sig[k][-1].scale) <= 1e-6 * wo[k].scale
            assert int(np.abs(f.astype(int) - w.astype(int)).max()) <= 1
            same += int((f == w).sum())
            total += f.size
            data = f
    assert same / total >= 0.999, f"{total - same} of {total} feature values differ"


# ----------------------------------------------------------------------------- manifest and files

def test_manifest_describes_the_export(trained, exported):
    m, *_ = trained
    out, man, blobs = exported
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(man))
    assert man["rule"] == "max_softmax" and man["input"]["shape"] == [1, 28, 28, 1]
    assert man["input"]["scale"] > 0 and man["input"]["zero_point"] == -128
    assert set(man["c_sources"]) <= {p.name for p in out.iterdir()}
    from nachos_tf.macs import profile_macs

    assert man["exit_macs"] == [float(v) for v in profile_macs(m).exit_macs]
    # MACs counted on the deployed files agree with the Keras profiler
    assert man["stage_macs_cumulative"] == [int(v) for v in man["exit_macs"]]
    for k, s in enumerate(man["stages"]):
        assert (out / s["tflite"]).read_bytes() == blobs[k] and s["bytes"] == len(blobs[k])
        assert s["symbol"] == f"nachos_stage{k}"
        sig = fb.signature_outputs(blobs[k])
        assert s["logits_output"] == sig[0].position
        assert s["arena_bytes"] > 0
        if k < 2:
            assert s["confidence_output"] == sig[1].position and s["features_output"] == sig[2].position
            assert s["threshold"] == THRESHOLDS[k]
            assert s["threshold_int8"] == tflm.threshold_int("max_softmax", THRESHOLDS[k], *s["probs_quant"])
        else:
            assert s["features_output"] is None and s["threshold"] is None
    assert man["stages"][0]["threshold_int8"] == 77     # smallest q with (q + 128) / 256 >= 0.8
    assert man["arena_bytes"] >= max(s["arena_bytes"] for s in man["stages"])


def test_c_sources_hold_no_user_path(exported):
    out, man, blobs = exported
    for name in man["c_sources"]:
        text = (out / name).read_text()
        assert str(out) not in text and "my export dir" not in text
    ops = set(man["ops"])
    cc = (out / "nachos_eenn.cc").read_text()
    assert cc.count("if (g_resolver.Add") == len(ops)
    assert "MicroMutableOpResolver<kNumOps>" in cc and f"kNumOps = {len(ops)};" in cc
    assert c_export.sanitize_identifier("../my model/x") == "my_model_x"
    assert c_export.sanitize_identifier("3net") == "m_3net"


DUMP = r"""
#include <stdio.h>
#include "nachos_model_data.h"
static int dump(const char* path, const unsigned char* a, unsigned int n) {
  if (((unsigned long)a) %% 16 != 0) return 1;
  FILE* f = fopen(path, "wb");
  if (!f || fwrite(a, 1, n, f) != n) return 1;
  return fclose(f);
}
int main() {
  int bad = 0;
%s
  return bad;
}
"""


def test_model_data_compiles_and_holds_the_files_byte_for_byte(exported, tmp_path):
    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not installed")
    out, man, blobs = exported
    for f in ("nachos_model_data.h", "nachos_model_data.cc"):
        shutil.copy(out / f, tmp_path / f)
    body = "\n".join(f'  bad |= dump("dump{k}.bin", {s["symbol"]}, {s["symbol"]}_len);'
                     for k, s in enumerate(man["stages"]))
    (tmp_path / "dump.cc").write_text(DUMP % body)
    flags = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"]
    subprocess.run([gxx] + flags + ["-c", "nachos_model_data.cc"], cwd=tmp_path, check=True)
    subprocess.run([gxx, "-std=c++11", "dump.cc", "nachos_model_data.o", "-o", "dump"], cwd=tmp_path, check=True)
    subprocess.run(["./dump"], cwd=tmp_path, check=True)
    for k, b in enumerate(blobs):
        assert (tmp_path / f"dump{k}.bin").read_bytes() == b


def _tflm_syntax_check(folder: Path, sources) -> None:
    """Compile `sources` in `folder` against the real tflite-micro headers of TFLM_ROOT (syntax and types only),
    with the flags TFLM's own Makefile builds use (C++17, TF_LITE_STATIC_MEMORY); TFLM's headers are system
    headers, so -Werror judges only the exported code."""
    from tflite_export.tflm_tree import DOWNLOADS, find_tflm_root

    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not installed")
    root = find_tflm_root(required=False)
    if root is None:
        pytest.skip("TFLM_ROOT is not set (.ci/run sets it to ../shared/third_party/tflite-micro)")
    inc = []
    for d in (root, root / DOWNLOADS / "flatbuffers" / "include", root / DOWNLOADS / "gemmlowp",
              root / DOWNLOADS / "ruy"):
        inc += ["-isystem", str(d)]
    for src in sources:
        std = "-std=c++17" if src == "nachos_eenn.cc" else "-std=c++11"    # only the runner includes TFLM
        subprocess.run([gxx, std, "-DTF_LITE_STATIC_MEMORY", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                        *inc, src], cwd=folder, check=True)


def test_runner_compiles_against_the_tflm_api(exported, tmp_path):
    out, man, blobs = exported
    for f in man["c_sources"]:
        shutil.copy(out / f, tmp_path / f)
    _tflm_syntax_check(tmp_path, ("nachos_eenn.cc", "nachos_decision.cc", "nachos_model_data.cc"))


@pytest.mark.parametrize("rule", tflm.RULES)
def test_runner_compiles_for_every_rule_and_infinite_thresholds(trained, exported, tmp_path, rule):
    out, man, blobs = exported
    c_export.write_export(tmp_path, tflm.with_policy(man, rule, [math.inf, -math.inf]), blobs, cortex_m4=False)
    cc = (tmp_path / "nachos_eenn.cc").read_text()
    assert ("kTable0[256]" in cc) == (rule in ("entropy", "confidence"))
    res = tflm.evaluate_staged(tmp_path, trained[3], trained[4], limit=20, measure=False)
    assert res["exit_counts"][0] == 0 and res["exit_counts"][1] == 20     # never at exit 0, always at 1
    _tflm_syntax_check(tmp_path, ("nachos_eenn.cc",))


def test_cortex_m4_size_in_manifest(exported):
    out, man, blobs = exported
    if not shutil.which("arm-none-eabi-g++"):
        assert man["cortex_m4"] is None
        pytest.skip("arm-none-eabi-g++ not installed")
    m4 = man["cortex_m4"]
    assert m4["model_data"]["text"] >= sum(len(b) for b in blobs)
    assert m4["model_data"]["data"] == 0 and m4["model_data"]["bss"] == 0
    assert m4["decision"]["text"] > 0


# ----------------------------------------------------------------------------- staged evaluation

def _midpoints(scores, rng, n=1):
    """Thresholds half-way between distinct observed scores (no score sits on a threshold)."""
    u = np.unique(np.round(scores, 12))
    wide = np.flatnonzero(np.diff(u) > 1e-4)       # float32 vs float64 rounding is far below this
    assert len(wide), "scores too concentrated for a test threshold"
    i = rng.choice(wide[len(wide) // 4: max(len(wide) // 4 + 1, 3 * len(wide) // 4)], n)
    return [float((u[j] + u[j + 1]) / 2) for j in i]


@pytest.mark.parametrize("rule", ["max_softmax", "margin", "entropy", "confidence"])
def test_evaluate_staged_matches_an_independent_tflm_run(trained, exported, independent, rule):
    m, x, y, xt, yt = trained
    out, man, blobs = exported
    P = [_deq(q, sz) for q, sz in zip(independent["probs_q"], independent["probs_quant"])]
    B = [_deq(c, sz) for c, sz in zip(independent["conf_q"], independent["conf_quant"])]
    # the policy of nachos_tf, on dequantised int8 probabilities (no renormalisation: what the device sees)
    if rule == "entropy":
        scores = [np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1) for p in P[:-1]]
    elif rule == "confidence":
        stay = np.cumprod([1 - b for b in B], axis=0)
        scores = [1 - s for s in stay]
    elif rule == "margin":
        scores = [np.diff(np.sort(p, axis=1)[:, -2:], axis=1)[:, 0] for p in P[:-1]]
    else:
        scores = [p.max(axis=1) for p in P[:-1]]
    rng = np.random.default_rng(0)
    thresholds = [_midpoints(s, rng)[0] for s in scores]
    # simulate the same decisions in float64: first exit whose score >= threshold
    n = len(yt)
    exit_at = np.full(n, len(P) - 1)
    for k in reversed(range(len(P) - 1)):
        exit_at[scores[k] >= thresholds[k]] = k
    pred = np.array([np.argmax(independent["probs_q"][exit_at[i]][i]) for i in range(n)])
    counts = np.bincount(exit_at, minlength=len(P))
    manifest = tflm.with_policy(man, rule, thresholds)
    res = tflm.evaluate_staged(blobs, xt, yt, manifest=manifest, measure=(rule == "max_softmax"), details=True)
    assert res["n"] == n
    assert res["exit_counts"] == counts.tolist()
    assert res["exit_rates"] == [c / n for c in counts]
    assert res["accuracy"] == np.mean(pred == yt)
    np.testing.assert_array_equal(res["exits"], exit_at)
    np.testing.assert_array_equal(res["predictions"], pred)
    em = np.asarray(man["exit_macs"], dtype=np.float64)
    assert res["expected_macs"] == float(sum(counts[k] * em[k] for k in range(len(em))) / n)
    if rule in ("max_softmax", "margin"):   # float scores are exact here: nachos_tf.policy agrees too
        sim = policy.simulate(P, yt, thresholds, man["exit_macs"], rule)
        assert res["exit_counts"] == sim.exit_counts.tolist()
        assert res["expected_macs"] == pytest.approx(sim.expected_macs, rel=1e-12)
    # the early exit is real: later stages run only for the samples that reach them
    reach = [int((exit_at >= k).sum()) for k in range(len(P))]
    assert res["stage_invocations"] == reach
    assert 0 < counts[0] < n, "thresholds should split the samples"
    if rule == "max_softmax":
        assert res["arena_bytes"] == [s["arena_bytes"] for s in man["stages"]]


def test_evaluate_staged_from_the_export_dir(trained, exported, independent):
    m, x, y, xt, yt = trained
    out, man, blobs = exported
    res = tflm.evaluate_staged(out, xt, yt, limit=50)
    assert res["n"] == 50 and abs(sum(res["exit_rates"]) - 1) < 1e-12
    json.dumps(res)                                      # JSON-safe without details
    assert res["ms_per_image"] > 0 and res["seconds"] > 0


def test_ptq_accuracy_close_to_float(trained, independent):
    m, x, y, xt, yt = trained
    ref = m.predict(xt, verbose=0)
    for li, q in zip((0, 2, 4), independent["probs_q"]):
        acc_f = np.mean(np.argmax(ref[li], 1) == yt)
        acc_q = np.mean(np.argmax(q, 1) == yt)
        assert acc_f > 0.3   # well above chance (0.1): a trained model
        print(f"exit {li // 2}: float {acc_f:.3f}  int8 TFLM {acc_q:.3f}")
        assert abs(acc_q - acc_f) <= 0.03, (li, acc_f, acc_q)


def test_arena_measurement_is_the_tflm_minimum(exported):
    out, man, blobs = exported
    a = man["stages"][1]["arena_bytes"]
    assert tflm.measure_arena(blobs[1], start=a) == a      # runs with exactly the measured arena


# ----------------------------------------------------------------------------- broken inputs

def _copy_export(out, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(out, d)
    return d


def test_truncated_stage_file(exported, tmp_path, trained):
    out, man, blobs = exported
    d = _copy_export(out, tmp_path)
    (d / "stage1.tflite").write_bytes(blobs[1][: len(blobs[1]) // 2])
    with pytest.raises(ExportError, match="stage1.tflite.*bytes"):
        tflm.evaluate_staged(d, trained[3], trained[4], limit=2)


def test_corrupted_stage_file(exported, tmp_path, trained):
    out, man, blobs = exported
    d = _copy_export(out, tmp_path)
    b = bytearray(blobs[0])
    b[len(b) // 2] ^= 0xFF
    (d / "stage0.tflite").write_bytes(bytes(b))
    with pytest.raises(ExportError, match="SHA-256"):
        tflm.evaluate_staged(d, trained[3], trained[4], limit=2)


@pytest.mark.parametrize("mangle", ["truncate", "garbage", "header", "empty"])
def test_bad_tflite_bytes_raise_export_error(exported, trained, mangle):
    out, man, blobs = exported
    b = blobs[0]
    noise = bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    bad = {"truncate": b[:100], "garbage": b[:8] + noise, "header": b"\x00" * 8 + b[8:], "empty": b""}[mangle]
    with pytest.raises(ExportError):
        tflm.evaluate_staged([bad] + blobs[1:], trained[3], trained[4], manifest=man, limit=2)


def test_tflite_that_parses_but_cannot_run(exported, trained):
    """A valid flatbuffer whose input shape is absurd: TFLM fails (in the child process), we raise."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    out, man, blobs = exported
    buf = bytearray(blobs[1])
    g = schema.Model.GetRootAs(buf, 0).Subgraphs(0)
    g.Tensors(fb.signature_inputs(blobs[1])[0].index).ShapeAsNumpy()[1] = 1 << 20
    with pytest.raises(ExportError):
        tflm.measure_arena(bytes(buf), "stage 1", start=16 << 20)


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.pop("stages"), "missing key 'stages'"),
    (lambda m: m.update(rule="coin_flip"), "rule"),
    (lambda m: m["stages"][0].update(logits_output=7), "SignatureDef"),
    (lambda m: m["stages"][0].update(logits_output="1"), "logits_output"),
    (lambda m: m["stages"][0].update(threshold_int8=3), "threshold_int8"),
    (lambda m: m["stages"][2].update(features_output=0), "features_output"),
    (lambda m: m["input"].update(scale=-1), "scale"),
    (lambda m: m.update(exit_macs=[1, 2]), "exit_macs"),
])
def test_bad_manifest_raises_export_error(exported, trained, edit, match):
    out, man, blobs = exported
    bad = json.loads(json.dumps(man))
    edit(bad)
    with pytest.raises(ExportError, match=match):
        tflm.evaluate_staged(blobs, trained[3], trained[4], manifest=bad, limit=2, measure=False)


def test_manifest_file_errors(exported, tmp_path, trained):
    out, man, blobs = exported
    d = _copy_export(out, tmp_path)
    (d / "manifest.json").write_text('{"input": ')
    with pytest.raises(ExportError, match="not valid JSON"):
        tflm.load_export(d)
    (d / "manifest.json").write_text(json.dumps(dict(man, stages=[dict(man["stages"][0], tflite="../x")]
                                                      + man["stages"][1:])))
    with pytest.raises(ExportError, match="inside the export directory"):
        tflm.load_export(d)
    os.remove(d / "manifest.json")
    with pytest.raises(ExportError, match="cannot read the manifest"):
        tflm.load_export(d)


def test_export_argument_errors(trained, tmp_path):
    m, x, *_ = trained
    with pytest.raises(ExportError, match="one threshold per early exit"):
        c_export.export_eenn(m, tmp_path, x[:10], "max_softmax", [0.5], None)
    with pytest.raises(ExportError, match="unknown exit rule"):
        c_export.export_eenn(m, tmp_path, x[:10], "vibes", [0.5, 0.5], None)
    with pytest.raises(ExportError, match="NaN"):
        c_export.export_eenn(m, tmp_path, x[:10], "margin", [math.nan, 0.5], None)


@pytest.mark.slow
def test_evaluate_int8_in_memory_equals_the_export(trained, exported):
    """The search's int8 step (no files): same bytes as export_eenn, same figures as evaluate_staged."""
    m, x, y, xt, yt = trained
    out, man, blobs = exported
    res = c_export.evaluate_int8(m, x[:200], xt, yt, "max_softmax", THRESHOLDS, limit=100)
    ref = tflm.evaluate_staged(out, xt, yt, limit=100, measure=False)
    for key in ("accuracy", "exit_counts", "expected_macs", "arena_bytes", "stage_bytes", "stage_invocations"):
        assert res[key] == ref[key], key
    assert res["arena_bytes_total"] == man["arena_bytes"]
    m2, blobs2 = c_export.convert_eenn(m, x[:200], "max_softmax", THRESHOLDS, measure_arena=False)
    assert blobs2 == blobs, "conversion is deterministic"


def test_search_int8_measure_matches_the_staged_export(tmp_path):
    """max_flash / max_ram in the search measure the staged int8 export: flash = the stage files' bytes
    written by export_eenn, arena = the manifest's TFLM arena (it used to need a hook that did not exist)."""
    import json

    from tflite_export.c_export import export_eenn
    from tflite_export.convert import int8_sizes     # the door the search's max_flash / max_ram go through

    model = tiny_eenn()
    x = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)).astype(np.float32)
    sizes = int8_sizes(model, x, need_ram=True)
    export_eenn(model, tmp_path / "exp", x, rule="max_softmax", thresholds=[0.5, 0.5], num_samples=64,
                cortex_m4=False)
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert sizes["flash_bytes"] == sum((tmp_path / "exp" / s["tflite"]).stat().st_size for s in manifest["stages"])
    assert sizes["arena_bytes"] == manifest["arena_bytes"] > 0
    assert int8_sizes(model, x, need_ram=False)["arena_bytes"] is None


def test_conversion_without_the_savedmodel_export_gives_the_same_flatbuffer(trained):
    """`to_int8_tflite` converts a concrete function instead of Keras' SavedModel export: for every stage of a
    trained EENN (three outputs, then one) the same operators, weights and SignatureDef (names, positions,
    scales, zero points) as `TFLiteConverter.from_keras_model`, and the same int8 outputs on TFLM."""
    from tflite_helpers import assert_same_int8_model, to_int8_tflite as keras_export_int8

    m, x, y, xt, yt = trained
    parts = stg.split_stages(m)
    for st, feats in zip(parts, stg.stage_inputs(m, parts, x[:64])):
        assert_same_int8_model(to_int8_tflite(st.model, feats), keras_export_int8(st.model, samples=feats), feats,
                               len(st.outputs))

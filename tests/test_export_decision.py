"""Exit decisions on int8 scores: integer thresholds equal the float decision, and the C decision code
(nachos_decision.cc, compiled with g++) equals tflm.exit_decision on many vectors, bit for bit."""
import math
import shutil
import subprocess

import numpy as np
import pytest

from tflite_export import c_export, tflm
from nachos_tf import policy

S, Z = 1.0 / 256.0, -128          # TFLite's int8 softmax / logistic output quantisation


def deq(q, s=S, z=Z):
    """Dequantise with the float32 scale a .tflite stores."""
    return (np.asarray(q, dtype=np.float64) - z) * float(np.float32(s))


@pytest.mark.parametrize("s,z", [(S, Z), (0.0123, -3), (0.7, 10)])
def test_int_threshold_max_softmax_equals_float_decision(s, z):
    rng = np.random.default_rng(0)
    qs = np.arange(-128, 128)
    ts = list(rng.uniform(deq(-130, s, z), deq(130, s, z), 300)) + list(deq(qs[::17], s, z)) + \
        [math.inf, -math.inf, 0.0]
    for t in ts:
        T = tflm.threshold_int("max_softmax", t, s, z)
        assert np.array_equal(qs >= T, deq(qs, s, z) >= t), t


def test_int_threshold_margin_equals_float_decision():
    rng = np.random.default_rng(1)
    ds = np.arange(0, 256)
    for t in list(rng.uniform(-0.1, 1.1, 300)) + list(ds[::13] * S) + [math.inf, -math.inf, 0.0]:
        T = tflm.threshold_int("margin", t, S, Z)
        assert np.array_equal(ds >= T, ds * S >= t), t
        # and on whole vectors: the int decision equals the float margin of the dequantised vector
        q = rng.integers(-128, 128, (50, 10))
        srt = np.sort(q, axis=1)
        float_margin = deq(srt[:, -1]) - deq(srt[:, -2])
        dec = [tflm.exit_decision("margin", v, None, T, 0.0, None, np.float32(1))[0] for v in q]
        assert dec == list(float_margin >= t)


def test_threshold_f32_rounds_up():
    for t in [0.1, 0.7, 1 / 3, -0.2, 1e-9, 0.5]:
        f = tflm.threshold_f32(t)
        assert f >= t and float(np.float32(f)) == f
        below = float(np.nextafter(np.float32(f), np.float32(-np.inf)))
        assert below < t
    assert tflm.threshold_f32(math.inf) == math.inf


def test_entropy_and_confidence_follow_policy_scores():
    """Away from the threshold, the device decisions equal nachos_tf.policy on dequantised values."""
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (400, 10))
    p = policy.softmax(logits)
    q = np.clip(np.round(p / S) + Z, -128, 127).astype(np.int8)
    pd = deq(q)
    pd = pd / pd.sum(axis=1, keepdims=True)      # policy wants rows summing to 1
    score = policy.exit_scores([pd, pd], "entropy")[0]
    tab = tflm.score_table("entropy", S, Z)
    for t in (-1.5, -0.7, -0.2):
        ours = np.array([tflm.exit_decision("entropy", v, None, None, tflm.threshold_f32(t), tab,
                                            np.float32(1))[0] for v in q])
        raw = -np.array([-sum(x * math.log(x) for x in deq(v) if x > 0) for v in q])
        far = np.abs(raw - t) > 1e-4
        assert np.array_equal(ours[far], (raw >= t)[far])
        assert abs(np.mean(ours) - np.mean(score >= t)) < 0.05   # renormalisation moves a few
    b = rng.integers(-128, 128, (300, 3))
    conf_tab = tflm.score_table("confidence", S, Z)
    bs = [deq(b[:, j]) for j in range(3)]
    D = policy.exit_scores([pd[:300]] * 4, "confidence", confidences=bs)
    for t in (0.3, 0.8):
        for i in range(300):
            stay = np.float32(1)
            for j in range(3):
                ok, stay = tflm.exit_decision("confidence", q[i], int(b[i, j]), None, tflm.threshold_f32(t),
                                              conf_tab, stay)
                if abs(D[j][i] - t) > 1e-5:
                    assert ok == (D[j][i] >= t)


# ----------------------------------------------------------------------------- C == Python

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "nachos_decision.h"

static float tables[8][256];
static nachos::ExitParams params[8];

int main() {
  int rule, K, C, M;
  char buf[64];
  if (scanf("%d %d %d %d", &rule, &K, &C, &M) != 4) return 2;
  for (int k = 0; k < K; ++k) {
    int tq;
    if (scanf("%d %63s", &tq, buf) != 2) return 3;
    params[k].threshold_q = tq;
    params[k].threshold = strtof(buf, NULL);
    for (int i = 0; i < 256; ++i) {
      if (scanf("%63s", buf) != 1) return 4;
      tables[k][i] = strtof(buf, NULL);
    }
    params[k].table = tables[k];
  }
  int8_t probs[64];
  for (int m = 0; m < M; ++m) {
    float stay = 1.0f;
    int exit_at = K;
    for (int k = 0; k < K; ++k) {
      int v;
      for (int c = 0; c < C; ++c) {
        if (scanf("%d", &v) != 1) return 5;
        probs[c] = (int8_t)v;
      }
      if (scanf("%d", &v) != 1) return 6;
      if (exit_at == K && nachos::ExitDecision(rule, probs, C, (int8_t)v, &params[k], &stay)) exit_at = k;
    }
    printf("%d %a %d\n", exit_at, (double)stay, nachos::ArgMax(probs, C));
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def decision_bin(tmp_path_factory):
    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not installed")
    d = tmp_path_factory.mktemp("decision")
    for name, text in c_export.decision_sources().items():
        (d / name).write_text(text)
    (d / "driver.cc").write_text(DRIVER)
    subprocess.run([gxx, "-std=c++11", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c",
                    "nachos_decision.cc"], cwd=d, check=True)
    subprocess.run([gxx, "-std=c++11", "-O2", "driver.cc", "nachos_decision.o", "-o", "driver"], cwd=d, check=True)
    return str(d / "driver")


def _vectors(rng, M, K, C):
    """Realistic quantised softmaxes (often near a threshold) mixed with arbitrary int8 vectors."""
    logits = rng.normal(0, rng.uniform(0.5, 4, (M, K, 1)), (M, K, C))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    q = np.clip(np.round(p / S) + Z, -128, 127).astype(np.int64)
    wild = rng.random(M) < 0.25
    q[wild] = rng.integers(-128, 128, (int(wild.sum()), K, C))
    ties = rng.random(M) < 0.1                           # exact ties at the top
    q[ties, :, 1] = q[ties, :, 0]
    conf = rng.integers(-128, 128, (M, K))
    return q, conf


@pytest.mark.parametrize("rule", tflm.RULES)
def test_c_decision_equals_python(decision_bin, rule):
    rng = np.random.default_rng(tflm.RULE_IDS[rule] + 10)
    M, K, C = 2000, 3, 10
    q, conf = _vectors(rng, M, K, C)
    # thresholds: random, plus values hit exactly by some vectors (the >= boundary)
    params = []
    for k in range(K):
        if rule == "max_softmax":
            t = float(deq(q[rng.integers(M), k].max()))
        elif rule == "margin":
            s = np.sort(q[rng.integers(M), k])
            t = float((s[-1] - s[-2]) * S)
        elif rule == "entropy":
            tab = tflm.score_table("entropy", S, Z)
            v = q[rng.integers(M), k]
            acc = np.float32(0)
            for x in v:
                acc = np.float32(acc + tab[x + 128])
            t = float(acc)
        else:
            t = float(rng.choice([0.3, 0.55, 0.9, float(deq(conf[rng.integers(M), k]))]))
        params.append(tflm.exit_params(rule, t, (S, Z), (S, Z)))
    lines = [f"{tflm.RULE_IDS[rule]} {K} {C} {M}"]
    for p in params:
        tab = p["table"] if p["table"] is not None else np.zeros(256, np.float32)
        lines.append(f"{p['t_int'] if p['t_int'] is not None else 0} {float(np.float32(p['t_f32'])).hex()}")
        lines.append(" ".join(float(v).hex() for v in tab))
    for m in range(M):
        lines.append(" ".join(" ".join(map(str, q[m, k])) + f" {conf[m, k]}" for k in range(K)))
    out = subprocess.run([decision_bin], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         check=True).stdout.split("\n")
    exits_seen = set()
    for m in range(M):
        stay = np.float32(1)
        exit_at = K
        for k in range(K):
            p = params[k]
            ok, stay = tflm.exit_decision(rule, q[m, k], int(conf[m, k]), p["t_int"], p["t_f32"], p["table"], stay)
            if ok:
                exit_at = k
                break
        c_exit, c_stay, c_arg = out[m].split()
        assert int(c_exit) == exit_at, (m, rule)
        assert float.fromhex(c_stay) == float(stay), (m, rule)
        assert int(c_arg) == int(np.argmax(q[m, K - 1]))
        exits_seen.add(exit_at)
    assert len(exits_seen) >= 2, "thresholds should make some vectors exit and some continue"

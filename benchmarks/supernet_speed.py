"""Benchmark: seconds per candidate of the supernet evaluation path (extract, BN re-estimation, forward).

For `--candidates` genomes sampled from `SearchSpace.mcu((28, 28, 1), 10)`: `Supernet.extract` (build +
sliced weights), `reestimate_bn` on `--bn-images` training images (one batch, exact statistics), and one
forward pass over `--val-images` validation images, with two forward variants (`model.predict`, and
one eager call `model(x)`). Prints per-stage medians, candidates/min, and the 1-minute load average
(the machine is shared; figures scale with it). Weights are the shipped preset if present, else
random (speed does not depend on the weights).

    python benchmarks/supernet_speed.py --candidates 8 --out /tmp/supernet_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import nachos_tf as nt
from nachos_tf.supernet import Supernet, reestimate_bn
from nachos_tf.supernet.store import preset_folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--bn-images", type=int, default=2000)
    ap.add_argument("--val-images", type=int, default=5000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    data = nt.data.load("fashion_mnist")
    space = nt.SearchSpace.mcu(data.input_shape, data.num_classes)
    pf = preset_folder("fashion_mnist")
    sn = Supernet.load(pf, space) if pf else Supernet(space, seed=0)
    xb, xv = data.x_train[: a.bn_images], data.x_val[: a.val_images]
    rows = []
    for i in range(a.candidates):
        g = space.sample(seed=1000 + i)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        m = sn.extract(g)
        t1 = time.perf_counter()
        reestimate_bn(m, xb)
        t2 = time.perf_counter()
        m.predict(xv, batch_size=500, verbose=0)
        t3 = time.perf_counter()
        m(xv, training=False)
        t4 = time.perf_counter()
        rows.append({"extract_s": t1 - t0, "bn_s": t2 - t1, "predict_s": t3 - t2, "eager_s": t4 - t3,
                     "load1": load, "macs": int(nt.profile_macs(m).exit_macs[-1])})
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    best = med["extract_s"] + med["bn_s"] + min(med["predict_s"], med["eager_s"])
    summary = {"median": med, "seconds_per_candidate": best, "candidates_per_min": 60.0 / best,
               "preset": bool(pf), "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()

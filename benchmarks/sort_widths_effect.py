"""Probe: does sorting the stem's and stages' output channels help the narrow subnets? (issue 12)

Progressive shrinking opens the stem and stage widths after the largest network, kernels, depths and
expansions were trained; a narrower width uses the *leading* channels, which nothing had put first.
`nachos_tf.supernet.sorting.sort_widths` orders them by importance (function-preserving for the largest
subnet). This probe loads a trained supernet (e.g. the end of the "expand" stage, just before widths
open), evaluates sampled subnets (final-exit accuracy on validation images, BN statistics re-estimated on
training images as the evaluator does), sorts the widths, and evaluates the same subnets again, with no
training in between: the difference is what sorting gives the width stage to start from.

Two samples: subnets that differ from the largest only in their stem and stage widths, and subnets
drawn from the whole space.

    .venv/bin/python benchmarks/sort_widths_effect.py --supernet runs/supernet_ps/3_expand \
        --out benchmarks/results/sort_widths_effect.json
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import (RESULTS, add_out, add_threads, pin_threads, positive_int, say, utc_now,  # noqa: E402
                     versions, write_json)

import numpy as np  # noqa: E402

import nachos_tf as nt  # noqa: E402
from nachos_tf.nas import DataRef  # noqa: E402


def width_only(sn: Any, rng: np.random.Generator) -> Any:
    """The largest subnet with random stem and stage widths (repaired: exits that would cost more than a
    later one are dropped, as the search does)."""
    big = sn.extreme_genome(True)
    p = dict(big.params)
    p["stem_width"] = int(rng.choice(sn.spec.stem_widths))
    for s in range(sn.spec.n_stages):
        p[f"s{s + 1}_width"] = int(rng.choice(sn.spec.widths[s]))
    return sn.space.repair(nt.Genome.make(p, big.exits))


def accuracies(sn: Any, genomes: List[Any], x: np.ndarray, y: np.ndarray, bn_x: np.ndarray) -> List[float]:
    """Final-exit accuracy of each genome's subnet (supernet forward pass, BN re-estimated on bn_x)."""
    return [float(np.mean(sn.subnet_predict(g, x, batch_size=1000, bn_x=bn_x)[-1].argmax(1) == y)) for g in genomes]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", type=Path, required=True, help="a trained supernet folder")
    p.add_argument("--genomes", type=positive_int, default=20, help="subnets per sample")
    p.add_argument("--val-images", type=positive_int, default=2000)
    p.add_argument("--bn-images", type=positive_int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    add_out(p, RESULTS / "sort_widths_effect.json")
    add_threads(p)
    a = p.parse_args(argv)
    pin_threads(a.threads)
    from nachos_tf.supernet import Supernet
    from nachos_tf.supernet.extract import bn_images
    from nachos_tf.supernet.sorting import sort_widths, width_groups

    data = DataRef("fashion_mnist").load()
    space = nt.SearchSpace.mcu(data.input_shape, data.num_classes)
    sn = Supernet.load(a.supernet, space, data)
    rng = np.random.default_rng(a.seed)
    samples = {"largest": [sn.extreme_genome(True)],
               "widths_only": [width_only(sn, rng) for _ in range(a.genomes)],
               "whole_space": [space.sample(seed=a.seed * 1000 + i) for i in range(a.genomes)]}
    x, y = data.x_val[:a.val_images], np.asarray(data.y_val[:a.val_images]).reshape(-1)
    bn_x = bn_images(data, a.bn_images, seed=a.seed)
    before = {k: accuracies(sn, g, x, y, bn_x) for k, g in samples.items()}
    say(f"before sorting: { {k: round(float(np.mean(v)), 4) for k, v in before.items()} }")
    sort_widths(sn.net)
    after = {k: accuracies(sn, g, x, y, bn_x) for k, g in samples.items()}
    say(f"after sorting: { {k: round(float(np.mean(v)), 4) for k, v in after.items()} }")
    summary: Dict[str, Any] = {}
    for k in samples:
        b, c = np.array(before[k]), np.array(after[k])
        summary[k] = {"n": len(b), "mean_before": round(float(b.mean()), 4), "mean_after": round(float(c.mean()), 4),
                      "median_gain": round(float(np.median(c - b)), 4), "improved": int(np.sum(c > b)),
                      "worse": int(np.sum(c < b))}
    write_json(a.out, {"benchmark": "sort_widths_effect", "issue": 12, "supernet": str(a.supernet),
                       "supernet_record": {k: sn.info.get(k) for k in ("settings", "epochs_done")},
                       "width_groups": width_groups(sn.spec), "val_images": a.val_images, "bn_images": a.bn_images,
                       "seed": a.seed, "genomes": {k: [g.to_dict() for g in v] for k, v in samples.items()},
                       "before": before, "after": after, "summary": summary, "versions": versions(),
                       "finished": utc_now(), "complete": True})
    for k, v in summary.items():
        say(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

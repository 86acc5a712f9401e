"""Probe: is the supernet's weak ranking (search_speed.json) sampling noise or the weights? (issue 12)

`benchmarks/search_speed.py` found Spearman 0.19 between the supernet evaluator's estimate (thresholded
accuracy on 2,000 validation images) and stand-alone training of 20 genomes. This probe re-computes the
supernet's estimates of the same 20 genomes on the first 2,000 and on all 6,000 validation images, each
thresholded (the search objective, `policy.calibrate` as the evaluator) and final-exit only, and ranks them
against the full-training figures stored in search_speed.json. If a bigger validation sample does not raise
the correlation, the ranking error is in the supernet's weights, not in the sample.

    .venv/bin/python benchmarks/supernet_probe.py --out benchmarks/results/supernet_probe.json
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import (RESULTS, add_out, add_threads, correlation, pin_threads, read_json, say, utc_now,  # noqa: E402
                     versions, write_json)

import numpy as np  # noqa: E402

import nachos_tf as nt  # noqa: E402
from nachos_tf.nas import Constraints, DataRef  # noqa: E402

PRESET = Path(nt.__file__).resolve().parent / "supernet" / "presets" / "fashion_mnist"


def estimates(sn, space, genome, data, bn_x, constraints, sizes) -> Dict[str, float]:
    """Thresholded and final-exit validation accuracy of the subnet on the first n validation images."""
    from nachos_tf.naming import contract_names, layout_of_names
    from nachos_tf.nas.evaluators.common import exit_rule
    from nachos_tf.train import exit_outputs

    outs = sn.subnet_predict(genome, data.x_val, batch_size=1000, bn_x=bn_x)
    exit_macs = space.exit_macs(genome)
    probs, confs = exit_outputs(outs, layout_of_names(contract_names(len(exit_macs) - 1, space.confidence)))
    rule, y = exit_rule(space), data.y_val
    out = {}
    for n in sizes:
        cal = nt.calibrate([p[:n] for p in probs], y[:n], exit_macs, rule=rule,
                           confidences=None if confs is None or rule != "confidence" else [c[:n] for c in confs],
                           max_macs=constraints.max_macs, min_accuracy=constraints.min_accuracy)
        out[f"thresholded_{n}"] = float(cal.result.accuracy)
        out[f"final_exit_{n}"] = float(np.mean(probs[-1][:n].argmax(1) == y[:n]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", type=Path, default=PRESET, help="a trained supernet folder (default: the preset)")
    p.add_argument("--search-speed", type=Path, default=RESULTS / "search_speed.json")
    p.add_argument("--bn-images", type=int, default=2000)
    add_out(p, RESULTS / "supernet_probe.json")
    add_threads(p)
    a = p.parse_args(argv)
    pin_threads(a.threads)
    from nachos_tf.supernet import Supernet
    from nachos_tf.supernet.extract import bn_images

    ss = read_json(a.search_speed)
    full = ss["full_training"]["results"]
    data = DataRef("fashion_mnist").load()
    space = nt.SearchSpace.mcu((28, 28, 1), 10)
    constraints = Constraints.from_dict(ss["settings"]["search_constraints"])
    sn = Supernet.load(a.supernet, space)
    bn_x = bn_images(data, a.bn_images, seed=0)
    sizes = (2000, len(data.y_val))
    rows: List[Dict[str, Any]] = []
    for gid, g in ss["genomes"].items():
        if gid not in full:
            continue
        row = {"id": gid, "full_test_thresholded": full[gid]["test"]["accuracy"],
               "full_test_final_exit": full[gid]["test"]["final_exit_accuracy"]}
        row.update(estimates(sn, space, nt.Genome.from_dict(g["genome"]), data, bn_x, constraints, sizes))
        rows.append(row)
        say(f"{gid}: {row}")
    corr = {}
    for est in [f"{k}_{n}" for k in ("thresholded", "final_exit") for n in sizes]:
        for ref in ("full_test_thresholded", "full_test_final_exit"):
            corr[f"{est} vs {ref}"] = correlation([r[est] for r in rows], [r[ref] for r in rows])
    write_json(a.out, {"benchmark": "supernet_probe", "issue": 12, "supernet": str(a.supernet),
                       "constraints": constraints.to_dict(), "bn_images": a.bn_images, "rows": rows,
                       "rank_correlation": corr, "versions": versions(), "finished": utc_now(), "complete": True})
    for k, v in corr.items():
        say(f"{k}: Spearman {v['spearman']}, Kendall {v['kendall']} (n={v['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""From a search run folder to a deployment folder, and from a deployment folder to TFLM figures.

What `nachos-tf export` and `nachos-tf evaluate` call: pick a solution of `pareto.json`, rebuild the run's
dataset (for representative data and QAT), export it, and measure an export on a dataset split.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from nachos_tf.errors import ExportError, RunDirError

from .c_export import export_eenn
from .tflm import evaluate_staged, load_export

PathLike = Union[str, Path]


def run_dataset(run_dir: PathLike, data_path: Optional[str] = None):
    """The dataset a search run used, rebuilt from its config.json (name, path, split seed)."""
    from nachos_tf.data import load
    from nachos_tf.results import CONFIG, read_json

    cfg = read_json(Path(run_dir) / CONFIG, "the run settings")
    info = cfg.get("data") or {}
    ref = info.get("ref") or {"name": info.get("name")}
    if not ref.get("name") or ref["name"] == "?":
        raise RunDirError(f"{Path(run_dir) / CONFIG} does not name its dataset; pass the dataset explicitly")
    return load(ref["name"], data_path or ref.get("path"), ref.get("val_fraction", 0.1), ref.get("seed", 0))


def pick_solution(run_dir: PathLike, solution: Union[int, str]):
    """A solution of the run's admissible set, by position (0, 1, ...) or by id."""
    from nachos_tf.results import load_run

    result = load_run(run_dir)
    sols = result.admissible
    if not sols:
        raise RunDirError(f"{run_dir} has no admissible solution to export")
    key = str(solution)
    for s in sols:
        if s.id == key:
            return s
    if key.isdigit() and int(key) < len(sols):
        return sols[int(key)]
    raise RunDirError(f"no solution {solution!r} in {run_dir}: choose a position 0..{len(sols) - 1} "
                      f"or an id among {[s.id for s in sols]}")


def representative_x(x_train: np.ndarray, num_samples: int = 256, seed: int = 0) -> np.ndarray:
    """The PTQ calibration images: `num_samples` training images drawn without replacement (seeded), in
    dataset order. The search's int8 figures and `nachos-tf export` use the same draw, so they agree."""
    rng = np.random.default_rng(seed)
    return x_train[np.sort(rng.choice(len(x_train), min(num_samples, len(x_train)), replace=False))]


def export_solution(run_dir: PathLike, solution: Union[int, str], out_dir: PathLike, qat_epochs: int = 0,
                    data=None, data_path: Optional[str] = None, num_samples: int = 256,
                    seed: int = 0) -> Dict[str, Any]:
    """Export one admissible solution of a run as staged int8 TFLite + C sources; returns the manifest."""
    if qat_epochs < 0:
        raise ExportError(f"qat_epochs must be >= 0, got {qat_epochs}")
    sol = pick_solution(run_dir, solution)
    data = data if data is not None else run_dataset(run_dir, data_path)
    rep = representative_x(data.x_train, num_samples, seed)
    train_xy = (data.x_train, data.y_train) if qat_epochs else None
    manifest = export_eenn(sol.model, out_dir, rep, sol.rule, sol.thresholds, sol.exit_macs,
                           qat_epochs=qat_epochs, train_xy=train_xy, num_samples=num_samples,
                           name=f"nachos_{sol.id}")
    manifest["solution"] = sol.id       # which solution of the run this folder holds, also on disk
    path = Path(out_dir) / "manifest.json"
    tmp = path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
    return manifest


def evaluate_export(export_dir: PathLike, dataset: str, data_path: Optional[str] = None, split: str = "test",
                    limit: Optional[int] = None, val_fraction: float = 0.1, seed: int = 0) -> Dict[str, Any]:
    """Staged TFLM figures of an export folder on a dataset split (its first `limit` samples, in order)."""
    from nachos_tf.data import load

    load_export(export_dir)  # fail early on a broken export, before loading data
    data = load(dataset, data_path, val_fraction, seed)
    if split not in ("train", "val", "test"):
        raise ExportError(f"split must be train, val or test, got {split!r}")
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if limit is not None and limit < 1:
        raise ExportError(f"limit must be >= 1, got {limit}")
    res = evaluate_staged(export_dir, x, y, limit=limit)
    res.update({"dataset": dataset, "split": split})
    return res


def manifest_summary(manifest: Dict[str, Any]) -> str:
    """Per-stage bytes, arena and MACs of a manifest as a small text table."""
    rows = [("stage", "file", "bytes", "arena bytes", "MACs of the stage", "threshold")]
    for k, st in enumerate(manifest["stages"]):
        rows.append((str(k), st["tflite"], f"{st['bytes']:,}", f"{st['arena_bytes']:,}" if st.get("arena_bytes")
                     else "-", f"{int(st['macs']):,}", str(st.get("threshold"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    m4 = manifest.get("cortex_m4")
    if m4:
        lines.append(f"Cortex-M4 build of the model data: {m4}")
    return "\n".join(lines)

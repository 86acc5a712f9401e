"""From a search run folder to a deployment folder, and from a deployment folder to TFLM figures.

What `nachos-tf export` and `nachos-tf evaluate` call: pick a solution of `pareto.json`, rebuild the run's
dataset (for representative data and QAT), export it, and measure an export on a dataset split.

Nothing read is trusted blindly and nothing written is lost:

* a solution's model path must stay inside its run folder and is checked before anything is loaded; the
  model loads in Keras safe mode (a Lambda layer is refused in one line);
* ``export --out DIR`` refuses a non-empty folder that is not an earlier export of the same solution,
  checks that DIR can be written before the (long) conversion, builds the export in a staging folder
  beside it and moves the files in with ``os.replace`` (``manifest.json`` last): a failure or Ctrl-C leaves
  the earlier export whole;
* ``evaluate`` checks the data's image shape and number of classes against the manifest first.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

import numpy as np

from nachos_tf.errors import ExportError, RunDirError
from nachos_tf.fsio import atomic_write_json, ensure_writable, publish_dir, resolve_inside, staging_dir

from .c_export import export_eenn
from .tflm import evaluate_staged, load_export
from .validate import MANIFEST, check_data_fits, check_export_target

if TYPE_CHECKING:
    from nachos_tf.data import Dataset

PathLike = Union[str, Path]


def run_dataset(run_dir: PathLike, data_path: Optional[str] = None):
    """The dataset a search run used, rebuilt from its config.json (name, path, split seed).

    Args:
        run_dir: the run folder.
        data_path: where the dataset is now, if it moved since the search.
    Returns:
        The :class:`nachos_tf.data.Dataset`.
    Raises:
        RunDirError: config.json is missing or does not name its dataset; DataError: the data cannot be read.
    """
    from nachos_tf.data import load
    from nachos_tf.results import CONFIG, read_json

    cfg = read_json(Path(run_dir) / CONFIG, "the run settings")
    info = cfg.get("data") if isinstance(cfg, dict) else None
    info = info if isinstance(info, dict) else {}
    ref = info.get("ref") if isinstance(info.get("ref"), dict) else {"name": info.get("name")}
    if not isinstance(ref.get("name"), str) or not ref["name"] or ref["name"] == "?":
        raise RunDirError(f"{Path(run_dir) / CONFIG} does not name its dataset; pass the dataset explicitly")
    return load(ref["name"], data_path or ref.get("path"), ref.get("val_fraction", 0.1), ref.get("seed", 0))


def pick_solution(run_dir: PathLike, solution: Union[int, str]):
    """A solution of the run's admissible set, by position (0, 1, ...) or by id, its model path checked.

    Args:
        run_dir: the run folder.
        solution: position in the admissible set or solution id.
    Returns:
        The solution record of ``pareto.json``.
    Raises:
        RunDirError: no such solution, or its model path leads outside the run folder.
    """
    from nachos_tf.results import load_run

    result = load_run(run_dir)
    sols = result.admissible
    if not sols:
        raise RunDirError(f"{run_dir} has no admissible solution to export")
    key = str(solution)
    chosen = next((s for s in sols if s.id == key), None)
    if chosen is None and key.isdigit() and int(key) < len(sols):
        chosen = sols[int(key)]
    if chosen is None:
        raise RunDirError(f"no solution {solution!r} in {run_dir}: choose a position 0..{len(sols) - 1} "
                          f"or an id among {[s.id for s in sols]}")
    model_file(run_dir, chosen)
    return chosen


def model_file(run_dir: PathLike, sol) -> Path:
    """The Keras file of a solution, refused before any read unless it lies inside the run folder.

    Args:
        run_dir: the run folder.
        sol: a solution of its ``pareto.json``.
    Returns:
        The absolute path of the model file.
    Raises:
        RunDirError: the path is absolute, leads outside the run folder, or the file is missing.
    """
    try:
        p = resolve_inside(run_dir, sol.model_path, f"model path of solution {sol.id} in pareto.json")
    except ValueError as e:
        raise RunDirError(f"{Path(run_dir) / 'pareto.json'}: {e}") from None
    if not p.is_file():
        raise RunDirError(f"model file {p} of solution {sol.id} is missing")
    return p


def load_solution_model(run_dir: PathLike, sol):
    """The trained Keras model of a solution, loaded in safe mode from inside the run folder.

    Args:
        run_dir: the run folder.
        sol: a solution of its ``pareto.json``.
    Returns:
        The ``keras.Model``.
    Raises:
        RunDirError: bad path, missing file, or a file Keras cannot (or may not, e.g. a Lambda layer) load.
    """
    from nachos_tf.macs import load_model_file

    return load_model_file(model_file(run_dir, sol), error=RunDirError)


def representative_x(x_train: np.ndarray, num_samples: int = 256, seed: int = 0) -> np.ndarray:
    """The PTQ calibration images: `num_samples` training images drawn without replacement (seeded), in
    dataset order. The search's int8 figures and `nachos-tf export` use the same draw, so they agree."""
    rng = np.random.default_rng(seed)
    return x_train[np.sort(rng.choice(len(x_train), min(num_samples, len(x_train)), replace=False))]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_solution(run_dir: PathLike, solution: Union[int, str], out_dir: PathLike, qat_epochs: int = 0,
                    data: Optional[Dataset] = None, data_path: Optional[str] = None, num_samples: int = 256,
                    seed: int = 0, drop_unreachable: bool = True) -> Dict[str, Any]:
    """Export one admissible solution of a run as staged int8 TFLite + C sources; returns the manifest.

    Args:
        run_dir: the run folder.
        solution: position in the admissible set or solution id.
        out_dir: the export folder: new, empty, or an earlier export of the same solution.
        qat_epochs: quantisation-aware fine-tuning epochs (0: post-training quantisation).
        data: the run's dataset, if already loaded; data_path: where it is now, if it moved.
        num_samples: calibration images; seed: their draw.
        drop_unreachable: leave out the stages after an early exit whose threshold is -inf (see
            `c_export.convert_eenn`); False exports every stage.
    Returns:
        The manifest written to ``out_dir/manifest.json``.
    Raises:
        ExportError: ``out_dir`` holds other files, or the model cannot be exported.
        WriteError: ``out_dir`` cannot be written (checked before the conversion).
        RunDirError: the run folder or the solution is unusable.
    """
    if qat_epochs < 0:
        raise ExportError(f"qat_epochs must be >= 0, got {qat_epochs}")
    out = Path(out_dir).expanduser()
    sol = pick_solution(run_dir, solution)
    model_sha = _sha256_file(model_file(run_dir, sol))
    earlier = check_export_target(out, sol.id, model_sha)
    ensure_writable(out, folder=True)
    model = load_solution_model(run_dir, sol)
    data = data if data is not None else run_dataset(run_dir, data_path)
    rep = representative_x(data.x_train, num_samples, seed)
    train_xy = (data.x_train, data.y_train) if qat_epochs else None
    with staging_dir(out) as tmp:
        manifest = export_eenn(model, tmp, rep, sol.rule, sol.thresholds, sol.exit_macs,
                               qat_epochs=qat_epochs, train_xy=train_xy, num_samples=num_samples,
                               name=f"nachos_{sol.id}", drop_unreachable=drop_unreachable)
        manifest["solution"] = sol.id       # which solution of the run this folder holds, also on disk
        manifest["source"] = {"solution": sol.id, "model": str(sol.model_path), "model_sha256": model_sha}
        atomic_write_json(tmp / MANIFEST, manifest, sort_keys=False)
        publish_dir(tmp, out, last=[MANIFEST], remove=earlier)
    return manifest


def evaluate_export(export_dir: PathLike, dataset: str, data_path: Optional[str] = None, split: str = "test",
                    limit: Optional[int] = None, val_fraction: float = 0.1, seed: int = 0) -> Dict[str, Any]:
    """Staged TFLM figures of an export folder on a dataset split (its first `limit` samples, in order).

    Args:
        export_dir: the export folder.
        dataset: dataset name (nachos_tf.data.DATASETS); data_path: its location.
        split: "train", "val" or "test"; limit: only the first N samples.
        val_fraction, seed: how the validation split is carved (as in the search).
    Returns:
        The figures of :func:`tflite_export.tflm.evaluate_staged` plus "dataset" and "split".
    Raises:
        ExportError: a broken export, or data of another image shape or number of classes.
        DataError: the dataset cannot be read.
    """
    from nachos_tf.data import load

    if split not in ("train", "val", "test"):
        raise ExportError(f"split must be train, val or test, got {split!r}")
    if limit is not None and limit < 1:
        raise ExportError(f"limit must be >= 1, got {limit}")
    manifest, _ = load_export(export_dir)   # fail early on a broken export, before loading data
    data = load(dataset, data_path, val_fraction, seed)
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    check_data_fits(manifest, data.input_shape, data.num_classes, f"dataset {dataset!r}", labels=y)
    res = evaluate_staged(export_dir, x, y, limit=limit)
    res.update({"dataset": dataset, "split": split})
    return res


def _sig(v: Any) -> str:
    """A threshold with 4 significant digits ("0.737", "inf"); "-" when there is none."""
    if v is None:
        return "-"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:.4g}" if math.isfinite(f) else ("inf" if f > 0 else "-inf")


def _section_sizes(name: str, v: Any) -> Optional[str]:
    if isinstance(v, dict) and all(isinstance(v.get(k), int) for k in ("text", "data", "bss")):
        return f"{name.replace('_', ' ')} {v['text']:,} B text + {v['data']:,} B data + {v['bss']:,} B bss"
    return None


def cortex_m_line(m4: Any) -> Optional[str]:
    """The Cortex-M size record of a manifest as one readable line (None if there is none)."""
    if not m4:
        return None
    if not isinstance(m4, dict):
        return f"Cortex-M4 build: {m4}"
    parts = [p for p in (_section_sizes(k, v) for k, v in m4.items()) if p]
    how = " ".join(str(m4[k]) for k in ("compiler", "flags") if m4.get(k))
    return "Cortex-M4 build" + (f" ({how})" if how else "") + ": " + ("; ".join(parts) or "no sizes recorded")


def manifest_summary(manifest: Dict[str, Any]) -> str:
    """Per-stage bytes, arena, MACs and threshold (4 significant digits) of a manifest as a small text table,
    then the Cortex-M4 size as one line when it was measured.

    Args:
        manifest: an export's manifest.
    Returns:
        The table (and Cortex-M4 line), lines joined by newlines.
    """
    rows = [("stage", "file", "bytes", "arena bytes", "MACs of the stage", "threshold")]
    for k, st in enumerate(manifest["stages"]):
        rows.append((str(k), st["tflite"], f"{st['bytes']:,}", f"{st['arena_bytes']:,}" if st.get("arena_bytes")
                     else "-", f"{int(st['macs']):,}", _sig(st.get("threshold"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    dropped = dropped_exits_line(manifest)
    if dropped:
        lines.append(dropped)
    m4 = cortex_m_line(manifest.get("cortex_m4"))
    if m4:
        lines.append(m4)
    return "\n".join(lines)


def dropped_exits_line(manifest: Dict[str, Any]) -> Optional[str]:
    """One sentence naming the exits an export left out (after an exit every image stops at).

    Args:
        manifest: an export's manifest.
    Returns:
        The sentence, or None when the export holds every stage.
    """
    dropped = manifest.get("exits_not_exported") or []
    if not dropped:
        return None
    last = manifest["stages"][-1].get("exit", f"stage {len(manifest['stages']) - 1}")
    return (f"not exported: {', '.join(dropped)} (at these thresholds every image stops by {last}, so their "
            f"stages would never run)")

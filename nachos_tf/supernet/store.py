"""Saving and loading a supernet: `supernet.weights.h5` (one named dataset per weight) + `supernet.json`.

The manifest records the space fingerprint (sha256 of `space.to_dict()`), the data fingerprint, the
training settings and history, epochs done, the weight names and shapes, and library versions. No
pickle anywhere: HDF5 datasets and JSON only. Loading validates everything before touching the
weights and raises typed errors (`SupernetMismatchError` for another space or other data).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from ..errors import SupernetError

WEIGHTS_FILE = "supernet.weights.h5"
MANIFEST_FILE = "supernet.json"
FORMAT = "nachos-tf-supernet/1"


class SupernetMismatchError(SupernetError):
    """A saved supernet belongs to another search space or was trained on other data."""


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def space_fingerprint(space: Any) -> str:
    """sha256 of the space's JSON description (`space.to_dict()`)."""
    return _sha(space.to_dict())


def data_fingerprint(data: Any, sample: int = 512) -> str:
    """sha256 of a dataset's split shapes/dtypes and the bytes of its first `sample` images and labels
    of every split (cheap, and changes with the data, its split or its preprocessing)."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}", None), getattr(data, f"y_{split}", None)
        if x is None:
            continue
        h.update(f"{split}:{tuple(x.shape)}:{x.dtype}:{tuple(np.shape(y))}".encode())
        h.update(np.ascontiguousarray(x[:sample]).tobytes())
        h.update(np.ascontiguousarray(np.asarray(y[:sample])).tobytes())
    return h.hexdigest()


def weights_fingerprint(weights: Dict[str, np.ndarray]) -> str:
    """sha256 of named arrays (names in sorted order, then each array's shape, dtype and bytes)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        a = np.ascontiguousarray(weights[name])
        h.update(f"{name}:{a.shape}:{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def training_record_seconds(info: Dict[str, Any]) -> float:
    """Seconds of training behind a supernet (its manifest or `Supernet.info`): the sum of its epochs'
    seconds, plus those of every supernet it was continued from (`init_from`, recursively)."""
    total, rec = 0.0, info
    while isinstance(rec, dict):
        total += sum(float(h.get("seconds") or 0.0) for h in rec.get("history") or [])
        rec = rec.get("init_from")
    return total


def training_record_epochs(info: Dict[str, Any]) -> int:
    """Epochs of training behind a supernet, counting those of the supernets it was continued from."""
    n, rec = 0, info
    while isinstance(rec, dict):
        n += int(rec.get("epochs_done") or 0)
        rec = rec.get("init_from")
    return n


def versions() -> Dict[str, str]:
    import keras
    import tensorflow as tf

    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("nachos-tf")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "?"
    return {"nachos_tf": ours, "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "python": platform.python_version()}


def write_weights(path: Union[str, Path], weights: Dict[str, np.ndarray]) -> None:
    """Write named arrays to an HDF5 file atomically (temporary file, then rename)."""
    import h5py

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for name, arr in weights.items():
                f.create_dataset(name, data=np.asarray(arr))
        os.replace(tmp, path)
    except OSError as exc:
        raise SupernetError(f"cannot write {path}: {exc}") from None


def read_weights(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """Named arrays of an HDF5 file written by `write_weights`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise SupernetError(f"{path}: no such weights file")
    try:
        out: Dict[str, np.ndarray] = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda n, obj: out.__setitem__(n, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out
    except OSError as exc:
        raise SupernetError(f"{path}: not a readable HDF5 weights file ({exc})") from None


def assign_weights(net: Any, weights: Dict[str, np.ndarray], where: str) -> None:
    """Assign named arrays to the net's variables; names and shapes must match exactly."""
    names = set(net.vars)
    missing, extra = sorted(names - set(weights)), sorted(set(weights) - names)
    if missing or extra:
        raise SupernetError(f"{where}: weights differ from this supernet (missing {missing[:5]}, "
                            f"unknown {extra[:5]})")
    for name, v in net.vars.items():
        if tuple(weights[name].shape) != tuple(v.shape):
            raise SupernetError(f"{where}: weight {name} has shape {weights[name].shape}, expected {tuple(v.shape)}")
    for name, v in net.vars.items():
        v.assign(weights[name])


def save_supernet(supernet: Any, folder: Union[str, Path], dtype: str = "float32") -> Path:
    """Write the weights and the manifest of `supernet` into `folder` (created if needed).

    `dtype="float16"` halves the file (for shipped presets); loading casts back to float32, so the
    loaded supernet (and what it extracts) is exactly what the file holds.
    """
    if dtype not in ("float32", "float16"):
        raise SupernetError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SupernetError(f"cannot create {folder}: {exc}") from None
    write_weights(folder / WEIGHTS_FILE, {k: v.astype(dtype) for k, v in supernet.net.numpy_weights().items()})
    manifest = {"format": FORMAT, "weights_dtype": dtype, "space_fingerprint": space_fingerprint(supernet.space),
                "space": supernet.space.to_dict(), "spec": supernet.spec.to_dict(),
                "weights": {k: list(v.shape) for k, v in supernet.net.vars.items()},
                "versions": versions(), **{k: v for k, v in supernet.info.items() if k != "space"}}
    tmp = folder / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
    os.replace(tmp, folder / MANIFEST_FILE)
    return folder


def read_manifest(folder: Union[str, Path]) -> Dict[str, Any]:
    """The parsed `supernet.json` of a folder."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise SupernetError(f"{path}: no supernet manifest")
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SupernetError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise SupernetError(f"{path}: not a {FORMAT} manifest")
    return m


def check_manifest(manifest: Dict[str, Any], space: Any, data: Any = None, where: str = "") -> None:
    """Raise SupernetMismatchError when the manifest was written for another space or other data."""
    fp = space_fingerprint(space)
    if manifest.get("space_fingerprint") != fp:
        raise SupernetMismatchError(f"{where}: supernet saved for another search space "
                                    f"(fingerprint {str(manifest.get('space_fingerprint'))[:12]}, "
                                    f"this space {fp[:12]})")
    if data is not None and manifest.get("data_fingerprint") not in (None, data_fingerprint(data)):
        raise SupernetMismatchError(f"{where}: supernet trained on other data (data fingerprint differs)")


def preset_folder(name: str = "fashion_mnist") -> Optional[Path]:
    """Folder of a supernet shipped with the package (None if absent)."""
    p = Path(__file__).parent / "presets" / name
    return p if (p / MANIFEST_FILE).is_file() else None

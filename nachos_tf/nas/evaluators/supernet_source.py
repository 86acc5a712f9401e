"""Where a run's supernet comes from: the preset shipped with the package, the user cache, or training.

`find_or_train` is the supernet evaluator's `setup` when the run folder holds no supernet yet: a preset applies
when it was trained for the run's space and data; the cache holds supernets trained by earlier runs, by a key of
the space, data, epochs, training images, seed and thread count; otherwise one is trained here (checkpointed in
the run folder, resumable) and copied into the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Tuple

from ...fsio import atomic_path

__all__ = ["SUPERNET_EPOCHS", "SUPERNET_TRAIN_LIMIT", "cache_root", "copy_supernet", "supernet_key", "find_or_train"]

#: supernet training epochs per budget preset when no trained supernet is found (cache, preset)
SUPERNET_EPOCHS = {"quick": 4, "standard": 12, "thorough": 30}
#: training images the supernet sees per epoch, by budget (None: the whole training split); on 2 cores a
#: sandwich epoch of 20,000 28x28 images takes about 3 minutes
SUPERNET_TRAIN_LIMIT = {"quick": 20000, "standard": None, "thorough": None}


def cache_root() -> Path:
    """Where trained supernets are kept for later runs: $NACHOS_TF_CACHE, else $XDG_CACHE_HOME/nachos-tf,
    else ~/.cache/nachos-tf (subfolder ``supernets/``)."""
    base = os.environ.get("NACHOS_TF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nachos-tf")
    return Path(base) / "supernets"


def copy_supernet(src: Path, dst: Path) -> None:
    """Copy a supernet folder's two files (weights, manifest) atomically into dst (`fsio.atomic_path`)."""
    from ...supernet.store import MANIFEST_FILE, WEIGHTS_FILE

    dst.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, MANIFEST_FILE):           # manifest last: its presence marks a complete copy
        with atomic_path(dst / name) as tmp:
            shutil.copyfile(src / name, tmp)


def supernet_key(context, epochs: int, train_limit: Optional[int]) -> str:
    """The cache key of a supernet trained for the run of `context` with `epochs` on `train_limit` images
    (space, data, epochs, limit, seed, threads)."""
    from ...supernet import data_fingerprint, space_fingerprint

    c = context
    blob = json.dumps({"space": space_fingerprint(c.space), "data": data_fingerprint(c.dataset()),
                       "epochs": epochs, "train_limit": train_limit, "seed": c.seed,
                       "threads": c.threads}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def find_or_train(context, folder: Path, epochs: Optional[int], train_limit: Optional[int]) -> Tuple[Any, str]:
    """Put the supernet of the run of `context` into `folder`: the shipped preset when it was trained for the
    same space and data (only when `epochs` is None), else the cache (a later run with the same settings), else
    trained here (and kept in the cache).

    Returns:
        (the supernet when it was trained here, else None: the caller loads `folder`; where it came from).
    """
    from ...supernet import Supernet, train_supernet
    from ...supernet.store import MANIFEST_FILE, preset_folder, read_manifest, training_record_epochs

    c = context
    data = c.dataset()
    if epochs is None:
        preset = preset_folder()
        if preset is not None:
            m = read_manifest(preset)
            try:
                Supernet.load(preset, c.space, data)       # same space and data, else it does not apply
                copy_supernet(preset, folder)
                return None, f"the shipped preset ({training_record_epochs(m)} epochs)"
            except Exception:  # noqa: BLE001 - a preset for another space/data: train instead
                pass
    epochs = epochs or SUPERNET_EPOCHS.get(c.budget.name, 10)
    cached = cache_root() / supernet_key(c, epochs, train_limit)
    if (cached / MANIFEST_FILE).is_file():
        copy_supernet(cached, folder)
        return None, f"the cache {cached}"
    n = len(data.y_train) if train_limit is None else min(train_limit, len(data.y_train))
    c.say(f"supernet: training {epochs} epochs on {n} images (one-time cost of this run, cached for later "
          f"runs; checkpoints in {folder}, resumable)")
    sn = train_supernet(c.space, data, epochs=epochs, folder=folder, seed=c.seed, train_limit=train_limit,
                        verbose=1 if c.progress else 0)
    try:
        copy_supernet(folder, cached)
    except OSError:
        pass                                               # a read-only cache only costs the next run
    return sn, f"trained here ({epochs} epochs, {sn.info.get('seconds_this_call', '?')}s)"

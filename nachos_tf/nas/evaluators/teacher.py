"""The final stage's distillation targets, computed once per run and shared by its finalists.

Every finalist of a supernet run is distilled from the same targets: the largest subnet's final-exit logits on
the final stage's training images. Each worker process used to compute them for itself (about 30 s of one core
per worker for the 12,000 images of `make demo`, before its first finalist could start). Now the final stage
computes them once, split over its workers (`SupernetEvaluator.prepare_final`), and keeps them in the run
folder (``teacher/<key>.npy``), where every finalist, and a resumed or re-run final stage, reads them. The
chunks start at multiples of the batch size, so every row is computed in the same batch, with the same batch-norm
re-estimation, as in one call over all images: the targets are the same, bit for bit (tested).

A file read back is trusted only if it is a plain float32 array of the expected shape with finite values; the
key (a hash of the images, the batch-norm images and the supernet's weights file) is its name.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import numpy as np

from ...fsio import atomic_write_bytes

__all__ = ["TEACHER_BATCH", "TEACHER_SUBDIR", "teacher_key", "teacher_path", "read_teacher", "write_teacher",
           "teacher_chunks", "concat_chunks"]

#: images per forward call of the teacher (chunks of work start at multiples of it)
TEACHER_BATCH = 500
#: the run folder's subfolder of teacher targets
TEACHER_SUBDIR = "teacher"


def teacher_key(x: np.ndarray, bn_x: np.ndarray, weights_file: Path) -> str:
    """Name of the targets of images `x`, batch-norm images `bn_x`, supernet weights `weights_file`.

    Args:
        x: the training images the targets are for.
        bn_x: the images the largest subnet's batch-norm statistics are re-estimated on.
        weights_file: the supernet's weights file (its bytes are hashed).

    Returns:
        A 24-character hexadecimal key.
    """
    h = hashlib.sha256()
    for a in (x, bn_x):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    with open(weights_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


def teacher_path(run_dir: Path, key: str) -> Path:
    """Where the targets named `key` are kept in run folder `run_dir`."""
    return Path(run_dir) / TEACHER_SUBDIR / f"{key}.npy"


def read_teacher(path: Path, n: int, classes: int) -> Optional[np.ndarray]:
    """The targets kept at `path` if the file is there and valid, else None (they are computed again).

    Args:
        path: the file (`teacher_path`).
        n: rows expected (training images).
        classes: columns expected.

    Returns:
        An (n, classes) float32 array, or None when the file is missing, unreadable, of another shape or
        type, or holds a non-finite value.
    """
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != (int(n), int(classes)):
        return None
    if not np.isfinite(a).all():
        return None
    return a


def write_teacher(path: Path, targets: np.ndarray) -> Path:
    """Keep `targets` at `path` (atomically: a reader never sees half a file).

    Args:
        path: the file (`teacher_path`); its folder is created.
        targets: the (n, classes) float32 targets.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, np.asarray(targets, np.float32), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def teacher_chunks(n: int, parts: int, batch: int = TEACHER_BATCH) -> List[Tuple[int, int]]:
    """Split rows 0..n into at most `parts` contiguous (start, stop) chunks that start at multiples of `batch`.

    Args:
        n: rows.
        parts: workers to share them (at least 1).
        batch: the forward batch size.

    Returns:
        The chunks, in order, covering 0..n exactly.
    """
    batches = -(-int(n) // batch)
    parts = max(1, min(int(parts), batches))
    edges = [round(k * batches / parts) * batch for k in range(parts + 1)]
    return [(lo, min(hi, int(n))) for lo, hi in zip(edges[:-1], edges[1:]) if lo < min(hi, int(n))]


def concat_chunks(results: Iterable[Tuple[int, np.ndarray]], count: int) -> np.ndarray:
    """The chunks' targets, given as (chunk index, array) in any order, joined in chunk order."""
    got = dict(results)
    return np.concatenate([np.asarray(got[i], np.float32) for i in range(count)])

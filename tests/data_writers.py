"""Independent writers of the dataset formats for the data tests (from the format specs, not with the
readers' code)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array, written from the format spec (not with the reader's code)."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes(order="C")


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> Path:
    raw = idx_bytes(arr)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def make_mnist_like(folder: Path, n_train: int = 40, n_test: int = 20, h: int = 5, w: int = 4,
                    gz: bool = True, seed: int = 0):
    """Four IDX files with balanced labels 0..9; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xtr = rng.integers(0, 256, (n_train, h, w), dtype=np.uint8)
    ytr = (np.arange(n_train) % 10).astype(np.uint8)
    xte = rng.integers(0, 256, (n_test, h, w), dtype=np.uint8)
    yte = (np.arange(n_test) % 10).astype(np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{sfx}", xtr, gz)
    write_idx(folder / f"train-labels-idx1-ubyte{sfx}", ytr, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{sfx}", xte, gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{sfx}", yte, gz)
    return xtr, ytr, xte, yte


def rows_of(x: np.ndarray) -> set:
    return {r.tobytes() for r in x.astype(np.uint8).reshape(len(x), -1)}


def save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def idx_header(code: int, dims) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


"""Image-folder datasets: one sub-folder of images per class, optionally under train/, test/ and val/."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nachos_tf.errors import DataError

from .dataset import Dataset, PathLike, with_val_split
from .splits import stratified_split

__all__ = ["load_folder"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _listdir(folder: Path) -> List[Path]:
    """Entries of a folder; DataError naming it when it cannot be listed (permissions, I/O error)."""
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"{folder}: cannot read folder ({e.strerror or e})") from None


def _subdirs(folder: Path) -> List[Path]:
    return [d for d in _listdir(folder) if d.is_dir() and not d.name.startswith(".")]


def _read_image(f: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    from PIL.Image import DecompressionBombError

    try:
        with Image.open(f) as im:
            im.load()
            gray = im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
            return np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, DecompressionBombError, OSError, ValueError,
            SyntaxError) as e:
        raise DataError(f"{f}: not a readable image ({e})") from None


def _read_class_folders(root: Path, class_names: Optional[Sequence[str]] = None
                        ) -> Tuple[List[np.ndarray], List[int], List[Path], List[str]]:
    """Images and labels of a folder holding one sub-folder per class."""
    dirs = _subdirs(root)
    if class_names is None:
        if not dirs:
            raise DataError(f"{root}: no class sub-folders (expected one folder of images per class)")
        class_names = [d.name for d in dirs]
    else:
        unknown = [d.name for d in dirs if d.name not in class_names]
        if unknown:
            raise DataError(f"{root / unknown[0]}: class folder not present in the training set "
                            f"(classes: {', '.join(class_names)})")
    images: List[np.ndarray] = []
    labels: List[int] = []
    files: List[Path] = []
    for d in dirs:
        label = list(class_names).index(d.name)
        found = [f for f in _listdir(d)
                 if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES and not f.name.startswith(".")]
        if not found:
            raise DataError(f"{d}: class folder holds no images "
                            f"({', '.join(sorted(_IMAGE_SUFFIXES))})")
        for f in found:
            images.append(_read_image(f))
            labels.append(label)
            files.append(f)
    return images, labels, files, list(class_names)


def _stack_images(images: List[np.ndarray], files: List[Path],
                  size: Optional[Tuple[int, int]] = None, rgb: bool = False) -> np.ndarray:
    size = size or images[0].shape[:2]
    for im, f in zip(images, files):
        if im.shape[:2] != size:
            raise DataError(f"{f}: image size {im.shape[1]}x{im.shape[0]} differs from "
                            f"{size[1]}x{size[0]} of {files[0]} (all images must share a size)")
    rgb = rgb or any(im.ndim == 3 for im in images)
    out = np.empty((len(images),) + tuple(size) + ((3,) if rgb else (1,)), np.float32)
    for i, im in enumerate(images):
        out[i] = im[..., None] if im.ndim == 2 else im
    return out


def load_folder(path: PathLike, val_fraction: float, seed: int, test_fraction: float) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    train_dir, test_dir, val_dir = root / "train", root / "test", None
    for v in ("val", "valid", "validation"):
        if (root / v).is_dir():
            val_dir = root / v
    if test_dir.is_dir() and not train_dir.is_dir():
        raise DataError(f"{root}: has a test/ folder but no train/ folder")
    if train_dir.is_dir():
        imgs, labels, files, names = _read_class_folders(train_dir)
        extra = [(test_dir, "test")] if test_dir.is_dir() else []
        if val_dir is not None:
            extra.append((val_dir, "val"))
    else:
        imgs, labels, files, names = _read_class_folders(root)
        extra = []
    others = {}
    for d, which in extra:
        o_imgs, o_labels, o_files, _ = _read_class_folders(d, names)
        others[which] = (o_imgs, o_labels, o_files)
    all_imgs = imgs + [im for o in others.values() for im in o[0]]
    all_files = files + [f for o in others.values() for f in o[2]]
    stacked = _stack_images(all_imgs, all_files)
    x, y = stacked[:len(imgs)], np.asarray(labels, np.int32)
    splits = {}
    start = len(imgs)
    for which, (o_imgs, o_labels, _) in others.items():
        splits[which] = (stacked[start:start + len(o_imgs)], np.asarray(o_labels, np.int32))
        start += len(o_imgs)
    if "test" in splits:
        x_test, y_test = splits["test"]
    else:
        if not 0.0 < float(test_fraction) < 1.0:
            raise DataError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
        keep, held = stratified_split(y, test_fraction, int(seed) + 1_000_003, what="test")
        x, y, x_test, y_test = x[keep], y[keep], x[held], y[held]
    return with_val_split("folder", x, y, x_test, y_test, len(names), names, val_fraction,
                           seed, str(root), val=splits.get("val"))

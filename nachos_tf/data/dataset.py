"""The :class:`Dataset` container (train/val/test arrays) and its assembly from train and test arrays."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from nachos_tf.errors import DataError

from .checks import check_classes
from .splits import balanced_indices, stratified_split

__all__ = ["Dataset", "PathLike", "with_val_split"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(eq=False)
class Dataset:
    """Train/validation/test arrays of one image classification dataset.

    Images are float32 raw pixel values in (N, H, W, C); labels are int32 in 0..num_classes-1.

    Attributes:
        x_train: Training images.
        y_train: Training labels.
        x_val: Validation images.
        y_val: Validation labels.
        x_test: Test images.
        y_test: Test labels.
        num_classes: Number of classes.
        input_shape: Shape (H, W, C) of one image.
        name: Dataset name.
        class_names: One name per class (defaults to "0", "1", ...).
        source: Where the files were read from, for run provenance.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: Tuple[int, int, int]
    name: str
    class_names: Tuple[str, ...] = ()
    source: str = field(default="")  # where the files were read from, for run provenance

    def __post_init__(self) -> None:
        if not self.class_names:
            self.class_names = tuple(str(i) for i in range(self.num_classes))

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
                f"test={len(self.y_test)}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes})")

    def split(self, which: str) -> Tuple[np.ndarray, np.ndarray]:
        """The (x, y) arrays of one split.

        Args:
            which: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            The ``(x, y)`` arrays of that split.

        Raises:
            DataError: `which` is not a known split.
        """
        if which not in ("train", "val", "test"):
            raise DataError(f"unknown split {which!r}: expected 'train', 'val' or 'test'")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def class_counts(self, which: str = "train") -> np.ndarray:
        """Number of samples of each class in one split.

        Args:
            which: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            The per-class sample counts (length num_classes).

        Raises:
            DataError: `which` is not a known split.
        """
        return np.bincount(self.split(which)[1], minlength=self.num_classes)

    def subset(self, train: Optional[int] = None, val: Optional[int] = None,
               test: Optional[int] = None, seed: Optional[int] = 0) -> "Dataset":
        """A smaller, class-balanced copy: at most ``train``/``val``/``test`` samples per split.

        ``None`` keeps a split whole.  With an int ``seed`` the samples of each class are drawn at
        random (deterministic for the seed); with ``seed=None`` the first ones of each class are
        taken.  Samples keep their original relative order.

        Args:
            train: At most this many training samples (``None``: all).
            val: At most this many validation samples (``None``: all).
            test: At most this many test samples (``None``: all).
            seed: Seed of the random draw per class; ``None`` takes the first samples of each class.

        Returns:
            The smaller copy of the dataset.

        Raises:
            DataError: A subset size is negative.
        """
        out: Dict[str, np.ndarray] = {}
        for k, (which, n) in enumerate((("train", train), ("val", val), ("test", test))):
            x, y = self.split(which)
            if n is not None:
                if int(n) < 0:
                    raise DataError(f"subset size for {which} must be >= 0, got {n}")
                rng = None if seed is None else np.random.default_rng([int(seed), k])
                idx = balanced_indices(y, int(n), rng)
                x, y = x[idx], y[idx]
            out[f"x_{which}"], out[f"y_{which}"] = x, y
        return replace(self, **out)

    def summary(self) -> str:
        """A few human-readable lines: sizes, shape, classes and pixel range.

        Returns:
            The summary text (lines separated by newlines).
        """
        lines = [f"dataset {self.name}: {self.num_classes} classes, input shape {self.input_shape}"]
        if self.source:
            lines.append(f"  source: {self.source}")
        for which in ("train", "val", "test"):
            x, y = self.split(which)
            counts = np.bincount(y, minlength=self.num_classes) if len(y) else np.zeros(0, int)
            rng = f", pixels {x.min():g}..{x.max():g}" if x.size else ""
            per = (f", per class {counts.min()}..{counts.max()}" if len(y) else "")
            lines.append(f"  {which:5s} {len(y):6d} images{per}{rng}")
        names = ", ".join(self.class_names)
        lines.append(f"  classes: {names}")
        return "\n".join(lines)


def with_val_split(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, num_classes: int, class_names: Sequence[str],
                    val_fraction: float, seed: int, source: str,
                    val: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Dataset:
    """Assemble a Dataset, carving a stratified validation set off (x, y) unless one is given."""
    check_classes(y, num_classes, source or name)
    if val is None:
        keep, held = stratified_split(y, val_fraction, seed)
        x_tr, y_tr, x_va, y_va = x[keep], y[keep], x[held], y[held]
        check_classes(y_tr, num_classes, source or name, "training set once the validation split is held out")
    else:
        x_tr, y_tr, (x_va, y_va) = x, y, val

    def f32(a: np.ndarray) -> np.ndarray:  # converted last: indexing uint8 is 4x cheaper
        return np.ascontiguousarray(a, dtype=np.float32)

    def i32(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.int32)

    return Dataset(
        x_train=f32(x_tr), y_train=i32(y_tr), x_val=f32(x_va), y_val=i32(y_va),
        x_test=f32(x_test), y_test=i32(y_test),
        num_classes=int(num_classes), input_shape=tuple(int(d) for d in x.shape[1:]),
        name=name, class_names=tuple(class_names), source=source,
    )

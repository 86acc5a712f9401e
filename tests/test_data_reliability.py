"""Reliability of nachos_tf.data (issue 14: items 6, 7, 15, 16, 19): IDX headers against the file size,
non-finite images, one-class or missing-class training labels, huge labels, unreadable folders, missing data."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from nachos_tf import data
from nachos_tf.errors import DataError

from data_writers import idx_header, make_mnist_like, save_png, write_idx


# ------------------------------------------------------------------ reliability (issue 14: items 6, 7, 15, 16, 19)

def test_idx_header_dims_are_checked_against_the_file_size_without_wrapping(tmp_path):
    # 2^31 x 2^31 x 4 bytes = 2^64: an int64 product wraps to 0 and matched an empty payload
    (tmp_path / "huge").write_bytes(idx_header(0x08, (2 ** 31, 2 ** 31, 4)))
    with pytest.raises(DataError, match=r"huge: truncated IDX data.*18446744073709551616 bytes"):
        data.read_idx(tmp_path / "huge", ndim=3)
    # the largest dims the header can hold, with a few bytes of payload
    (tmp_path / "big").write_bytes(idx_header(0x0D, (2 ** 32 - 1,) * 3) + bytes(64))
    with pytest.raises(DataError, match="big: truncated IDX data"):
        data.read_idx(tmp_path / "big", ndim=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_idx_float_images_with_nan_or_inf_are_refused_at_load(tmp_path, bad):
    make_mnist_like(tmp_path)
    x = (np.random.default_rng(0).random((40, 5, 4)) * 255).astype(np.float32)
    x[7, 2, 1] = bad
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_header(0x0D, x.shape) + x.astype(">f4").tobytes()))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: images contain NaN or infinite"):
        data.load("mnist", tmp_path)
    x[7, 2, 1] = 3.5                                    # the same file with finite floats loads
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_header(0x0D, x.shape) + x.astype(">f4").tobytes()))
    ds = data.load("mnist", tmp_path, val_fraction=0.25)
    assert np.isfinite(ds.x_train).all() and 3.5 in np.concatenate([ds.x_train, ds.x_val])


def test_training_labels_of_one_class_are_refused(tmp_path):
    make_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(40, 3, np.uint8))
    with pytest.raises(DataError, match=r"train-labels.*class\(es\) 0, 1, 2, 4, 5 and 4 more of 0\.\.9 have no "
                                        r"sample in the training set"):
        data.load("mnist", tmp_path)
    f = tmp_path / "one.npz"
    np.savez(f, x_train=np.zeros((20, 3, 3)), y_train=np.zeros(20, int), x_test=np.zeros((4, 3, 3)),
             y_test=np.zeros(4, int))
    with pytest.raises(DataError, match=r"one\.npz \[y_train\]: the training set holds 1 class"):
        data.load("npz", f)


def test_npz_huge_label_is_refused_in_one_short_line(tmp_path):
    f = tmp_path / "huge.npz"
    y = np.arange(60) % 3
    y[5] = 100000
    np.savez(f, x_train=np.zeros((60, 3, 3)), y_train=y, x_test=np.zeros((3, 3, 3)), y_test=np.arange(3))
    with pytest.raises(DataError) as e:
        data.load("npz", f)
    msg = str(e.value)
    assert "huge.npz [y_train]" in msg and "100001 classes" in msg and "\n" not in msg and len(msg) < 300
    # enough samples for 100001 classes but most of them absent: still one short line
    y = np.arange(200_000) % 3
    y[5] = 100000
    np.savez(f, x_train=np.zeros((200_000, 1, 1), np.uint8), y_train=y, x_test=np.zeros((3, 1, 1)),
             y_test=np.arange(3))
    with pytest.raises(DataError, match=r"class\(es\) 3, 4, 5, 6, 7 and 99992 more of 0\.\.100000") as e:
        data.load("npz", f)
    assert len(str(e.value)) < 300


def test_every_class_must_be_in_training(tmp_path):
    f = tmp_path / "gap.npz"
    np.savez(f, x_train=np.zeros((30, 3, 3)), y_train=np.array([0, 1, 3] * 10), x_test=np.zeros((3, 3, 3)),
             y_test=np.arange(3))
    with pytest.raises(DataError, match=r"gap\.npz \[y_train\]: class\(es\) 2 of 0\.\.3 have no sample"):
        data.load("npz", f)
    # a test label the training set never shows
    np.savez(f, x_train=np.zeros((30, 3, 3)), y_train=np.arange(30) % 3, x_test=np.zeros((4, 3, 3)),
             y_test=np.arange(4))
    with pytest.raises(DataError, match=r"class\(es\) 3 of 0\.\.3 have no sample in the training set"):
        data.load("npz", f)
    # class names announcing more classes than the training set has
    np.savez(f, x_train=np.zeros((30, 3, 3)), y_train=np.arange(30) % 3, x_test=np.zeros((3, 3, 3)),
             y_test=np.arange(3), class_names=np.array(["a", "b", "c", "d"]))
    with pytest.raises(DataError, match=r"class\(es\) 3 of 0\.\.3"):
        data.load("npz", f)
    # a class whose only sample the validation split takes (11 of 21 held out: quotas 5.24, 5.24, 0.52,
    # the largest remainder, 0.52, goes to the one-sample class)
    np.savez(f, x_train=np.zeros((21, 3, 3)), y_train=np.array([0] * 10 + [1] * 10 + [2]),
             x_test=np.zeros((3, 3, 3)), y_test=np.arange(3))
    with pytest.raises(DataError, match=r"class\(es\) 2 of 0\.\.2 have no sample in the training set once the "
                                        r"validation split is held out"):
        data.load("npz", f, val_fraction=0.52)


def test_unreadable_class_folder_is_one_data_error():
    from fsfaults import open_tmp_dir, unprivileged

    with open_tmp_dir() as root:
        rng = np.random.default_rng(0)
        for cls in ("ant", "bee"):
            for i in range(4):
                save_png(root / cls / f"{i}.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
        os.chmod(root / "bee", 0o000)
        with unprivileged():
            with pytest.raises(DataError, match=r"bee: cannot read folder \(Permission denied\)"):
                data.load("folder", root)
        os.chmod(root / "bee", 0o755)
        os.chmod(root / "bee" / "2.png", 0o000)
        with unprivileged():
            with pytest.raises(DataError, match=r"2\.png: not a readable image"):
                data.load("folder", root)
        os.chmod(root, 0o000)                  # the dataset folder itself
        with unprivileged():
            with pytest.raises(DataError, match="Permission denied"):
                data.load("folder", root)
        os.chmod(root, 0o777)


def test_fashion_mnist_not_found_is_one_line(tmp_path):
    with pytest.raises(DataError) as e:
        data.load("fashion_mnist", tmp_path / "nowhere")
    msg = str(e.value)
    assert "\n" not in msg and "nowhere" in msg and "apt-get install dataset-fashion-mnist" in msg

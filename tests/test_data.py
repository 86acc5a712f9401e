"""Tests of nachos_tf.data: every format built by hand (independent writers), bad files, real Fashion-MNIST."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from nachos_tf import data
from nachos_tf.errors import DataError

from data_writers import FASHION_DIR, FASHION_FILES, make_mnist_like, rows_of, save_png, write_idx


# ------------------------------------------------------------------ IDX / MNIST

def test_idx_round_trip_gzip_and_plain(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "a.gz", arr), ndim=3), arr)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "a", arr, gz=False), ndim=3), arr)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_values_exact(tmp_path, gz):
    xtr, ytr, xte, yte = make_mnist_like(tmp_path, gz=gz)
    ds = data.load("mnist", tmp_path, val_fraction=0.25, seed=3)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.input_shape == (5, 4, 1) and ds.x_test.shape == (20, 5, 4, 1)
    assert ds.num_classes == 10 and ds.class_names == tuple("0123456789")
    np.testing.assert_array_equal(ds.x_test[..., 0], xte.astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, yte)
    # train + val is exactly the training file, each image with its own label
    assert len(ds.y_train) == 30 and len(ds.y_val) == 10
    x_all = np.concatenate([ds.x_train, ds.x_val])[..., 0]
    y_all = np.concatenate([ds.y_train, ds.y_val])
    lookup = {xtr[i].tobytes(): int(ytr[i]) for i in range(len(ytr))}
    assert sorted(lookup) == sorted(r.astype(np.uint8).tobytes() for r in x_all)
    assert all(lookup[x.astype(np.uint8).tobytes()] == y for x, y in zip(x_all, y_all))


def test_stratified_split_counts_and_seed(tmp_path):
    make_mnist_like(tmp_path, n_train=200)
    a = data.load("mnist", tmp_path, val_fraction=0.1, seed=7)
    b = data.load("mnist", tmp_path, val_fraction=0.1, seed=7)
    c = data.load("mnist", tmp_path, val_fraction=0.1, seed=8)
    assert list(a.class_counts("val")) == [2] * 10 and list(a.class_counts("train")) == [18] * 10
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert rows_of(a.x_val) != rows_of(c.x_val)
    assert not rows_of(a.x_val) & rows_of(a.x_train)


def test_stratified_split_uneven_classes():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = data.stratified_split(y, 0.15, seed=0)
    assert len(held) == 15 and len(keep) == 85
    assert np.bincount(y[held]).tolist() == [8, 4, 3]  # 7.5, 4.5, 3.0 -> largest remainders
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(100))


def test_subset_balanced_and_deterministic(tmp_path):
    make_mnist_like(tmp_path, n_train=200, n_test=100)
    ds = data.load("mnist", tmp_path)
    s = ds.subset(train=30, val=10, test=25, seed=1)
    assert list(s.class_counts("train")) == [3] * 10
    assert list(s.class_counts("val")) == [1] * 10
    assert sorted(s.class_counts("test").tolist()) == [2] * 5 + [3] * 5
    s2 = ds.subset(train=30, val=10, test=25, seed=1)
    np.testing.assert_array_equal(s.x_train, s2.x_train)
    first = ds.subset(train=10, seed=None)  # first sample of each class
    expect = [int(np.flatnonzero(ds.y_train == k)[0]) for k in range(10)]
    np.testing.assert_array_equal(first.x_train, ds.x_train[sorted(expect)])
    assert len(first.y_val) == len(ds.y_val)  # None keeps a split whole
    assert ds.subset(train=10**6).x_train.shape == ds.x_train.shape
    assert "mnist" in s.summary() and "train" in s.summary() and "30" in s.summary()
    with pytest.raises(DataError, match=">= 0"):
        ds.subset(train=-1)


# ------------------------------------------------------------------ bad IDX input

def test_missing_file_named(tmp_path):
    make_mnist_like(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*not found"):
        data.load("mnist", tmp_path)


def test_truncated_gzip(tmp_path):
    make_mnist_like(tmp_path)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*truncated gzip"):
        data.load("mnist", tmp_path)


def test_truncated_idx_payload(tmp_path):
    make_mnist_like(tmp_path)
    f = tmp_path / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes())[:-7]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated IDX data"):
        data.load("mnist", tmp_path)


def test_wrong_magic(tmp_path):
    make_mnist_like(tmp_path)
    f = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[3] = 3  # labels file claiming three dimensions
    f.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*wrong magic number 0x00000803"):
        data.load("mnist", tmp_path)
    f.write_bytes(gzip.compress(b"PK\x03\x04" + bytes(raw[4:])))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*wrong magic number"):
        data.load("mnist", tmp_path)


def test_count_mismatch(tmp_path):
    make_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(39, np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*count mismatch.*40 images"
                                        r".*train-labels-idx1-ubyte\.gz.*39 labels"):
        data.load("mnist", tmp_path)


def test_label_out_of_range(tmp_path):
    make_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(20, 12, np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*label 12 out of range 0\.\.9"):
        data.load("mnist", tmp_path)


def test_unknown_name_and_bad_fraction(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'imagenet'.*fashion_mnist.*cifar10.*npz"):
        data.load("imagenet")
    for bad in (0, 1, -0.1, 1.5, "x"):
        with pytest.raises(DataError, match="val_fraction"):
            data.load("mnist", tmp_path, val_fraction=bad)
    with pytest.raises(DataError, match="needs path"):
        data.load("mnist")


def test_fashion_mnist_search_order(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(data, "FASHION_MNIST_CACHE_DIR", tmp_path / "cache")
    monkeypatch.delenv("NACHOS_DATA", raising=False)
    with pytest.raises(DataError) as e:
        data.load("fashion_mnist")
    msg = str(e.value)
    assert "nowhere" in msg and "cache" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "NACHOS_DATA" in msg
    # the cache folder, then $NACHOS_DATA (with a fashion-mnist sub-folder) taking precedence
    make_mnist_like(tmp_path / "cache", seed=1)
    assert data.find_fashion_mnist() == tmp_path / "cache"
    make_mnist_like(tmp_path / "env" / "fashion-mnist", seed=2)
    monkeypatch.setenv("NACHOS_DATA", str(tmp_path / "env"))
    ds = data.load("fashion-mnist")
    assert ds.source == str(tmp_path / "env" / "fashion-mnist")
    assert ds.class_names[0] == "T-shirt/top"
    # an explicit path is the only place looked
    with pytest.raises(DataError, match="empty"):
        (tmp_path / "empty").mkdir()
        data.load("fashion_mnist", tmp_path / "empty")


def test_cache_constants():
    assert data.FASHION_MNIST_CACHE_DIR == (data.FASHION_MNIST_CACHE_ROOT
                                            / "usr/share/datasets/fashion-mnist")
    assert str(data.FASHION_MNIST_CACHE_ROOT).endswith(".cache/nachos-tf/fashion-mnist")


# ------------------------------------------------------------------ npz

def test_npz_with_and_without_channel_axis(tmp_path):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (30, 6, 6), dtype=np.uint8)
    ytr = np.arange(30) % 3
    xte = rng.integers(0, 256, (9, 6, 6), dtype=np.uint8)
    yte = np.arange(9) % 3
    f = tmp_path / "d.npz"
    np.savez(f, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    ds = data.load("npz", f, val_fraction=0.2)
    assert ds.input_shape == (6, 6, 1) and ds.num_classes == 3
    assert list(ds.class_counts("val")) == [2, 2, 2]
    np.testing.assert_array_equal(ds.x_test[..., 0], xte)
    g = tmp_path / "rgb.npz"
    np.savez(g, x_train=rng.random((20, 4, 4, 3)) * 255, y_train=(np.arange(20) % 4)[:, None],
             x_test=rng.random((4, 4, 4, 3)) * 255, y_test=np.arange(4),
             class_names=np.array(["a", "b", "c", "d"]))
    ds2 = data.load("npz", g)
    assert ds2.input_shape == (4, 4, 3) and ds2.class_names == ("a", "b", "c", "d")
    assert ds2.y_train.dtype == np.int32


def test_npz_bad(tmp_path):
    f = tmp_path / "bad.npz"
    np.savez(f, x_train=np.zeros((5, 2, 2)), y_train=np.zeros(5, int), x_test=np.zeros((2, 2, 2)))
    with pytest.raises(DataError, match=r"bad\.npz.*missing key.*y_test"):
        data.load("npz", f)
    np.savez(f, x_train=np.zeros((5, 2, 2)), y_train=np.zeros(4, int),
             x_test=np.zeros((2, 2, 2)), y_test=np.zeros(2, int))
    with pytest.raises(DataError, match=r"bad\.npz.*count mismatch"):
        data.load("npz", f)
    np.savez(f, x_train=np.zeros((5, 2, 2)), y_train=np.array([0, 1, -1, 0, 1]),
             x_test=np.zeros((2, 2, 2)), y_test=np.zeros(2, int))
    with pytest.raises(DataError, match=r"bad\.npz.*y_train.*label -1 out of range"):
        data.load("npz", f)
    np.savez(f, x_train=np.array([{"a": 1}] * 5, dtype=object), y_train=np.zeros(5, int),
             x_test=np.zeros((2, 2, 2)), y_test=np.zeros(2, int))
    with pytest.raises(DataError, match=r"bad\.npz.*refused"):
        data.load("npz", f)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz.*not a readable"):
        data.load("npz", tmp_path / "junk.npz")
    with pytest.raises(DataError, match=r"absent\.npz.*not found"):
        data.load("npz", tmp_path / "absent.npz")


# ------------------------------------------------------------------ image folders


def test_folder_split_off_test(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("zebra", "ant", "cat"):  # classes are sorted by folder name
        for i in range(10):
            save_png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (5, 7), dtype=np.uint8))
    (tmp_path / "ant" / "notes.txt").write_text("ignored")
    ds = data.load("folder", tmp_path, val_fraction=0.25, seed=0, test_fraction=0.2)
    assert ds.class_names == ("ant", "cat", "zebra") and ds.num_classes == 3
    assert ds.input_shape == (5, 7, 1)
    assert list(ds.class_counts("test")) == [2, 2, 2]
    assert list(ds.class_counts("val")) == [2, 2, 2]
    assert list(ds.class_counts("train")) == [6, 6, 6]
    from PIL import Image
    pixels = np.asarray(Image.open(tmp_path / "cat" / "3.png"), np.float32)
    x_all = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    y_all = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    hit = [i for i in range(len(x_all)) if np.array_equal(x_all[i, ..., 0], pixels)]
    assert len(hit) == 1 and y_all[hit[0]] == 1


def test_folder_train_test_rgb_and_bad(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                save_png(tmp_path / split / cls / f"{i}.png",
                         rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    ds = data.load("folder", tmp_path, val_fraction=0.5)
    assert ds.input_shape == (4, 4, 3) and len(ds.y_test) == 4 and len(ds.y_val) == 6
    from PIL import Image
    np.testing.assert_array_equal(
        ds.x_test[0], np.asarray(Image.open(tmp_path / "test" / "a" / "0.png"), np.float32))
    save_png(tmp_path / "test" / "b" / "odd.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"odd\.png.*size 4x5 differs"):
        data.load("folder", tmp_path)
    (tmp_path / "test" / "b" / "odd.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match=r"odd\.png.*not a readable image"):
        data.load("folder", tmp_path)
    (tmp_path / "test" / "b" / "odd.png").unlink()
    save_png(tmp_path / "test" / "c" / "0.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"test/c.*not present in the training set"):
        data.load("folder", tmp_path)
    with pytest.raises(DataError, match="no class sub-folders"):
        (tmp_path / "flat").mkdir()
        data.load("folder", tmp_path / "flat")


# ------------------------------------------------------------------ the real Fashion-MNIST

@pytest.mark.skipif(not all((FASHION_DIR / f).is_file() for f in FASHION_FILES),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("NACHOS_DATA", raising=False)
    ds = data.load()  # the default dataset
    assert ds.source == str(FASHION_DIR) and ds.name == "fashion_mnist"
    assert len(ds.y_train) + len(ds.y_val) == 60000 and len(ds.y_test) == 10000
    assert len(ds.y_val) == 6000
    assert ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape[1:] == (28, 28, 1)
    assert ds.x_train.min() == 0 and ds.x_train.max() == 255 and ds.x_test.max() == 255
    # known facts: balanced classes, and the first labels of each file
    assert (ds.class_counts("train") + ds.class_counts("val")).tolist() == [6000] * 10
    assert ds.class_counts("val").tolist() == [600] * 10
    assert ds.class_counts("test").tolist() == [1000] * 10
    assert ds.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    raw = data.read_idx(FASHION_DIR / "train-labels-idx1-ubyte.gz", ndim=1)
    assert raw[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.class_names[9] == "Ankle boot"

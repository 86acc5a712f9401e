"""Tests of nachos_tf.data's CIFAR-10 readers: binary and pickled batches (Python 3 and Python 2 style, built
by hand), malicious and broken pickles."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from nachos_tf import data
from nachos_tf.errors import DataError

from data_writers import rows_of


# ------------------------------------------------------------------ CIFAR-10

def cifar_arrays(n: int, seed: int):
    rng = np.random.default_rng(seed)
    hwc = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return hwc, labels


def test_cifar10_binary(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        hwc, labels = cifar_arrays(10, i)
        recs = []
        for img, lab in zip(hwc, labels):  # record = label byte, R plane, G plane, B plane
            recs.append(bytes([lab]) + b"".join(img[:, :, c].tobytes() for c in range(3)))
        (folder / f"{name}.bin").write_bytes(b"".join(recs))
        written[name] = (hwc, labels)
    ds = data.load("cifar10", tmp_path, val_fraction=0.2)
    assert ds.input_shape == (32, 32, 3) and ds.class_names[0] == "airplane"
    np.testing.assert_array_equal(ds.x_test, written["test_batch"][0].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, written["test_batch"][1])
    assert len(ds.y_train) == 40 and len(ds.y_val) == 10
    train_rows = set().union(*(rows_of(written[f"data_batch_{k}"][0]) for k in range(1, 6)))
    assert rows_of(np.concatenate([ds.x_train, ds.x_val])) == train_rows
    # a truncated record
    f = folder / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"data_batch_3\.bin.*truncated"):
        data.load("cifar10", folder)


def write_py_batch(path: Path, hwc: np.ndarray, labels: np.ndarray, protocol: int = 2):
    chw_rows = hwc.transpose(0, 3, 1, 2).reshape(len(hwc), -1)
    obj = {b"batch_label": b"batch", b"labels": [int(v) for v in labels], b"data": chw_rows,
           b"filenames": [b"f%d.png" % i for i in range(len(labels))]}
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_python(tmp_path, protocol):
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        hwc, labels = cifar_arrays(10, 100 + i)
        write_py_batch(tmp_path / name, hwc, labels, protocol)
        written[name] = (hwc, labels)
    ds = data.load("cifar10", tmp_path)
    np.testing.assert_array_equal(ds.x_test, written["test_batch"][0].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, written["test_batch"][1])
    assert len(ds.y_train) + len(ds.y_val) == 50


def py2_batch_pickle(hwc: np.ndarray, labels: np.ndarray) -> bytes:
    """A batch pickled the way Python 2 wrote the real CIFAR-10 files (str as BINSTRING), by hand."""
    def s(b: bytes) -> bytes:
        return b"T" + struct.pack("<I", len(b)) + b

    def i(v: int) -> bytes:
        return b"J" + struct.pack("<i", v)

    rows = hwc.transpose(0, 3, 1, 2).reshape(len(hwc), -1)
    arr = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + i(0) + b"\x85"
           + s(b"b") + b"\x87R"
           + b"(" + i(1) + i(rows.shape[0]) + i(rows.shape[1]) + b"\x86"
           + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
           + b"(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb"
           + b"\x89" + s(rows.tobytes()) + b"tb")
    labs = b"](" + b"".join(i(int(v)) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + arr + s(b"labels") + labs + b"u."


def test_cifar10_python2_style_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for k, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        hwc, labels = cifar_arrays(10 if k < 5 else 4, 200 + k)   # every class in training (issue 14.16)
        (folder / name).write_bytes(py2_batch_pickle(hwc, labels))
    ds = data.load("cifar10", tmp_path, val_fraction=0.25)
    np.testing.assert_array_equal(ds.x_test, cifar_arrays(4, 205)[0].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, [0, 1, 2, 3])


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


def test_cifar10_malicious_pickle_refused(tmp_path):
    for k in range(1, 6):
        hwc, labels = cifar_arrays(10, k)
        write_py_batch(tmp_path / f"data_batch_{k}", hwc, labels)
    target = tmp_path / "pwned.txt"
    (tmp_path / "data_batch_2").write_bytes(
        pickle.dumps({b"data": _Evil(str(target)), b"labels": [0]}, protocol=2))
    write_py_batch(tmp_path / "test_batch", *cifar_arrays(10, 9))
    with pytest.raises(DataError) as e:
        data.load("cifar10", tmp_path)
    assert "data_batch_2" in str(e.value) and "refused" in str(e.value)
    assert "system" in str(e.value)
    assert not target.exists()
    pickle.loads((tmp_path / "data_batch_2").read_bytes())  # the file really is hostile
    assert target.exists()


def test_cifar10_pickle_missing_batch_and_garbage(tmp_path):
    for k in (1, 2, 3, 5):
        write_py_batch(tmp_path / f"data_batch_{k}", *cifar_arrays(10, k))
    write_py_batch(tmp_path / "test_batch", *cifar_arrays(10, 9))
    with pytest.raises(DataError, match=r"data_batch_4.*not found"):
        data.load("cifar10", tmp_path)
    (tmp_path / "data_batch_4").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match=r"data_batch_4.*not a readable"):
        data.load("cifar10", tmp_path)
    with pytest.raises(DataError, match="no CIFAR-10 batches"):
        data.load("cifar10", tmp_path / "nothing")

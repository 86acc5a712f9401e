"""The final stage's distillation-target file and chunks (`nas.evaluators.teacher`): what is read back is
validated, the chunks cover every row once and start where a batch starts; the final stage asks an evaluator for
its shared work once, before the finalists, with the backend's worker count."""
from __future__ import annotations

import numpy as np
import pytest

from nachos_tf.nas.evaluators import teacher as TT


@pytest.mark.parametrize("n,parts,batch", [(12000, 2, 500), (550, 2, 500), (550, 4, 100), (100, 3, 500),
                                           (1001, 3, 250), (7, 1, 2)])
def test_chunks_cover_every_row_once_from_batch_starts(n, parts, batch):
    chunks = TT.teacher_chunks(n, parts, batch)
    assert 1 <= len(chunks) <= parts
    rows = [r for lo, hi in chunks for r in range(lo, hi)]
    assert rows == list(range(n))
    assert all(lo % batch == 0 and hi > lo for lo, hi in chunks)
    sizes = [hi - lo for lo, hi in chunks[:-1]]
    assert not sizes or max(sizes) - min(sizes) <= batch            # balanced to one batch


def test_read_teacher_trusts_only_a_finite_float32_array_of_the_expected_shape(tmp_path):
    good = np.random.default_rng(0).normal(size=(30, 10)).astype(np.float32)
    path = TT.teacher_path(tmp_path, "k")
    TT.write_teacher(path, good)
    assert np.array_equal(TT.read_teacher(path, 30, 10), good)
    assert TT.read_teacher(path, 31, 10) is None and TT.read_teacher(path, 30, 9) is None
    bad = {"float64": good.astype(np.float64), "nan": np.where(good > 1, np.nan, good).astype(np.float32),
           "objects": np.array([{"a": 1}] * 30, dtype=object)}
    for name, arr in bad.items():
        p = tmp_path / f"{name}.npy"
        np.save(p, arr, allow_pickle=True)
        assert TT.read_teacher(p, 30, 10) is None, name
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    assert TT.read_teacher(tmp_path / "junk.npy", 30, 10) is None
    assert TT.read_teacher(tmp_path / "missing.npy", 30, 10) is None


def test_teacher_key_changes_with_images_bn_images_and_weights(tmp_path):
    rng = np.random.default_rng(1)
    x, bn = rng.random((20, 4, 4, 1)).astype(np.float32), rng.random((8, 4, 4, 1)).astype(np.float32)
    w = tmp_path / "w.h5"
    w.write_bytes(b"weights")
    k = TT.teacher_key(x, bn, w)
    assert k == TT.teacher_key(x.copy(), bn.copy(), w)
    x2 = x.copy()
    x2[3, 1, 1, 0] += 1
    assert TT.teacher_key(x2, bn, w) != k and TT.teacher_key(x, bn[:7], w) != k
    w.write_bytes(b"weights2")
    assert TT.teacher_key(x, bn, w) != k


def test_final_stage_asks_for_shared_work_once_before_the_finalists(tmp_path, monkeypatch):
    """`_finalize_into` calls `prepare_final` once (here: no backend, one worker) before any finalize, and not at
    all when every member was re-trained earlier (the archive)."""
    from nachos_tf.nas import final as F

    order = []

    class Ev:
        def prepare_final(self, run_tasks, workers):
            order.append(("prepare", workers, [r for _, r in run_tasks(lambda ev, i, item: (i, item * 2), [1, 2])]))

    class Pool:
        class archive:
            @staticmethod
            def append(fin):
                pass

    def fake_finalize(evaluator, index, item):
        order.append(("finalize", item[0].id))
        return index, _Fin(item[0].id)

    class _Fin:
        def __init__(self, rid):
            self.id, self.dropped, self.extra = rid, "x", {}

    class Rec:
        def __init__(self, rid):
            self.id, self.extra = rid, {}

    monkeypatch.setattr(F, "finalize_task", fake_finalize)
    F._finalize_into({}, [(0, Rec("a")), (1, Rec("b"))], 2, {}, Ev(), None, Pool, tmp_path, lambda s: None)
    assert order == [("prepare", 1, [2, 4]), ("finalize", "a"), ("finalize", "b")]
    order.clear()
    F._finalize_into({}, [(0, Rec("a"))], 1, {"a": _Fin("a")}, Ev(), None, Pool, tmp_path, lambda s: None)
    assert order == []

"""Operating points of the final set (`nas.final_points.place_dominated`): checked against a hand-made case,
an independent 2-D hypervolume and a brute force over every qualifying curve point."""

import numpy as np
import pytest

from nachos_tf.nas.final_points import place_dominated


def _dom(a, b):
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def _hv2d(points, err_scale, macs_scale):
    """Area dominated in the normalised (error, MACs) box up to (1, 1), by sweeping rectangles."""
    f = sorted(((1 - a) / err_scale, m / macs_scale) for m, a in points)
    area, best_m = 0.0, 1.0
    for e, m in f:                          # by error ascending: each point adds a strip below best_m
        if e < 1.0 and m < best_m:
            area += (1.0 - e) * (best_m - m)
            best_m = m
    return area


def test_hand_case_a_dominated_member_moves_below_the_cheapest():
    """Seed 1 of `make demo` in small: B is dearer and less accurate than A after re-training; its curve
    reaches 350k at 0.855 (above the 0.85 floor, cheaper than A), which is the only useful point."""
    points = {"A": (414e3, 0.8735), "B": (819e3, 0.8692)}
    curves = {"B": np.array([[300e3, 0.845], [350e3, 0.855], [600e3, 0.866], [819e3, 0.8692]])}
    assert place_dominated(points, curves, 0.85, 1e6) == {"B": 1}
    # nothing qualifies when the floor is above what B reaches below A's cost
    assert place_dominated(points, curves, 0.86, 1e6) == {}
    # a member on the front never moves, even with a curve
    assert place_dominated(points, {"A": np.array([[100e3, 0.86]])}, 0.85, 1e6) == {}


def test_a_point_that_would_dominate_a_front_member_is_refused():
    points = {"A": (400e3, 0.87), "B": (900e3, 0.86)}
    # (390k, 0.871) would push A off the front: refused; (950k, 0.88) qualifies
    curves = {"B": np.array([[390e3, 0.871], [950e3, 0.88]])}
    assert place_dominated(points, curves, 0.85, 1e6) == {"B": 1}
    # over the MAC budget: refused
    assert place_dominated(points, {"B": np.array([[390e3, 0.871], [1.01e6, 0.89]])}, 0.85, 1e6) == {}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_single_dominated_member_takes_the_hypervolume_argmax(seed):
    rng = np.random.default_rng(seed)
    front = {f"F{k}": (float(m), float(a)) for k, (m, a) in
             enumerate(zip(np.sort(rng.uniform(2e5, 9e5, 3)), np.sort(rng.uniform(0.86, 0.89, 3))))}
    worst = max(front.values(), key=lambda p: p[0])
    points = dict(front, D=(worst[0] + 5e4, min(a for _, a in front.values()) - 0.01))
    curve = np.stack([np.sort(rng.uniform(1e5, 1.05e6, 40)), np.sort(rng.uniform(0.84, 0.9, 40))], axis=1)
    got = place_dominated(points, {"D": curve}, 0.85, 1e6)
    base = list(front.values())
    best, best_key = None, None
    for row, (m, a) in enumerate(curve):            # brute force with the independent hypervolume
        p = (m, a)
        if a < 0.85 or m > 1e6 or any(_dom(q, p) or q == p or _dom(p, q) for q in base):
            continue
        key = (-(_hv2d(base + [p], 0.15, 1e6) - _hv2d(base, 0.15, 1e6)), m)
        if best_key is None or key < best_key:
            best, best_key = row, key
    assert got == ({} if best is None else {"D": best})


@pytest.mark.parametrize("seed", range(6))
def test_several_members_end_on_one_front_and_no_one_left_could_join(seed):
    """Random finals: the front grows by exactly the moved members, front members keep their points, and
    every member left dominated has no qualifying point (brute force over its curve)."""
    rng = np.random.default_rng(100 + seed)
    n = 6
    points = {f"c{k}": (float(rng.uniform(2e5, 1e6)), float(rng.uniform(0.85, 0.89))) for k in range(n)}
    curves = {}
    for i, (m, a) in points.items():
        ms = np.sort(np.concatenate([rng.uniform(0.5e5, m, 12), [m]]))
        accs = np.sort(np.concatenate([rng.uniform(a - 0.04, a, 12), [a]]))
        curves[i] = np.stack([ms, accs], axis=1)
    on_front = {i for i, p in points.items() if not any(_dom(q, p) for q in points.values() if q != p)}
    moves = place_dominated(points, curves, 0.85, 1e6)
    assert not (set(moves) & on_front)
    final = dict(points)
    final.update({i: tuple(curves[i][r]) for i, r in moves.items()})
    new_front = {i for i, p in final.items() if not any(_dom(q, p) for j, q in final.items() if j != i)}
    assert new_front == on_front | set(moves)
    placed = [final[i] for i in new_front]
    for i in set(points) - new_front:
        for m, a in curves[i]:
            p = (m, a)
            assert a < 0.85 or m > 1e6 or any(_dom(q, p) or q == p or _dom(p, q) for q in placed), (i, p)


def test_without_bounds_the_box_comes_from_the_points():
    points = {"A": (400e3, 0.87), "B": (900e3, 0.86)}
    assert place_dominated(points, {"B": np.array([[300e3, 0.80]])}, None, None) == {"B": 0}


def test_split_records_keeps_the_newest_line_per_member(tmp_path):
    """The final stage appends a member again after moving it or measuring its int8 figures: reading the
    archive back gives one record per member, the newest, in first-appearance order."""
    from nachos_tf.records import FinalRecord
    from nachos_tf.results import Archive, split_records

    def fin(cid, acc, int8=None):
        fig = {"accuracy": acc, "exit_rates": [1.0], "expected_macs": 1000.0}
        return FinalRecord(id=cid, genome={}, seed=0, rule="max_softmax", thresholds=[], exit_macs=[1000.0],
                           val=fig, test=fig, constraints={"accuracy": 0.0, "macs": 0.0},
                           metrics={"error": 1 - acc, "accuracy": acc, "expected_macs": 1000.0}, feasible=True,
                           int8=int8, model=f"models/{cid}.keras")

    a = Archive(tmp_path / "archive.jsonl")
    for r in (fin("b", 0.80), fin("a", 0.70), fin("b", 0.81), fin("b", 0.81, int8={"accuracy": 0.8})):
        a.append(r)
    _, finals = split_records(a.records())
    assert [(f.id, f.val["accuracy"], f.int8) for f in finals] == [("b", 0.81, {"accuracy": 0.8}), ("a", 0.70, None)]

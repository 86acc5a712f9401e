"""Tests of the final stage's choices: distinct operating points, finalists, re-scoring, screening and
confirmation of front entrants (fake evaluators with a rescore or screen)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nachos_tf import nas as S
from nachos_tf import results as R
from nachos_tf.errors import ConstraintError
from nachos_tf.genome import Genome
from nachos_tf.records import CandidateRecord
from nachos_tf.space import SearchSpace

from search_fakes import FAKE_BUDGET, FakeEvaluator, unit_hash, ready, search_lines, synthetic


# --------------------------------------------------------------------------------------------------
# the final stage: operating points, finalists, re-scoring, screening, confirmation
# --------------------------------------------------------------------------------------------------

def _rec(cid: str, accuracy: float, macs: float, feasible: bool = True) -> CandidateRecord:
    r = CandidateRecord.measured({"id": cid}, seed=0, accuracy=accuracy, exit_rates=[1.0], expected_macs=macs,
                                 exit_macs=[macs], constraints={"accuracy": -0.01 if feasible else 0.01},
                                 rule="max_softmax", thresholds=[], params=1)
    r.id = cid
    return r


def _box_area(points, err_scale, macs_scale):
    """Area of the union of the boxes [e, 1] x [m, 1] of normalised points: a sweep, no pymoo."""
    pts = sorted(((1 - a) / err_scale, m / macs_scale) for m, a in points)
    area, best_m = 0.0, 1.0
    for i, (e, m) in enumerate(pts):
        nxt = pts[i + 1][0] if i + 1 < len(pts) else 1.0
        best_m = min(best_m, m)
        area += max(0.0, min(nxt, 1.0) - min(e, 1.0)) * max(0.0, 1.0 - best_m)
    return area


def test_distinct_keeps_one_record_per_operating_point():
    """Records with the same accuracy, expected MACs and exit rates (networks that differ only where no image
    goes) are one operating point: the one with the cheapest full network is kept, in the records' order;
    other exit rates, another accuracy or an infeasible record are not merged."""
    from nachos_tf.nas.final import distinct

    def two_exit(cid, acc, rates, full, feasible=True):
        r = CandidateRecord.measured({"id": cid}, seed=0, accuracy=acc, exit_rates=rates,
                                     expected_macs=100 * rates[0] + full * rates[1], exit_macs=[100, full],
                                     constraints={"accuracy": -0.01 if feasible else 0.01}, rule="max_softmax",
                                     thresholds=[0.5], params=1)
        r.id = cid
        return r

    a, b = two_exit("a", 0.9, [1.0, 0.0], 400), two_exit("b", 0.9, [1.0, 0.0], 300)   # same point, b cheaper
    c = two_exit("c", 0.9, [1.0, 0.0], 300)                                            # same again, larger id
    d = two_exit("d", 0.9, [0.5, 0.5], 100)                                            # same MACs, other rates
    e = two_exit("e", 0.91, [1.0, 0.0], 500)                                           # more accurate
    x = two_exit("x", 0.9, [1.0, 0.0], 200, feasible=False)
    assert [r.id for r in distinct([a, b, c, d, e, x])] == ["b", "d", "e"]
    assert [r.id for r in distinct([e, d])] == ["e", "d"]


def test_finalists_fill_a_small_front_from_the_next_layers():
    from nachos_tf.nas.final import finalists

    a = _rec("a", 0.90, 100)                                          # dominates every other feasible one
    b, c, d = _rec("b", 0.89, 120), _rec("c", 0.88, 110), _rec("d", 0.87, 105)   # the second layer
    e = _rec("e", 0.86, 130)                                          # third layer (dominated by b, c, d)
    x = _rec("x", 0.95, 50, feasible=False)                           # infeasible: never chosen
    recs = [e, d, x, c, b, a]
    chosen, reserves = finalists(recs, 3)                             # rule "spread" (the default)
    assert [r.id for r in chosen] == ["a", "d", "b"]                  # a, then layer 2 spread: both MAC ends
    assert [r.id for r in reserves] == ["c"]
    # rule "hypervolume", layer 2 alone, box 5 % past its largest error (0.13) and MACs (120), by hand:
    # c 0.1209 x 0.1270 = 0.0154 > b 0.0092 > d 0.0079; then b adds 0.0732 x 0.0476, d 0.0397 x 0.0476
    chosen, reserves = finalists(recs, 3, rule="hypervolume")
    assert [r.id for r in chosen] == ["a", "c", "b"]
    assert [r.id for r in reserves] == ["d"]
    for rule in ("spread", "hypervolume"):
        chosen, reserves = finalists(recs, 1, rule=rule)
        assert [r.id for r in chosen] == ["a"] and reserves == []
        chosen, reserves = finalists(recs, 5, rule=rule)              # a + all of layer 2 + e
        assert [r.id for r in chosen] == ["a", "d", "c", "b", "e"] and reserves == []
    # a front with k members or more: only the front; reserves most accurate first
    front = [_rec(f"f{i}", 0.90 + 0.01 * i, 100 + 10 * i) for i in range(5)]
    chosen, reserves = finalists(front + [e], 3)
    assert [r.id for r in chosen] == ["f0", "f2", "f4"] and [r.id for r in reserves] == ["f3", "f1"]
    chosen, reserves = finalists(front + [e], 3, min_accuracy=0.85, max_macs=200, rule="hypervolume")
    assert len(chosen) == 3 and {r.id for r in chosen} | {r.id for r in reserves} == {f"f{i}" for i in range(5)}
    assert [r.id for r in reserves] == sorted((r.id for r in reserves), reverse=True)
    with pytest.raises(ConstraintError, match="finalist rule"):
        finalists(recs, 2, rule="best")


@pytest.mark.parametrize("seed", range(6))
def test_finalists_are_the_greedy_hypervolume_choice_in_the_constraint_box(seed):
    """Each pick adds the most box area (computed here by a sweep, not pymoo) to the picks before it; members
    below the user's floor or over the MAC cap add nothing and are never preferred to one that adds."""
    from nachos_tf.nas.final import finalists

    rng = np.random.default_rng(seed)
    macs = np.sort(rng.uniform(1e5, 1.2e6, 14))
    acc = np.sort(rng.uniform(0.76, 0.92, 14))                      # a front: dearer is more accurate
    recs = [_rec(f"m{i:02d}", float(a), float(m)) for i, (m, a) in enumerate(zip(macs, acc))]
    floor, cap, k = 0.80, 1.0e6, 3
    chosen, _ = finalists(recs, k, min_accuracy=floor, max_macs=cap, rule="hypervolume")
    inside = [r for r in recs if r.metrics.accuracy >= floor and r.metrics.expected_macs <= cap]
    pt = lambda r: (r.metrics.expected_macs, r.metrics.accuracy)      # noqa: E731
    picks = []
    for _ in range(min(k, len(inside))):
        base = _box_area([pt(r) for r in picks], 1 - floor, cap)
        gains = {r.id: _box_area([pt(q) for q in picks] + [pt(r)], 1 - floor, cap) - base
                 for r in inside if r not in picks}
        best = max(gains.values())
        picks.append(next(r for r in inside if r.id in gains and gains[r.id] >= best - 1e-12))
    assert {r.id for r in picks} <= {r.id for r in chosen}
    assert len(chosen) == k and [r.metrics.expected_macs for r in chosen] == sorted(r.metrics.expected_macs
                                                                                   for r in chosen)



class RescoringFake(FakeEvaluator):
    """The fake evaluator with a `rescore` that re-orders the candidates (as a less noisy judgement would)."""

    name = "fake-rescoring"

    def rescore(self, records):
        import dataclasses

        self.rescored = [r.id for r in records]
        out = []
        for r in records:
            acc = r.metrics.accuracy - 0.3 * unit_hash(Genome.from_dict(r.genome), "rescore")
            m = dataclasses.replace(r.metrics, accuracy=acc, error=1.0 - acc)
            g = self.context.constraints.violations(acc, r.metrics.expected_macs)
            out.append(dataclasses.replace(r, metrics=m, constraints=g, feasible=all(v <= 0 for v in g.values()
                                                                                     if v is not None),
                                           extra=dict(r.extra, rescored={"n_val": 1})))
        return out


S.register_evaluator(RescoringFake)


def test_final_stage_chooses_finalists_on_rescored_figures(tmp_path):
    """Budget.rescore leading candidates are judged again, and the finalists are chosen on those figures (a
    second path: `leading_layers` -> the evaluator's rescore -> `finalists`); rescore=0 keeps the search's."""
    from nachos_tf.nas.final import finalists, leading_layers

    for n in (0, 8):
        ev = RescoringFake()
        lines = []
        res = S.search(SearchSpace.mcu((8, 8, 1), 10), synthetic(), S.Constraints(min_accuracy=0.3, max_macs=8.0e4),
                       budget=FAKE_BUDGET.with_(rescore=n), seed=3, out_dir=tmp_path / f"r{n}", evaluator=ev,
                       progress=lines.append)
        searched = [r for r in res.archive]
        if n:
            lead = leading_layers(searched, n)
            assert ev.rescored == [r.id for r in lead]
            pool = ev.rescore(lead)
            assert any("re-scored the 8 leading candidates" in line for line in lines)
        else:
            assert not hasattr(ev, "rescored")
            pool = searched
        chosen, _ = finalists(pool, FAKE_BUDGET.max_final, 0.3, 8.0e4)
        assert [f.id for f in res.final_records][:len(chosen)] == [r.id for r in chosen]


class ScreeningFake(RescoringFake):
    """RescoringFake with a `screen` that re-orders the candidates again, by another hash (as a brief fine-tune
    would), and logs the ids it screened."""

    name = "fake-screening"

    def screen(self, records):
        import dataclasses

        self.screened = getattr(self, "screened", []) + [r.id for r in records]
        out = []
        for r in records:
            acc = min(1.0, r.metrics.accuracy + 0.4 * unit_hash(Genome.from_dict(r.genome), "screen") - 0.2)
            m = dataclasses.replace(r.metrics, accuracy=acc, error=1.0 - acc)
            g = self.context.constraints.violations(acc, r.metrics.expected_macs)
            seen = {"before_accuracy": r.metrics.accuracy, "before_expected_macs": r.metrics.expected_macs}
            out.append(dataclasses.replace(r, metrics=m, constraints=g, feasible=all(v <= 0 for v in g.values()
                                                                                     if v is not None),
                                           extra=dict(r.extra, screened=seen)))
        return out


S.register_evaluator(ScreeningFake)


def test_final_stage_chooses_finalists_among_the_screened_on_their_figures(tmp_path):
    """Budget.screen: the leading candidates after re-scoring (a second path: `leading_layers` of the rescored
    ones) are screened one at a time, and the finalists and reserves are chosen among them on the screened
    figures; each final record keeps the screened figures and, as its search figures, those before screening.
    screen=0 never calls the evaluator's screen."""
    from nachos_tf.nas.final import finalists, leading_layers

    cons = S.Constraints(min_accuracy=0.3, max_macs=8.0e4)
    for n in (0, 7):
        ev = ScreeningFake()
        lines = []
        res = S.search(SearchSpace.mcu((8, 8, 1), 10), synthetic(), cons, budget=FAKE_BUDGET.with_(rescore=12,
                       screen=n), seed=4, out_dir=tmp_path / f"s{n}", evaluator=ev, progress=lines.append)
        lead = ev.rescore(leading_layers(list(res.archive), 12))
        if not n:
            assert not hasattr(ev, "screened")
            continue
        top = leading_layers(lead, n)
        assert ev.screened == [r.id for r in top]
        pool = ev.screen(top)
        chosen, reserves = finalists(pool, FAKE_BUDGET.max_final, 0.3, 8.0e4)
        assert [f.id for f in res.final_records][:len(chosen)] == [r.id for r in chosen]
        assert {f.id for f in res.final_records} <= {r.id for r in pool}
        assert sum("val acc" in line and "->" in line for line in lines) == len(top) >= 3
        by_id = {r.id: r for r in pool}
        for f in res.final_records:
            assert f.extra["screened"]["accuracy"] == pytest.approx(by_id[f.id].metrics.accuracy)
            assert f.search_metrics["accuracy"] == pytest.approx(by_id[f.id].extra["screened"]["before_accuracy"])


class ConfirmingFake(RescoringFake):
    """RescoringFake that, like the supernet evaluator, returns a record judged again before as it is, and
    logs every record it judged (ids, across calls)."""

    name = "fake-confirming"

    def rescore(self, records):
        todo = [r for r in records if not r.extra.get("rescored")]
        fresh = RescoringFake.rescore(self, todo)
        self.log = getattr(self, "log", []) + [r.id for r in fresh]
        for r, old in zip(fresh, todo):
            r.extra["rescored"] = {"n_val": 20, "search_n_val": 10, "search_accuracy": old.metrics.accuracy,
                                   "search_expected_macs": old.metrics.expected_macs}
        by_id = {r.id: r for r in fresh}
        return [by_id.get(r.id, r) for r in records]


S.register_evaluator(ConfirmingFake)
CONFIRM_SPACE = SearchSpace.mcu((8, 8, 1), 10)
CONFIRM_CONSTRAINTS = S.Constraints(min_accuracy=0.3, max_macs=8.0e4)


def _confirm_search(out, **kw):
    kw.setdefault("evaluator", ConfirmingFake())
    return S.search(CONFIRM_SPACE, synthetic(), CONFIRM_CONSTRAINTS, budget=FAKE_BUDGET.with_(confirm=True,
                    generations=5), seed=4, out_dir=out, **kw)


def _dominated(p, others):
    """(acc, macs) p is dominated by one of others (hand-written, no pymoo)."""
    return any(a >= p[0] and m <= p[1] and (a > p[0] or m < p[1]) for a, m in others)


def test_confirm_judges_front_entrants_again_and_the_front_holds_only_those(tmp_path):
    """Budget.confirm: walking the archive by hand, every second line of a candidate is a re-judgement of a
    candidate that was non-dominated among the feasible ones known then; each candidate is judged again at
    most once; the search's final front holds re-judged figures only and the run reads back the newest line."""
    ev, lines = ConfirmingFake(), []
    res = _confirm_search(tmp_path / "c", evaluator=ev, progress=lines.append)
    assert ev.log and len(ev.log) == len(set(ev.log))
    known, again = {}, []
    for r in R.Archive(tmp_path / "c" / R.ARCHIVE).read()[0]:
        if r["stage"] != R.STAGE_SEARCH:
            continue
        fig = (r["metrics"]["accuracy"], r["metrics"]["expected_macs"])
        if r["id"] in known:
            first = known[r["id"]]
            assert first[2] and r["rescored"]["search_accuracy"] == first[0]
            assert not _dominated(first, [v[:2] for k, v in known.items() if v[2] and k != r["id"]])
            again.append(r["id"])
        known[r["id"]] = fig + (r["feasible"],)
    assert again == ev.log
    feasible = {k: v[:2] for k, v in known.items() if v[2]}
    front = {k for k, v in feasible.items() if not _dominated(v, [w for j, w in feasible.items() if j != k])}
    assert front and front <= set(again)
    by_id = {r.id: r for r in res.archive}
    assert len(by_id) == len(res.archive) == len(known)                 # one record per candidate read back
    assert all((by_id[k].metrics.accuracy, by_id[k].metrics.expected_macs) == known[k][:2] for k in known)
    assert sum("on the front at val acc" in line for line in lines) == len(again)
    # the final stage's Budget.rescore does not judge a confirmed candidate twice
    assert not set(ev.log[len(again):]) & set(again)


def test_confirm_feeds_the_algorithm_the_new_figures(tmp_path):
    """EENNProblem's objectives for a batch are the re-judged figures of the candidates that entered the front
    (a second path: the evaluator's own figures, re-judged by hand with RescoringFake's formula)."""
    ev = ready(ConfirmingFake(), CONFIRM_SPACE, synthetic(), CONFIRM_CONSTRAINTS, FAKE_BUDGET)

    class InProcess:                                  # the backend's job, without pinning this process's threads
        def run(self, genomes):
            return ((i, ev.evaluate(Genome.from_dict(g))) for i, g in enumerate(genomes))

    pool = S.CandidatePool(R.Archive(tmp_path / "a.jsonl"), [], InProcess(), confirm=ev.rescore)
    X = np.array([CONFIRM_SPACE.encode(CONFIRM_SPACE.sample(i)) for i in range(12)])
    out = {}
    S.EENNProblem(CONFIRM_SPACE, CONFIRM_CONSTRAINTS, pool)._evaluate(X, out)
    plain = [ev.evaluate(CONFIRM_SPACE.decode(x)) for x in X]
    assert pool.confirmations == len(ev.log) > 0
    for x, f, p in zip(X, out["F"], plain):
        g = CONFIRM_SPACE.decode(x)
        acc = p.metrics.accuracy - (0.3 * unit_hash(g, "rescore") if pool.by_key[g.key()].id in ev.log else 0.0)
        assert f == pytest.approx([1.0 - acc, p.metrics.expected_macs])


def test_confirm_resumes_without_judging_twice_and_is_off_without_rescore(tmp_path):
    """Killed right after a re-judgement: the resumed run gives the same archive, evaluates no genome and
    re-judges no candidate twice. An evaluator without `rescore` ignores confirm (same archive as without)."""
    ev = ConfirmingFake()
    _confirm_search(tmp_path / "full", evaluator=ev, progress=None)
    lines = (tmp_path / "full" / R.ARCHIVE).read_text().splitlines(keepends=True)
    ids = [json.loads(l)["id"] for l in lines]
    cut = next(i for i in range(len(ids)) if ids[i] in ids[:i] and i > len(ids) // 3) + 1
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(tmp_path / "full" / R.CONFIG, crashed / R.CONFIG)
    (crashed / R.ARCHIVE).write_text("".join(lines[:cut]) + lines[cut][:17])
    ev2 = ConfirmingFake()
    _confirm_search(crashed, evaluator=ev2, progress=None, resume=True)
    assert search_lines(crashed) == search_lines(tmp_path / "full")
    assert not set(ev2.log) & {ids[i] for i in range(cut) if ids[i] in ids[:i]}
    assert len(ev2.calls) == len(set(ev2.calls))
    plain = [S.search(CONFIRM_SPACE, synthetic(), CONFIRM_CONSTRAINTS, budget=FAKE_BUDGET.with_(confirm=c), seed=4,
                      out_dir=tmp_path / f"plain{c}", evaluator=FakeEvaluator(), progress=None) for c in (True, False)]
    assert search_lines(tmp_path / "plainTrue") == search_lines(tmp_path / "plainFalse")
    assert len(plain[0].archive) == len(plain[1].archive)

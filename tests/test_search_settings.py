"""Tests of the search settings (constraints, budgets, mutation), the pymoo problem and the archive."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from nachos_tf import nas as S
from nachos_tf import results as R
from nachos_tf.errors import ConstraintError, RunDirError
from nachos_tf.genome import ExitGene, Genome
from nachos_tf.nas.evaluators.common import candidate_seed
from nachos_tf.space import SearchSpace

from search_fakes import FAKE_BUDGET, FakeEvaluator, fake_metrics, ready, synthetic


# --------------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    (dict(min_accuracy=0.0, max_macs=1e6), "min_accuracy"),
    (dict(min_accuracy=1.2, max_macs=1e6), "min_accuracy"),
    (dict(min_accuracy=88, max_macs=1e6), "fraction"),
    (dict(min_accuracy=float("nan"), max_macs=1e6), "finite"),
    (dict(min_accuracy=0.9, max_macs=-5), "max_macs"),
    (dict(min_accuracy=0.9, max_macs=0), "max_macs"),
    (dict(min_accuracy=0.9, max_macs=float("inf")), "finite"),
    (dict(min_accuracy=0.9, max_macs="1M"), "number"),
    (dict(min_accuracy=0.9, max_macs=1e6, max_flash=-1), "max_flash"),
    (dict(min_accuracy=0.9, max_macs=1e6, max_ram=10.5), "max_ram"),
])
def test_constraints_reject_bad_values(kw, match):
    with pytest.raises(ConstraintError, match=match):
        S.Constraints(**kw)


def test_constraints_accept_and_round_trip():
    c = S.Constraints(min_accuracy=1, max_macs=1_500_000, max_flash=65536.0)
    assert c.min_accuracy == 1.0 and c.max_flash == 65536 and isinstance(c.max_flash, int)
    assert c.active == ["accuracy", "macs", "flash"]
    assert S.Constraints.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_constraint_values_sign_and_scale():
    c = S.Constraints(min_accuracy=0.8, max_macs=1e6, max_flash=1000, max_ram=2000)
    met = c.violations(0.9, 5e5, flash=900, ram=2000)
    assert met["accuracy"] < 0 and met["macs"] < 0 and met["flash"] < 0 and met["ram"] == 0
    bad = c.violations(0.72, 1.5e6, flash=1100, ram=3000)
    assert bad["accuracy"] == pytest.approx(0.1) and bad["macs"] == pytest.approx(0.5)
    assert bad["flash"] == pytest.approx(0.1) and bad["ram"] == pytest.approx(0.5)
    assert c.violations(0.8, 1e6, 1000, 2000)["accuracy"] == 0.0       # the bound itself is admissible
    with pytest.raises(ConstraintError, match="flash"):
        c.violations(0.9, 5e5)                                         # set but not measured
    assert S.Constraints(0.8, 1e6).violations(0.9, 5e5)["flash"] is None
    # accuracy and MACs alone (no size measured), bounds included
    assert c.meets_accuracy_and_macs(0.8, 1e6) and c.meets_accuracy_and_macs(0.95, 0.0)
    assert not c.meets_accuracy_and_macs(0.7999, 5e5) and not c.meets_accuracy_and_macs(0.9, 1e6 + 1)


def test_budget_presets_and_validation():
    q = S.Budget.preset("quick")
    assert S.Budget.resolve("quick", generations=5, population=4).generations == 5
    assert S.Budget.resolve(q, population=4).population == 4
    assert S.Budget.from_dict(json.loads(json.dumps(q.to_dict()))) == q
    assert {"standard", "thorough"} <= set(S.BUDGETS)
    with pytest.raises(ConstraintError, match="unknown budget"):
        S.Budget.preset("fast")
    with pytest.raises(ConstraintError, match="population"):
        q.with_(population=1)
    with pytest.raises(ConstraintError, match="proxy_train"):
        q.with_(proxy_train=0)
    with pytest.raises(ConstraintError, match="at least one epoch"):
        q.with_(epochs=0, head_epochs=0)
    with pytest.raises(ConstraintError, match="finalists"):
        q.with_(finalists="best")
    with pytest.raises(ConstraintError, match="rescore"):
        q.with_(rescore=-1)
    with pytest.raises(ConstraintError, match="confirm"):
        q.with_(confirm="yes")
    with pytest.raises(ConstraintError, match="screen"):
        q.with_(screen=-2)
    with pytest.raises(ConstraintError, match="screen_train"):
        q.with_(screen_train=5)
    assert q.with_(screen=12).screen_train == 6000 and q.with_(screen_train=None).screen_train is None
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConstraintError, match="mutation_rate"):
            q.with_(mutation_rate=bad)
    with pytest.raises(ConstraintError, match="mutation"):
        q.with_(mutation="flip")
    with pytest.raises(ConstraintError, match="final_schedule"):
        q.with_(final_schedule="step")
    assert S.Budget().final_schedule == "constant" and q.final_schedule == "cosine"     # the supernet presets' one
    assert all(b.final_schedule == "cosine" for b in S.BUDGETS.values())
    assert all(b.final_schedule == "constant" for b in S.PROXY_BUDGETS.values())
    from nachos_tf.nas.settings import FINAL_SCHEDULES
    from nachos_tf.train import LR_SCHEDULES

    assert FINAL_SCHEDULES == LR_SCHEDULES            # every budget schedule is one train_eenn knows
    assert q.with_(final_schedule="constant").evaluation_settings() != q.evaluation_settings()  # final figures differ
    assert q.with_(mutation="reset", mutation_rate=0.25).evaluation_settings() == q.evaluation_settings()
    old = {k: v for k, v in q.to_dict().items() if k not in ("finalists", "rescore", "confirm", "screen",
                                                               "screen_train")}                # before them
    assert S.Budget.from_dict(old).finalists == "spread" and S.Budget.from_dict(old).rescore == 0
    assert S.Budget.from_dict(old).screen == 0
    assert S.Budget.from_dict(old).confirm is False
    # a config.json from before the field: the constant schedule it ran with
    assert S.Budget.from_dict({k: v for k, v in q.to_dict().items() if k != "final_schedule"}) == \
        q.with_(final_schedule="constant")


def test_mutation_operators_and_rate_reach_nsga2_children():
    """Budget.mutation / mutation_rate reach pymoo's mating. With a converged population (all parents equal,
    so SBX changes nothing) the children differ from the parent in: about one gene at the default rate
    (1 / n_var; children equal to a parent are eliminated and drawn again); with "reset" at rate 0.3 in a
    large share of the 48 genes (a redrawn gene keeps its value with chance 1 / its number of values, and the
    genome repair undoes changes to the genes of disabled exits); with "pm" at the same rate in far fewer, as
    its small steps round back to the same value on genes of two to four values. Counted after the repair."""
    from pymoo.core.population import Population
    from pymoo.core.problem import Problem

    from nachos_tf.nas.problem import integer_vars, make_algorithm

    space = SearchSpace.mcu()
    parent = space.encode(space.sample(3))
    problem = Problem(n_var=space.n_var, n_obj=2, xl=space.xl, xu=space.xu, vtype=int, vars=integer_vars(space))

    def changed_genes(mutation, rate):
        algo = make_algorithm(space, 8, "nsga2", rate, mutation)
        pop = Population.new(X=np.tile(parent, (40, 1)).astype(float))
        pop.set("F", np.zeros((40, 2)), "CV", np.zeros((40, 1)))
        pop.set("rank", np.zeros(40, dtype=int), "crowding", np.ones(40))
        kids = algo.mating.do(problem, pop, 400, algorithm=algo, random_state=np.random.default_rng(0))
        x = kids.get("X")
        assert x.dtype.kind == "i" and all(np.array_equal(space.encode(space.decode(k)), k) for k in x)
        return float(np.mean(np.sum(x != parent, axis=1)))

    for mutation in ("pm", "reset"):
        assert 1.0 <= changed_genes(mutation, None) <= 2.5
    pm, reset = changed_genes("pm", 0.3), changed_genes("reset", 0.3)
    assert 6 <= reset <= 0.3 * space.n_var and reset > 2 * pm, (pm, reset)
    with pytest.raises(ConstraintError, match="mutation"):
        make_algorithm(space, 8, "nsga2", None, "flip")


def test_candidate_seed_is_stable_and_genome_specific():
    space = SearchSpace.mcu()
    a, b = space.sample(1), space.sample(2)
    assert candidate_seed(0, a) == candidate_seed(0, Genome.from_dict(json.loads(json.dumps(a.to_dict()))))
    assert len({candidate_seed(0, a), candidate_seed(0, b), candidate_seed(1, a)}) == 3
    # pinned values: a stable hash (not Python's salted hash()), unchanged across processes and releases,
    # or archives written by another process / version would not resume
    g = Genome.make({"a": 1, "b": "x"}, [ExitGene(True)])
    assert (candidate_seed(0, g), candidate_seed(7, g)) == (1847069301, 1954545381)


def test_candidate_over_budget_at_its_first_exit_is_not_trained():
    """Expected MACs >= the first exit's staged cost whatever the thresholds: no training needed."""
    space = SearchSpace.mcu((8, 8, 1), 10)
    c = S.Constraints(min_accuracy=0.5, max_macs=100)
    rec = ready(S.ProxyEvaluator(), space, synthetic(), c, FAKE_BUDGET).evaluate(space.sample(0))
    rec.id = "c0000"
    assert rec.pruned and rec.train_seconds == 0.0 and not rec.feasible
    assert rec["metrics"]["expected_macs"] == rec["exit_macs"][0] > 100
    assert rec["constraints"]["macs"] == pytest.approx((rec["exit_macs"][0] - 100) / 100)
    msg = S.explain_no_admissible([rec], c)
    assert "raise max MACs" in msg and "cheapest first exit" in msg


# --------------------------------------------------------------------------------------------------
# the pymoo problem
# --------------------------------------------------------------------------------------------------

class _FakePool:
    def __init__(self, space, constraints):
        self.space, self.constraints, self.asked = space, constraints, []

    def evaluate(self, genomes):
        self.asked += genomes
        ev = ready(FakeEvaluator(), self.space, synthetic(), self.constraints, FAKE_BUDGET)
        return [ev.evaluate(g) for g in genomes]


def test_repair_gives_canonical_encodings_that_round_trip():
    space = SearchSpace.mcu()
    rng = np.random.default_rng(0)
    X = rng.uniform(space.xl - 0.49, space.xu + 0.49, size=(50, space.n_var))   # what SBX/PM may produce
    X[:5, -16:] = 0                                                              # no exit enabled: repaired
    fixed = S.GenomeRepair(space)._do(None, X)
    assert fixed.dtype.kind == "i" and fixed.shape == X.shape
    for x in fixed:
        g = space.decode(x)
        space.validate(g)                                   # canonical and valid
        assert np.array_equal(space.encode(g), x)           # repair is idempotent
        assert len(g.exit_positions) >= 1


def test_problem_fills_objectives_and_constraints():
    space = SearchSpace.mcu((8, 8, 1), 10)
    c = S.Constraints(0.6, 8e4, max_flash=None)
    pool = _FakePool(space, c)
    problem = S.EENNProblem(space, c, pool)
    assert problem.n_var == space.n_var and problem.n_obj == 2 and problem.n_ieq_constr == 2
    X = np.array([space.encode(space.sample(s)) for s in range(6)])
    out = problem.evaluate(X, return_as_dictionary=True)
    for x, f, g in zip(X, out["F"], out["G"]):
        acc, macs = fake_metrics(space.decode(x), space)
        assert f[0] == pytest.approx(1 - acc) and f[1] == pytest.approx(macs)
        assert g[0] == pytest.approx((0.6 - acc) / 0.6) and g[1] == pytest.approx((macs - 8e4) / 8e4)
    assert [g.key() for g in pool.asked] == [space.decode(x).key() for x in X]


# --------------------------------------------------------------------------------------------------
# archive
# --------------------------------------------------------------------------------------------------

def test_archive_appends_with_fsync_and_tolerates_truncated_tail(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    a = R.Archive(tmp_path / "archive.jsonl")
    for i in range(3):
        a.append({"id": f"c{i}", "x": [i, 0.5]})
        assert len(synced) == i + 1                                   # durable before append returns
        assert len(a.read()[0]) == i + 1                              # visible to a reader at once
    with open(a.path, "a") as f:
        f.write('{"id": "c3", "x": [3, 0.')                           # killed mid-write
    recs, end = a.read()
    assert [r["id"] for r in recs] == ["c0", "c1", "c2"]
    assert a.open() == recs and a.path.stat().st_size == end          # partial line cut off
    a.append({"id": "c3"})
    assert [r["id"] for r in a.read()[0]] == ["c0", "c1", "c2", "c3"]


def test_archive_rejects_corruption_in_the_middle(tmp_path):
    p = tmp_path / "archive.jsonl"
    p.write_text('{"id": "c0"}\nnot json\n{"id": "c2"}\n')
    with pytest.raises(RunDirError, match="line 2"):
        R.Archive(p).read()


def test_archive_complete_last_line_without_newline_is_kept(tmp_path):
    p = tmp_path / "archive.jsonl"
    p.write_text('{"id": "c0"}\n{"id": "c1"}')
    a = R.Archive(p)
    assert [r["id"] for r in a.open()] == ["c0", "c1"]
    a.append({"id": "c2"})
    assert [r["id"] for r in a.read()[0]] == ["c0", "c1", "c2"]

"""Tests of the search (nachos_tf.nas) and the run directory (nachos_tf.results).

Fast tests use a deterministic fake evaluator class (module-level, so Dask and process workers can import it);
the end-to-end tests train real candidates of a tiny space on a real Fashion-MNIST subset.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nachos_tf import nas as S
from nachos_tf import results as R
from nachos_tf.data import Dataset
from nachos_tf.errors import ConstraintError, NoAdmissibleSolutionError, RunDirError
from nachos_tf.genome import ExitGene, Gene, Genome
from nachos_tf.nas.evaluators.common import candidate_seed
from nachos_tf.records import CandidateRecord, FinalRecord
from nachos_tf.report import report as draw_report
from nachos_tf.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# helpers: a fake evaluator / finalizer (deterministic in the genome), tiny datasets and spaces
# --------------------------------------------------------------------------------------------------

def _u(genome: Genome, salt: str) -> float:
    """A deterministic number in [0, 1) from the genome."""
    return int(hashlib.sha256((salt + genome.key()).encode()).hexdigest()[:8], 16) / 16 ** 8


def fake_metrics(genome: Genome, space: SearchSpace):
    x = space.encode(genome).astype(float)
    frac = x / np.maximum(space.xu, 1)
    macs = 2.0e4 + 1.0e5 * float(frac.mean()) + 1.0e4 * len(genome.exit_positions)
    acc = min(0.99, 0.45 + 0.35 * float(frac.mean()) + 0.15 * _u(genome, "acc"))
    return acc, macs


@S.register_evaluator
class FakeEvaluator:
    """A deterministic evaluator without training (figures derived from the genome). It tags the process a
    candidate ran in, counts the genomes it was asked for (in this process) and its setups (in the run
    folder: once per run, not again on resume)."""

    name = "fake"

    def __init__(self, drop_odd: bool = False, interrupt_at: int = 0, sleep: float = 0.0, tasks_per_process=None,
                 die_once: bool = False):
        self.drop_odd, self.interrupt_at, self.sleep, self.die_once = drop_odd, interrupt_at, sleep, die_once
        self.calls, self.context = [], None
        if tasks_per_process is not None:           # ask for processes replaced after that many candidates
            self.tasks_per_process = tasks_per_process

    def to_dict(self):
        return {"name": self.name, "drop_odd": self.drop_odd}

    def setup(self, context):
        self.context = context
        marker = context.run_dir / "fake_setup.json"
        if not marker.exists():                     # one-time work, kept in the run folder
            marker.write_text(json.dumps({"setups": 1, "pid": os.getpid()}))

    def evaluate(self, genome):
        self.calls.append(genome.key())
        if self.interrupt_at and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        if self.sleep:
            time.sleep(self.sleep)
        c = self.context
        marker = c.run_dir / "fake_died.json"
        if self.die_once and len(self.calls) == 2 and not marker.exists():   # as the OOM killer would
            marker.write_text(json.dumps({"pid": os.getpid()}))
            os.kill(os.getpid(), signal.SIGKILL)
        acc, macs = fake_metrics(genome, c.space)
        n = len(genome.exit_positions) + 1
        return CandidateRecord.measured(
            genome.to_dict(), seed=candidate_seed(c.seed, genome), accuracy=acc, exit_rates=[1.0 / n] * n,
            expected_macs=macs, exit_macs=[macs * 2 * (k + 1) / (n + 1) for k in range(n)],
            constraints=c.constraints.violations(acc, macs), rule="confidence", thresholds=[0.5] * (n - 1),
            params=1000, pid=os.getpid(), n_data=int(len(c.dataset().y_train)))

    def finalize(self, rec, out_dir):
        """Figures shifted a little, an untrained model saved; odd ids dropped when drop_odd."""
        from nachos_tf.builder import build_eenn

        c = self.context
        genome = Genome.from_dict(rec.genome)
        acc = rec.metrics.accuracy - 0.01 * _u(genome, "final")
        macs = rec.metrics.expected_macs
        val = {"accuracy": acc, "exit_rates": rec.metrics.exit_rates, "expected_macs": macs}
        test = dict(val, accuracy=acc - 0.005)
        g = c.target.violations(acc, macs)
        failed = [k for k, v in g.items() if v is not None and v > 0]
        if self.drop_odd and int(rec.id[1:]) % 2:
            failed = failed or ["accuracy"]
        fin = FinalRecord(id=rec.id, genome=rec.genome, seed=rec.seed, rule=rec.rule, thresholds=rec.thresholds,
                          exit_macs=rec.exit_macs, val=val, test=test, constraints=g,
                          metrics=dict(val, error=1 - acc), feasible=not failed, time="x",
                          dropped="after re-training, validation misses " + ", ".join(failed) if failed else None)
        if not failed:
            rel = f"{R.MODELS}/{rec.id}.keras"
            build_eenn(c.space, genome).save(out_dir / rel)
            fin.model = rel
        return fin


class CountingProxy(S.ProxyEvaluator):
    """The real proxy evaluator, recording every genome it was asked to evaluate (in this process)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def evaluate(self, genome):
        self.calls.append(genome.key())
        return super().evaluate(genome)


def ready(evaluator, space, data, constraints, budget, seed=0, run_dir=None, target=None):
    """An evaluator after `setup` with a context like the search gives it (for unit tests)."""
    from nachos_tf.losses import LossConfig

    ctx = S.EvalContext(space=space, constraints=constraints, target=target or constraints, budget=budget, seed=seed,
                        loss=LossConfig.nachos(mac_budget=constraints.max_macs), threads=1,
                        run_dir=Path(run_dir or tempfile.mkdtemp(prefix="nachos-test-")), data=data)
    evaluator.setup(ctx)
    return evaluator


def synthetic(n_train=40, n_val=20, n_test=20, shape=(8, 8, 1), classes=10, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)

    def split(n):
        return (rng.integers(0, 256, (n,) + shape).astype(np.float32),
                (np.arange(n) % classes).astype(np.int32))

    (xt, yt), (xv, yv), (xs, ys) = split(n_train), split(n_val), split(n_test)
    return Dataset(xt, yt, xv, yv, xs, ys, classes, shape, "synthetic")


def tiny_space(input_shape=(28, 28, 1), classes=10) -> SearchSpace:
    """An MCU-kind space of tiny 5-block networks: cheap to trace and train (for real end-to-end tests)."""
    genes = [Gene("resolution", (16, 12)), Gene("stem_width", (4, 8))]
    for s in range(1, 6):
        genes += [Gene(f"s{s}_depth", (1,)), Gene(f"s{s}_kernel", (3, 5)), Gene(f"s{s}_expand", (1, 2)),
                  Gene(f"s{s}_width", (4, 8)), Gene(f"s{s}_se", (False,)), Gene(f"s{s}_act", ("relu",))]
    from nachos_tf.backbones import McuFamily

    return SearchSpace(McuFamily(genes, 4, settings={"stem_stride": 2, "strides": [1, 2, 1, 2, 1]}),
                       input_shape, classes)


FAKE_BUDGET = S.Budget("test", population=6, generations=3, proxy_train=20, proxy_val=10, epochs=0, head_epochs=1,
                       final_train=None, final_epochs=0, final_head_epochs=1, max_final=3)
FAKE_CONSTRAINTS = S.Constraints(min_accuracy=0.6, max_macs=8.0e4)


def fake_search(out_dir, data=None, **kw):
    kw.setdefault("evaluator", FakeEvaluator())
    kw.setdefault("progress", None)
    return S.search(SearchSpace.mcu((8, 8, 1), 10), synthetic() if data is None else data, FAKE_CONSTRAINTS,
                    budget=FAKE_BUDGET, seed=3, out_dir=out_dir, **kw)


def search_lines(path: Path):
    """Search-stage archive records by id, without wall-clock fields and the worker tag."""
    recs = R.Archive(path / R.ARCHIVE).read()[0]
    drop = ("time", "seconds", "train_seconds", "pid")
    return {r["id"]: {k: v for k, v in r.items() if k not in drop} for r in recs if r["stage"] == R.STAGE_SEARCH}


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
    assert q.with_(mutation="reset", mutation_rate=0.25).evaluation_settings() == q.evaluation_settings()
    old = {k: v for k, v in q.to_dict().items() if k not in ("finalists", "rescore", "confirm", "screen",
                                                               "screen_train")}                # before them
    assert S.Budget.from_dict(old).finalists == "spread" and S.Budget.from_dict(old).rescore == 0
    assert S.Budget.from_dict(old).screen == 0
    assert S.Budget.from_dict(old).confirm is False


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


# --------------------------------------------------------------------------------------------------
# whole searches with the fake evaluator: run folder, resume, parallel backends, failures
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake") / "run"
    ev = FakeEvaluator()
    lines = []
    res = fake_search(out, evaluator=ev, progress=lines.append)
    return res, ev, out, lines


def test_fake_run_folder_contents(fake_run):
    res, ev, out, lines = fake_run
    for f in (R.CONFIG, R.ARCHIVE, R.PARETO, R.REPORT, R.PARETO_PNG, R.EXITS_PNG):
        assert (out / f).is_file(), f
    cfg = json.loads((out / R.CONFIG).read_text())
    assert cfg["seed"] == 3 and cfg["budget"]["population"] == 6 and cfg["constraints"]["max_macs"] == 8e4
    assert {"tensorflow", "keras", "pymoo", "numpy"} <= set(cfg["versions"])
    keys = [Genome.from_dict(r["genome"]).key() for r in res.archive]
    assert len(keys) == len(set(keys)) == len(ev.calls)                 # every candidate evaluated once
    assert sorted(ev.calls) == sorted(keys)
    assert len(res.archive) <= FAKE_BUDGET.population * FAKE_BUDGET.generations
    assert [l.split(":")[0] for l in lines if l.startswith("gen ")] == ["gen 1/3", "gen 2/3", "gen 3/3"]
    assert all("hypervolume" in l and "ETA" in l for l in lines if l.startswith("gen "))


def test_pareto_json_matches_the_issue_contract(fake_run):
    res, _, out, _ = fake_run
    doc = json.loads((out / R.PARETO).read_text())
    assert set(doc) == {"constraints", "solutions"}
    assert doc["constraints"] == FAKE_CONSTRAINTS.to_dict()
    assert doc["solutions"], "the fake problem has admissible candidates"
    for s in doc["solutions"]:
        assert set(s) == {"id", "genome", "model", "rule", "thresholds", "exit_macs", "val", "test", "int8"}
        for split in ("val", "test"):
            assert set(s[split]) == {"accuracy", "exit_rates", "expected_macs"}
        assert (out / s["model"]).is_file() and not Path(s["model"]).is_absolute()
    sol = res.admissible[0]
    assert sol.model.name == "nachos_eenn" and sol.model is sol.model          # loaded lazily, once


def test_admissible_set_meets_constraints_and_is_non_dominated(fake_run):
    res, _, _, _ = fake_run
    c = FAKE_CONSTRAINTS
    sols = res.admissible
    assert sols
    for s in sols:
        assert s.val["accuracy"] >= c.min_accuracy and s.val["expected_macs"] <= c.max_macs
    for a in sols:
        for b in sols:
            dominates = (b.val["accuracy"] >= a.val["accuracy"] and b.val["expected_macs"] <= a.val["expected_macs"]
                         and (b.val["accuracy"] > a.val["accuracy"] or b.val["expected_macs"] < a.val["expected_macs"]))
            assert not dominates, (a.id, b.id)
    # the re-trained members come from the search-time admissible front, or (when it has fewer than
    # max_final members) from the next non-dominated layers, ranked here by pymoo directly
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    feas = [r for r in res.archive if r["feasible"]]
    fronts = NonDominatedSorting().do(np.array([[r["metrics"]["error"], r["metrics"]["expected_macs"]]
                                                for r in feas]))
    rank = {feas[i]["id"]: k for k, layer in enumerate(fronts) for i in layer}
    for fin in res.final_records:
        better = sum(1 for v in rank.values() if v < rank[fin.id])
        assert better < FAKE_BUDGET.max_final, (fin.id, rank[fin.id], better)
    for r in R.admissible_front(res.archive):
        assert r["feasible"] and all(v <= 0 for v in r["constraints"].values() if v is not None)


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


def test_hypervolume_equals_pymoo_hv_computed_here(fake_run):
    from pymoo.indicators.hv import HV
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    res, _, _, _ = fake_run
    c = FAKE_CONSTRAINTS
    feas = [r for r in res.archive if r["metrics"]["accuracy"] >= c.min_accuracy
            and r["metrics"]["expected_macs"] <= c.max_macs]
    F = np.array([[1 - r["metrics"]["accuracy"], r["metrics"]["expected_macs"]] for r in feas])
    F = F[NonDominatedSorting().do(F, only_non_dominated_front=True)]
    F = F / np.array([1 - c.min_accuracy, c.max_macs])
    expected = HV(ref_point=np.array([1.0, 1.0]))(F)
    assert res.hypervolume == pytest.approx(expected, rel=1e-12) and res.hypervolume > 0
    assert R.load_run(res.out_dir).hypervolume == pytest.approx(expected, rel=1e-12)


def test_load_run_and_report_redraw(fake_run, tmp_path):
    res, _, out, _ = fake_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for f in (R.REPORT, R.PARETO_PNG, R.EXITS_PNG):
        (copy / f).unlink()
    assert draw_report(copy) == copy / R.REPORT
    assert (copy / R.PARETO_PNG).stat().st_size > 1000 and (copy / R.EXITS_PNG).stat().st_size > 1000
    text = (copy / R.REPORT).read_text()
    assert all(s.id in text for s in res.admissible)
    again = R.load_run(copy)
    assert [s.to_dict() for s in again.admissible] == [s.to_dict() for s in res.admissible]
    assert len(again.archive) == len(res.archive)
    assert res.table().count("\n") == len(res.admissible) + 1


def test_run_folder_errors(tmp_path, fake_run):
    with pytest.raises(RunDirError, match="does not exist"):
        R.load_run(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="not a folder"):
        draw_report(tmp_path / "file")
    bad = tmp_path / "bad"
    shutil.copytree(fake_run[2], bad)
    (bad / R.PARETO).write_text("{ not json")
    with pytest.raises(RunDirError, match="pareto.json is not valid JSON"):
        R.load_run(bad)
    (bad / R.PARETO).write_text('{"constraints": {}, "solutions": [{"id": "c1"}]}')
    with pytest.raises(RunDirError, match="lacks"):
        R.load_run(bad)
    with pytest.raises(RunDirError, match="not empty"):               # never overwrite a run
        fake_search(fake_run[2])


def test_resume_replays_without_evaluating_twice(fake_run, tmp_path):
    res, ev, out, _ = fake_run
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    lines = (crashed / R.ARCHIVE).read_text().splitlines(keepends=True)
    kept = 5
    (crashed / R.ARCHIVE).write_text("".join(lines[:kept]) + lines[kept][:17])     # kill -9 while writing
    for f in (R.PARETO, R.REPORT):
        (crashed / f).unlink()
    shutil.rmtree(crashed / R.MODELS)
    ev2 = FakeEvaluator()
    msgs = []
    fake_search(crashed, evaluator=ev2, resume=True, progress=msgs.append)
    done = {Genome.from_dict(json.loads(l)["genome"]).key() for l in lines[:kept]}
    assert not done & set(ev2.calls)                                   # nothing from the archive again
    assert len(ev2.calls) == len(set(ev2.calls)) == len(ev.calls) - kept
    assert json.loads((crashed / R.PARETO).read_text()) == json.loads((out / R.PARETO).read_text())
    assert search_lines(crashed) == search_lines(out)
    assert any("resuming" in m for m in msgs)
    # resuming a finished run trains nothing and gives the same set
    ev3 = FakeEvaluator()
    fake_search(crashed, evaluator=ev3, resume=True)
    assert ev3.calls == []
    assert json.loads((crashed / R.PARETO).read_text()) == json.loads((out / R.PARETO).read_text())


def test_refinalize_runs_only_the_final_stage_again_into_a_new_folder(fake_run, tmp_path):
    """More finalists from the same search: the search folder is only read, the candidates are copied (nothing
    evaluated), the new budget is in config.json, the finals are those `finalists` picks for it; a second call
    continues from the new folder's archive; wrong changes and folders are refused before anything is written."""
    from nachos_tf.nas.final import finalists

    res, ev, out, _ = fake_run
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    new, lines = tmp_path / "again", []
    res2 = S.refinalize(out, new, progress=lines.append, data=synthetic(), max_final=5)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert search_lines(new) == search_lines(out)
    cfg = json.loads((new / R.CONFIG).read_text())
    assert cfg["budget"]["max_final"] == 5 and cfg["finalized_from"] == str(out.resolve())
    assert {k: v for k, v in cfg["budget"].items() if k != "max_final"} == \
        {k: v for k, v in json.loads((out / R.CONFIG).read_text())["budget"].items() if k != "max_final"}
    chosen, reserves = finalists(res.archive, 5, FAKE_CONSTRAINTS.min_accuracy, FAKE_CONSTRAINTS.max_macs)
    done = [f.id for f in res2.final_records]
    assert done[:len(chosen)] == [r.id for r in chosen]
    assert len(chosen) == min(5, sum(r.feasible for r in res.archive)) > len(res.final_records) == 3
    assert (new / R.PARETO).is_file() and (new / R.REPORT).is_file()
    assert any("finalizing again" in line for line in lines)
    msgs = []
    S.refinalize(out, new, progress=msgs.append, data=synthetic(), max_final=5)     # continues: no re-training
    assert sum("re-trained earlier (archive)" in m for m in msgs) == len(chosen)
    with pytest.raises(ConstraintError, match="final stage only"):
        S.refinalize(out, tmp_path / "x", data=synthetic(), population=9)
    with pytest.raises(ConstraintError, match="max_final"):
        S.refinalize(out, tmp_path / "x", data=synthetic(), max_final=0)
    with pytest.raises(ConstraintError, match="finalists"):
        S.refinalize(out, tmp_path / "x", data=synthetic(), finalists="best")
    with pytest.raises(RunDirError, match="the search's own"):
        S.refinalize(out, out, data=synthetic())
    with pytest.raises(RunDirError, match="holds another run"):
        S.refinalize(out, new, data=synthetic(), max_final=4)
    with pytest.raises(RunDirError, match="in-memory"):
        S.refinalize(out, tmp_path / "x")
    with pytest.raises(RunDirError, match="not a search run folder"):
        S.refinalize(tmp_path, tmp_path / "x", data=synthetic())
    assert not (tmp_path / "x").exists()


class RescoringFake(FakeEvaluator):
    """The fake evaluator with a `rescore` that re-orders the candidates (as a less noisy judgement would)."""

    name = "fake-rescoring"

    def rescore(self, records):
        import dataclasses

        self.rescored = [r.id for r in records]
        out = []
        for r in records:
            acc = r.metrics.accuracy - 0.3 * _u(Genome.from_dict(r.genome), "rescore")
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
            acc = min(1.0, r.metrics.accuracy + 0.4 * _u(Genome.from_dict(r.genome), "screen") - 0.2)
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
        acc = p.metrics.accuracy - (0.3 * _u(g, "rescore") if pool.by_key[g.key()].id in ev.log else 0.0)
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


def test_reset_mutation_search_records_its_operator_and_resumes_identically(tmp_path):
    """A search with Budget.mutation "reset" runs through pymoo's minimize, says so in config.json, explores
    other genomes than the default operator from the same seed, and a run killed part-way resumes to the same
    archive without evaluating anything twice."""
    def run(out, mutation="reset", **kw):
        return S.search(SearchSpace.mcu((8, 8, 1), 10), synthetic(), FAKE_CONSTRAINTS,
                        budget=FAKE_BUDGET.with_(mutation=mutation, mutation_rate=0.2, generations=4), seed=3,
                        out_dir=out, progress=None, **kw)

    ev = FakeEvaluator()
    run(tmp_path / "full", evaluator=ev)
    algo = json.loads((tmp_path / "full" / R.CONFIG).read_text())["algorithm"]
    assert algo["mutation"] == "ChoiceRandomMutation(prob=1.0, prob_var=0.2)"
    run(tmp_path / "pm", mutation="pm", evaluator=FakeEvaluator())
    assert set(search_lines(tmp_path / "full")) == set(search_lines(tmp_path / "pm"))      # ids c0000...
    genomes = lambda d: [v["genome"] for v in search_lines(d).values()]                     # noqa: E731
    assert genomes(tmp_path / "full")[:6] == genomes(tmp_path / "pm")[:6]        # the same initial sample
    assert genomes(tmp_path / "full") != genomes(tmp_path / "pm")                # then other children
    lines = (tmp_path / "full" / R.ARCHIVE).read_text().splitlines(keepends=True)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(tmp_path / "full" / R.CONFIG, crashed / R.CONFIG)
    (crashed / R.ARCHIVE).write_text("".join(lines[:9]))
    ev2 = FakeEvaluator()
    run(crashed, evaluator=ev2, resume=True)
    assert search_lines(crashed) == search_lines(tmp_path / "full")
    assert len(ev2.calls) == len(set(ev2.calls)) == len(ev.calls) - 9


def test_resume_refuses_different_settings(fake_run, tmp_path):
    crashed = tmp_path / "other"
    shutil.copytree(fake_run[2], crashed)
    with pytest.raises(RunDirError, match="differ in constraints"):
        S.search(SearchSpace.mcu((8, 8, 1), 10), synthetic(), S.Constraints(0.7, 8e4), budget=FAKE_BUDGET,
                 seed=3, out_dir=crashed, resume=True, evaluator=FakeEvaluator(), progress=None)
    with pytest.raises(RunDirError, match="does not exist"):
        fake_search(tmp_path / "missing", resume=True)


def test_keyboard_interrupt_keeps_archive_and_says_how_to_resume(tmp_path):
    msgs = []
    with pytest.raises(KeyboardInterrupt):
        fake_search(tmp_path / "run", evaluator=FakeEvaluator(interrupt_at=4), progress=msgs.append)
    assert len(R.Archive(tmp_path / "run" / R.ARCHIVE).read()[0]) == 3
    assert any("--resume" in m and str(tmp_path / "run") in m for m in msgs)
    assert draw_report(tmp_path / "run").exists()                         # the partial run can be looked at
    with pytest.raises(RunDirError, match="pareto.json is missing"):
        R.load_run(tmp_path / "run")


def test_no_admissible_solution_says_what_failed_and_what_to_relax(tmp_path):
    c = S.Constraints(min_accuracy=0.97, max_macs=3.0e4)
    with pytest.raises(NoAdmissibleSolutionError) as err:
        S.search(SearchSpace.mcu((8, 8, 1), 10), synthetic(), c, budget=FAKE_BUDGET.with_(generations=1),
                 out_dir=tmp_path / "run", evaluator=FakeEvaluator(), progress=None)
    msg = str(err.value)
    assert "no admissible solution" in msg and "closest candidates" in msg
    assert "short by" in msg and "over by" in msg and "to relax" in msg
    assert "min accuracy" in msg or "max MACs" in msg
    assert json.loads((tmp_path / "run" / R.PARETO).read_text())["solutions"] == []
    assert (tmp_path / "run" / R.REPORT).exists()                    # the plot still shows the misses


def test_dropped_after_retraining_is_reported(tmp_path):
    msgs = []                                                         # odd ids miss the constraints now
    res = fake_search(tmp_path / "run", evaluator=FakeEvaluator(drop_odd=True), progress=msgs.append)
    assert all(int(s.id[1:]) % 2 == 0 for s in res.admissible)
    dropped = [r["id"] for r in res.dropped]
    assert all(int(i[1:]) % 2 for i in dropped)
    assert all(any(i in m and "dropped" in m for m in msgs) for i in dropped)


def test_accuracy_slack_lowers_only_the_search_floor(tmp_path):
    """Candidates are judged against min_accuracy - slack during the search; the admissible set against
    the true floor after re-training (the fake re-training keeps the proxy accuracy, so misses drop)."""
    c = S.Constraints(min_accuracy=0.7, max_macs=8.0e4)
    budget = FAKE_BUDGET.with_(accuracy_slack=0.08, max_final=6)
    msgs = []
    res = S.search(SearchSpace.mcu((8, 8, 1), 10), synthetic(), c, budget=budget, seed=3, out_dir=tmp_path / "r",
                   evaluator=FakeEvaluator(), progress=msgs.append)
    cfg = json.loads((tmp_path / "r" / R.CONFIG).read_text())
    assert cfg["search_constraints"]["min_accuracy"] == pytest.approx(0.62)
    assert cfg["constraints"]["min_accuracy"] == 0.7
    for r in res.archive:
        assert r["feasible"] == (r["metrics"]["accuracy"] >= 0.62 and r["metrics"]["expected_macs"] <= 8e4)
    assert any(0.62 <= r["metrics"]["accuracy"] < 0.7 for r in R.admissible_front(res.archive))
    assert res.admissible and all(s.val["accuracy"] >= 0.7 for s in res.admissible)
    assert res.dropped and all("accuracy" in r["dropped"] for r in res.dropped)
    assert "accuracy floor was 0.62" in (tmp_path / "r" / R.REPORT).read_text()


def test_local_processes_give_the_same_archive(fake_run, tmp_path):
    res = fake_search(tmp_path / "run", workers=2)
    assert search_lines(tmp_path / "run") == search_lines(fake_run[2])
    pids = {r["pid"] for r in R.Archive(tmp_path / "run" / R.ARCHIVE).read()[0] if r["stage"] == "search"}
    assert os.getpid() not in pids
    assert [s.to_dict() for s in res.admissible] == [s.to_dict() for s in fake_run[0].admissible]


@pytest.mark.parametrize("workers,per", [(1, 7), (2, 4)])   # 18 candidates: 3 pools each
def test_processes_replaced_after_tasks_per_process_give_the_same_archive(fake_run, tmp_path, workers, per):
    """An evaluator asking for `tasks_per_process` runs in processes (also with one worker) that are replaced
    after that many candidates each (at most per x workers per pool), with the in-process run's archive."""
    res = fake_search(tmp_path / "run", workers=workers, evaluator=FakeEvaluator(tasks_per_process=per))
    assert search_lines(tmp_path / "run") == search_lines(fake_run[2])
    recs = [r for r in R.Archive(tmp_path / "run" / R.ARCHIVE).read()[0] if r["stage"] == "search"]
    per_pid = {}
    for r in recs:
        per_pid[r["pid"]] = per_pid.get(r["pid"], 0) + 1
    assert os.getpid() not in per_pid
    assert max(per_pid.values()) <= per * workers
    assert len(per_pid) >= -(-len(recs) // (per * workers))     # a fresh process at least every per x workers
    assert [s.to_dict() for s in res.admissible] == [s.to_dict() for s in fake_run[0].admissible]


def test_worker_killed_by_the_system_is_one_clear_error_and_the_run_resumes(fake_run, tmp_path):
    """A worker process killed mid-candidate (as by the OOM killer) ends the search with a WorkerError that
    says what is safe and how to continue; the resumed run equals the uninterrupted one."""
    from nachos_tf.errors import WorkerError

    with pytest.raises(WorkerError, match=r"ended abruptly.*finished evaluations are safe in .*--resume"):
        fake_search(tmp_path / "run", evaluator=FakeEvaluator(tasks_per_process=10, die_once=True))
    died = json.loads((tmp_path / "run" / "fake_died.json").read_text())["pid"]
    try:
        state = Path(f"/proc/{died}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    assert state in ("gone", "Z"), f"the killed worker {died} is still running ({state})"
    before = len(R.Archive(tmp_path / "run" / R.ARCHIVE).read()[0])
    assert 1 <= before < len(search_lines(fake_run[2]))
    fake_search(tmp_path / "run", evaluator=FakeEvaluator(tasks_per_process=10, die_once=True), resume=True)
    assert search_lines(tmp_path / "run") == search_lines(fake_run[2])


def test_process_backend_replaces_its_pool_and_keeps_order_of_work(fake_run):
    """ProcessBackend itself: every genome evaluated once, in pools of at most per x workers candidates."""
    from nachos_tf.nas.backends import ProcessBackend

    space = SearchSpace.mcu((8, 8, 1), 10)
    genomes = [space.sample(i).to_dict() for i in range(7)]
    ev = FakeEvaluator()
    ev.setup(S.EvalContext(space=space, constraints=FAKE_CONSTRAINTS, target=FAKE_CONSTRAINTS, budget=FAKE_BUDGET,
                           seed=3, loss=None, threads=1, run_dir=fake_run[2], data=synthetic()))
    backend = ProcessBackend(1, ev, tasks_per_process=3)
    try:
        got = list(backend.run(genomes))
    finally:
        backend.close()
    assert sorted(i for i, _ in got) == list(range(7))
    assert backend.pools_started == 3                   # 3 + 3 + 1 candidates
    pids = [rec.extra["pid"] for _, rec in sorted(got, key=lambda t: t[0])]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6]
    for (i, rec) in got:
        assert rec.genome == genomes[i]


def test_dask_cluster_gives_the_same_archive_and_workers_rebuild_data(fake_run, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    data = synthetic()
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x_train=np.concatenate([data.x_train, data.x_val]), y_train=np.concatenate([data.y_train, data.y_val]),
             x_test=data.x_test, y_test=data.y_test)
    ref = S.DataRef("npz", str(npz), val_fraction=1 / 3, seed=0)
    local = fake_search(tmp_path / "local", data=ref)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        remote = fake_search(tmp_path / "dask", data=ref, dask_scheduler=cluster.scheduler_address)
        fake_search(tmp_path / "scattered", dask_scheduler=cluster.scheduler_address)   # in-memory Dataset
    assert search_lines(tmp_path / "dask") == search_lines(tmp_path / "local")
    assert search_lines(tmp_path / "scattered") == search_lines(fake_run[2])
    recs = [r for r in R.Archive(tmp_path / "dask" / R.ARCHIVE).read()[0] if r["stage"] == "search"]
    assert os.getpid() not in {r["pid"] for r in recs}
    assert {r["n_data"] for r in recs} == {len(data.y_train) + len(data.y_val) - 20}   # the DataRef, rebuilt there
    assert [s.to_dict() for s in remote.admissible] == [s.to_dict() for s in local.admissible]


# --------------------------------------------------------------------------------------------------
# real training: a tiny space on a real Fashion-MNIST subset
# --------------------------------------------------------------------------------------------------

REAL_BUDGET = S.Budget("test-real", population=4, generations=1, proxy_train=600, proxy_val=300, epochs=0,
                       head_epochs=1, batch_size=64, final_train=600, final_epochs=0, final_head_epochs=1,
                       max_final=1)
REAL_CONSTRAINTS = S.Constraints(min_accuracy=0.12, max_macs=6.0e4)


@pytest.fixture(scope="module")
def fashion_small():
    from nachos_tf.data import load

    try:
        ds = load("fashion_mnist")
    except Exception as exc:  # pragma: no cover - data missing on this machine
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    return ds.subset(train=600, val=300, test=300, seed=0)


@pytest.fixture(scope="module")
def real_run(fashion_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "run"
    ev = CountingProxy(tasks_per_process=None)          # in this process: it counts the genomes it trains
    res = S.search(tiny_space(), fashion_small, REAL_CONSTRAINTS, budget=REAL_BUDGET, seed=0, out_dir=out,
                   progress=None, evaluator=ev)
    return res, ev, out


def test_real_search_end_to_end(real_run, fashion_small):
    """Real proxy training and final re-training on Fashion-MNIST; the saved model reproduces the figures."""
    from nachos_tf.policy import simulate
    from nachos_tf.train import predict_exits

    res, ev, out = real_run
    assert len(ev.calls) == len(res.archive) == 4
    for r in res.archive:
        m = r["metrics"]
        assert 0.0 <= m["accuracy"] <= 1.0 and m["expected_macs"] <= r["exit_macs"][-1] + 1e-6
        assert len(r["thresholds"]) == len(r["exit_macs"]) - 1 and abs(sum(m["exit_rates"]) - 1) < 1e-9
    assert res.admissible, "the loose test constraints must be met"
    sol = res.admissible[0]
    assert sol.val["accuracy"] >= REAL_CONSTRAINTS.min_accuracy
    assert sol.val["expected_macs"] <= REAL_CONSTRAINTS.max_macs
    probs, confs = predict_exits(sol.model, fashion_small.x_test)
    again = simulate(probs, fashion_small.y_test, sol.thresholds, sol.exit_macs, sol.rule, confs)
    assert again.accuracy == pytest.approx(sol.test["accuracy"], abs=1e-12)
    assert again.expected_macs == pytest.approx(sol.test["expected_macs"], rel=1e-12)
    from nachos_tf.macs import profile_macs

    assert [float(m) for m in profile_macs(sol.model).exit_macs] == sol.exit_macs
    # Budget.final_macs "search" (default): re-calibrated at no more than the search-time cost when the floor
    # can be met there; the final record says whether it was
    for fin in res.final_records:
        how = fin.extra["calibration"]
        assert how["final_macs"] == "search"
        if how["held_at"] is not None:
            assert how["held_at"] == fin.search_metrics["expected_macs"]
            assert fin.val["expected_macs"] <= how["held_at"] * (1 + 1e-9)
    # int8 is measured for the final Pareto set only; a kept member left off it has none (and says so)
    on_front = {s.id for s in res.admissible}
    for fin in res.final_records:
        if fin.id in on_front:
            assert fin.int8 is not None and "int8_pending" not in fin.extra
        elif not fin.dropped:
            assert fin.int8 is None and fin.extra["int8_pending"] is True
        assert fin.extra["calibration"]["method"] == "pareto"
    # the int8 figures in pareto.json come from the staged export on the TFLM micro kernels
    assert sol.int8 is not None and sol.int8["runtime"] == "tflite-micro" and sol.int8["n"] == len(fashion_small.y_test)
    assert abs(sol.int8["accuracy"] - sol.test["accuracy"]) <= 0.05
    assert sol.int8["expected_macs"] == pytest.approx(float(np.dot(sol.int8["exit_rates"], sol.exit_macs)))


def test_real_resume_after_crash_gives_the_same_pareto_set(real_run, fashion_small, tmp_path):
    """Candidate training is deterministic in (genome, seed): a resumed run trains only what is missing and
    ends with exactly the uninterrupted run's pareto.json (final re-training included)."""
    res, ev, out = real_run
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    lines = (crashed / R.ARCHIVE).read_text().splitlines(keepends=True)
    (crashed / R.ARCHIVE).write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    for f in (R.PARETO, R.REPORT):
        (crashed / f).unlink()
    shutil.rmtree(crashed / R.MODELS)
    ev2 = CountingProxy(tasks_per_process=None)
    S.search(tiny_space(), fashion_small, REAL_CONSTRAINTS, budget=REAL_BUDGET, seed=0, out_dir=crashed,
             resume=True, progress=None, evaluator=ev2)
    assert ev2.calls == [ev.calls[3]]
    assert json.loads((crashed / R.PARETO).read_text()) == json.loads((out / R.PARETO).read_text())
    assert search_lines(crashed) == search_lines(out)


def test_real_proxy_in_replaced_processes_equals_in_process_run(real_run, fashion_small, tmp_path):
    """The proxy evaluator's default: real training in worker processes replaced every tasks_per_process
    candidates (TensorFlow keeps every traced graph) gives the in-process run's archive and Pareto set."""
    res, ev, out = real_run
    assert S.ProxyEvaluator().tasks_per_process >= 1            # the default asks for replaced processes
    run = tmp_path / "recycled"
    S.search(tiny_space(), fashion_small, REAL_CONSTRAINTS, budget=REAL_BUDGET, seed=0, out_dir=run,
             progress=None, evaluator=S.ProxyEvaluator(tasks_per_process=2))
    assert search_lines(run) == search_lines(out)
    assert json.loads((run / R.PARETO).read_text()) == json.loads((out / R.PARETO).read_text())
    with pytest.raises(ConstraintError, match="tasks_per_process"):
        S.ProxyEvaluator(tasks_per_process=0)


@pytest.mark.slow
def test_real_dask_run_equals_local_run(real_run, fashion_small, tmp_path):
    """Real training on two Dask worker processes (one thread each) gives the local run's archive."""
    distributed = pytest.importorskip("dask.distributed")
    res, ev, out = real_run
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        S.search(tiny_space(), fashion_small, REAL_CONSTRAINTS, budget=REAL_BUDGET, seed=0, out_dir=tmp_path / "d",
                 progress=None, evaluator="proxy", dask_scheduler=cluster.scheduler_address)
    assert search_lines(tmp_path / "d") == search_lines(out)
    assert json.loads((tmp_path / "d" / R.PARETO).read_text()) == json.loads((out / R.PARETO).read_text())


_KILL_SCRIPT = textwrap.dedent("""
    import importlib, sys
    sys.path.insert(0, {tests!r})
    from test_search import tiny_space, REAL_CONSTRAINTS
    from nachos_tf import nas as S
    if __name__ == "__main__":
        budget = S.Budget("kill", population=4, generations=2, proxy_train=600, proxy_val=300, epochs=0,
                          head_epochs=1, final_train=600, final_epochs=0, final_head_epochs=1, max_final=1)
        S.search(tiny_space(), S.DataRef("fashion_mnist"), REAL_CONSTRAINTS, budget=budget, seed=0,
                 out_dir=sys.argv[1], resume=sys.argv[3] == "resume", workers=int(sys.argv[2]), progress=print)
""")


def _children(pid: int):
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
        except (OSError, ValueError, IndexError):
            pass
    return out


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted(tmp_path):
    """A search with 2 worker processes killed with SIGKILL mid-run leaves no worker behind; resumed
    (with 1 worker) it reaches exactly the uninterrupted single-process result."""
    script = tmp_path / "run_search.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(ROOT / "tests")))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run([sys.executable, str(script), str(full), "1", "new"], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "2", "new"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    archive = killed / R.ARCHIVE
    deadline = time.time() + 900
    while time.time() < deadline and (not archive.exists() or len(archive.read_text().splitlines()) < 3):
        time.sleep(0.5)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(8)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and (Path(f"/proc/{w}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"worker processes outlived the killed search: {alive}"
    n_before = len(R.Archive(archive).read()[0])
    assert 3 <= n_before < len(R.Archive(full / R.ARCHIVE).read()[0])
    out = subprocess.run([sys.executable, str(script), str(killed), "1", "resume"], check=True, env=env,
                         capture_output=True, text=True)
    assert "resuming" in out.stdout
    assert search_lines(killed) == search_lines(full)
    assert json.loads((killed / R.PARETO).read_text()) == json.loads((full / R.PARETO).read_text())


# --------------------------------------------------------------------------------------------------
# algorithm choice and wall-clock limit
# --------------------------------------------------------------------------------------------------

def test_random_search_draws_fresh_genomes_and_resumes_as_random(tmp_path):
    """algorithm="random" (pymoo RandomSearch): population x generations independent draws, all valid
    genomes of the space, seeded; config says so and a resume continues as random search."""
    res = fake_search(tmp_path / "r1", algorithm="random")
    recs = [r for r in res.archive if r["stage"] == R.STAGE_SEARCH]
    space = SearchSpace.mcu((8, 8, 1), 10)
    assert len(recs) == FAKE_BUDGET.population * FAKE_BUDGET.generations     # no offspring dedup: fresh draws
    for r in recs:
        space.validate(Genome.from_dict(r["genome"]))
    assert search_lines(tmp_path / "r1") == search_lines(fake_search(tmp_path / "r2", algorithm="random").out_dir)
    def genomes(path):
        return {json.dumps(r["genome"], sort_keys=True) for r in search_lines(path).values()}

    nsga = fake_search(tmp_path / "n", algorithm="nsga2").out_dir
    assert genomes(nsga) != genomes(tmp_path / "r1")                         # NSGA-II breeds other genomes
    cfg = json.loads((tmp_path / "r1" / R.CONFIG).read_text())
    assert cfg["algorithm"]["name"] == "RandomSearch"
    again = fake_search(tmp_path / "r1", resume=True, algorithm="random")
    assert search_lines(again.out_dir) == search_lines(res.out_dir)          # replayed, nothing drawn anew
    assert [s.id for s in again.admissible] == [s.id for s in res.admissible]
    with pytest.raises(RunDirError, match="algorithm"):
        fake_search(tmp_path / "r1", resume=True, algorithm="nsga2")


def test_max_seconds_stops_the_search_between_generations(tmp_path):
    t0 = time.time()
    res = fake_search(tmp_path / "t", evaluator=FakeEvaluator(sleep=0.05), generations=200, max_seconds=0.5)
    n = sum(1 for r in res.archive if r["stage"] == R.STAGE_SEARCH)
    assert FAKE_BUDGET.population <= n < 200 * FAKE_BUDGET.population / 4
    assert time.time() - t0 < 90          # generous: the machine may be loaded; n above is the real check
    cfg = json.loads((tmp_path / "t" / R.CONFIG).read_text())
    assert cfg["algorithm"]["max_seconds"] == 0.5


@pytest.mark.parametrize("kw, match", [(dict(algorithm="bayes"), "unknown search algorithm"),
                                       (dict(max_seconds=0), "max_seconds"),
                                       (dict(max_seconds="1h"), "max_seconds")])
def test_bad_algorithm_settings_are_refused_before_writing(tmp_path, kw, match):
    with pytest.raises(ConstraintError, match=match):
        fake_search(tmp_path / "bad", **kw)
    assert not (tmp_path / "bad").exists()


def _paper_ablation_record(fashion_small, tmp_path):
    """(evaluator, record, the paper's per-exit costs) of ProxyEvaluator(cost_model="paper", calibration="grid")."""
    from nachos_tf.builder import build_eenn
    from nachos_tf.macs import paper_exit_macs, profile_macs

    space = tiny_space()
    genome = next(g for g in (space.sample(s) for s in range(40)) if len(g.exit_positions) >= 2)
    loose = S.Constraints(min_accuracy=0.12, max_macs=1.0e9)
    paper = [float(m) for m in paper_exit_macs(profile_macs(build_eenn(space, genome)))]
    ev = ready(S.ProxyEvaluator(calibration="grid", cost_model="paper"), space, fashion_small, loose, REAL_BUDGET,
               run_dir=tmp_path)
    return ev, ev.evaluate(genome), paper


def test_paper_cost_model_and_grid_calibration_ablation(fashion_small, tmp_path):
    """ProxyEvaluator(cost_model="paper", calibration="grid") optimises the paper's belief (own-head costs)."""
    ev, rec, paper = _paper_ablation_record(fashion_small, tmp_path)
    assert ev.to_dict() == {"name": "proxy", "calibration": "grid", "cost_model": "paper"}
    rates = rec.metrics.exit_rates
    assert rec.metrics.expected_macs == pytest.approx(float(np.dot(rates, paper)))
    assert paper[-1] < rec.exit_macs[-1]                          # the belief is cheaper than the truth
    with pytest.raises(ConstraintError, match="cost model"):
        S.ProxyEvaluator(cost_model="ours")


@pytest.mark.slow  # a final stage with int8 conversion and TFLM on test (about a minute on 2 cores)
def test_paper_cost_model_finalize_reports_what_the_device_pays(fashion_small, tmp_path):
    """The paper ablation's finalize still reports what the device pays (staged costs) at its thresholds."""
    ev, rec, _ = _paper_ablation_record(fashion_small, tmp_path)
    rec.id = "c0000"
    fin = ev.finalize(rec, tmp_path)
    for split in ("val", "test"):
        assert getattr(fin, split)["expected_macs"] == pytest.approx(
            float(np.dot(getattr(fin, split)["exit_rates"], fin.exit_macs)))


def test_export_of_a_solution_reproduces_its_int8_figures(real_run, fashion_small, tmp_path):
    """`export_solution` of an admissible solution, run stage by stage on TFLM, gives exactly the int8
    figures the search wrote to pareto.json; the manifest on disk names the solution."""
    from tflite_export.from_run import export_solution
    from tflite_export.tflm import evaluate_staged

    res, _, out = real_run
    sol = res.admissible[0]
    export_solution(out, sol.id, tmp_path / "deploy", data=fashion_small)
    assert json.loads((tmp_path / "deploy" / "manifest.json").read_text())["solution"] == sol.id
    r = evaluate_staged(tmp_path / "deploy", fashion_small.x_test, fashion_small.y_test)
    assert r["accuracy"] == sol.int8["accuracy"] and r["exit_rates"] == sol.int8["exit_rates"]
    assert r["expected_macs"] == sol.int8["expected_macs"]


def test_saved_models_reproduce_pareto_json_independently(real_run, fashion_small, tmp_path):
    """benchmarks/verify_run.py (plain keras.load_model + the per-sample reference loop) agrees with
    pareto.json on test and validation, and catches a figure that was tampered with."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "verify_run", Path(__file__).resolve().parents[1] / "benchmarks" / "verify_run.py")
    V = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(V)
    res, ev, out = real_run
    rep = V.verify(out, fashion_small)
    assert rep["ok"], rep
    assert [s["id"] for s in rep["solutions"]] == [s.id for s in res.admissible]
    assert rep["solutions"][0]["test"]["n"] == len(fashion_small.y_test)
    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    pareto = json.loads((bad / R.PARETO).read_text())
    pareto["solutions"][0]["test"]["accuracy"] += 1.0 / len(fashion_small.y_test)
    (bad / R.PARETO).write_text(json.dumps(pareto))
    rep = V.verify(bad, fashion_small)
    assert not rep["ok"] and any(p.startswith("test: accuracy") for p in rep["solutions"][0]["problems"])


def test_real_dominated_member_moves_along_its_own_curve(real_run, fashion_small, tmp_path):
    """`final_points.reposition` on a real saved model: a member placed just behind a solution (dearer and
    less accurate, same model file) is moved to a point of its own curve that is on the front; its new
    validation and test figures are what the saved model gives at the new thresholds (recomputed here by
    `policy.simulate`), and its int8 figures become pending, then measured on TFLM at those thresholds."""
    import dataclasses

    from nachos_tf.nas.final_points import measure_pending_int8, reposition
    from nachos_tf.policy import simulate
    from nachos_tf.train import predict_exits

    res, _, out = real_run
    sol = res.admissible[-1]                                # the dearest solution: room below it
    if len(sol.exit_macs) < 2:
        pytest.skip("the solution has no early exit: its curve is one point")
    base = next(f for f in res.final_records if f.id == sol.id)
    behind = dataclasses.replace(base, id="behind", int8=None,
                                 val=dict(base.val, accuracy=base.val["accuracy"] - 0.02,
                                          expected_macs=base.val["expected_macs"] * 1.01))
    moved, ids = reposition([base, behind], out, fashion_small, REAL_CONSTRAINTS)
    # "every image leaves at the first exit" is on the curve: cheaper than the solution, above the loose floor
    assert ids == ["behind"] and moved[0] is base
    m = moved[1]
    assert m.extra["int8_pending"] is True and m.int8 is None
    assert m.extra["calibration"]["moved"]["from"]["accuracy"] == behind.val["accuracy"]
    a, b = (base.val["expected_macs"], base.val["accuracy"]), (m.val["expected_macs"], m.val["accuracy"])
    assert not (a[0] <= b[0] and a[1] >= b[1]) and not (b[0] <= a[0] and b[1] >= a[1])   # neither dominates
    assert m.val["accuracy"] >= REAL_CONSTRAINTS.min_accuracy and m.val["expected_macs"] <= REAL_CONSTRAINTS.max_macs
    for split, (x, y) in (("val", (fashion_small.x_val, fashion_small.y_val)),
                          ("test", (fashion_small.x_test, fashion_small.y_test))):
        probs, confs = predict_exits(sol.model, x)
        again = simulate(probs, y, m.thresholds, m.exit_macs, m.rule, confs)
        assert again.accuracy == pytest.approx(getattr(m, split)["accuracy"], abs=1e-12)
        assert again.expected_macs == pytest.approx(getattr(m, split)["expected_macs"], rel=1e-9)
    q = measure_pending_int8(m, out, fashion_small)
    assert "int8_pending" not in q.extra and q.int8["runtime"] == "tflite-micro"
    assert q.int8["expected_macs"] == pytest.approx(float(np.dot(q.int8["exit_rates"], m.exit_macs)))
    assert abs(q.int8["accuracy"] - m.test["accuracy"]) <= 0.05

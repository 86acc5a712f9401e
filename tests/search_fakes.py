"""Helpers of the search tests: a deterministic fake evaluator (module-level, so Dask and process workers
can import it), a counting proxy, tiny datasets and spaces, the fake and real budgets and constraints."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from nachos_tf import nas as S
from nachos_tf import results as R
from nachos_tf.data import Dataset
from nachos_tf.genome import Gene, Genome
from nachos_tf.nas.evaluators.common import candidate_seed
from nachos_tf.records import CandidateRecord, FinalRecord
from nachos_tf.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def unit_hash(genome: Genome, salt: str) -> float:
    """A deterministic number in [0, 1) from the genome."""
    return int(hashlib.sha256((salt + genome.key()).encode()).hexdigest()[:8], 16) / 16 ** 8


def fake_metrics(genome: Genome, space: SearchSpace):
    x = space.encode(genome).astype(float)
    frac = x / np.maximum(space.xu, 1)
    macs = 2.0e4 + 1.0e5 * float(frac.mean()) + 1.0e4 * len(genome.exit_positions)
    acc = min(0.99, 0.45 + 0.35 * float(frac.mean()) + 0.15 * unit_hash(genome, "acc"))
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
        acc = rec.metrics.accuracy - 0.01 * unit_hash(genome, "final")
        macs = rec.metrics.expected_macs
        val = {"accuracy": acc, "exit_rates": rec.metrics.exit_rates, "expected_macs": macs}
        test = dict(val, accuracy=acc - 0.005)
        g = c.target.violations(acc, macs)
        failed = [k for k, v in g.items() if v is not None and v > 0]
        if self.drop_odd and int(rec.id[1:]) % 2:
            failed = failed or ["accuracy"]
        fin = FinalRecord(id=rec.id, genome=rec.genome, seed=rec.seed, rule=rec.rule, thresholds=rec.thresholds,
                          exit_macs=rec.exit_macs, val=val, test=test, constraints=g,
                          metrics=dict(val, error=1 - acc), feasible=not failed, time="x", extra={"pid": os.getpid()},
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
    kw.setdefault("budget", FAKE_BUDGET)
    return S.search(SearchSpace.mcu((8, 8, 1), 10), synthetic() if data is None else data, FAKE_CONSTRAINTS,
                    seed=3, out_dir=out_dir, **kw)


def search_lines(path: Path):
    """Search-stage archive records by id, without wall-clock fields and the worker tag."""
    recs = R.Archive(path / R.ARCHIVE).read()[0]
    drop = ("time", "seconds", "train_seconds", "pid")
    return {r["id"]: {k: v for k, v in r.items() if k not in drop} for r in recs if r["stage"] == R.STAGE_SEARCH}


def final_lines(path: Path):
    """Final-stage archive records by id (the newest line of each), without wall-clock fields and the worker tag."""
    recs = R.Archive(path / R.ARCHIVE).read()[0]
    drop = ("time", "seconds", "train_seconds", "pid")
    return {r["id"]: {k: v for k, v in r.items() if k not in drop} for r in recs if r["stage"] != R.STAGE_SEARCH}


REAL_BUDGET = S.Budget("test-real", population=4, generations=1, proxy_train=600, proxy_val=300, epochs=0,
                       head_epochs=1, batch_size=64, final_train=600, final_epochs=0, final_head_epochs=1,
                       max_final=1)
REAL_CONSTRAINTS = S.Constraints(min_accuracy=0.12, max_macs=6.0e4)


def middle_cut(run_dir) -> float:
    """A search time at which `cut_run` keeps some but not all of a run's search records. Records are stamped
    to the second, so a fixed fraction of a few-second clock can fall before the first stamp; this takes the
    middle one of the distinct times the records are placed at (`record_search_seconds`)."""
    from nachos_tf.nas.clock import read_clock, record_search_seconds

    recs = [r for r in R.Archive(Path(run_dir) / R.ARCHIVE).records() if isinstance(r, CandidateRecord)]
    at = sorted({t for _, t in record_search_seconds(recs, read_clock(run_dir)["sessions"])})
    assert len(at) >= 3, f"the run's records fall on only {len(at)} distinct seconds; run it longer"
    return at[(len(at) - 1) // 2]

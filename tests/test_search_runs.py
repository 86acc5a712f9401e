"""Whole searches with the fake evaluator (nachos_tf.nas, nachos_tf.results): the run folder, resume,
refinalize, interrupts and failures, the process and Dask backends, the algorithm choice and time limit."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from nachos_tf import nas as S
from nachos_tf import results as R
from nachos_tf.errors import ConstraintError, NoAdmissibleSolutionError, RunDirError
from nachos_tf.genome import Genome
from nachos_tf.report import report as draw_report
from nachos_tf.space import SearchSpace

from search_fakes import (FAKE_BUDGET, FAKE_CONSTRAINTS, FakeEvaluator, fake_search, final_lines, search_lines,
                          synthetic)


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
    with pytest.raises(ConstraintError, match="final_schedule"):
        S.refinalize(out, tmp_path / "x", data=synthetic(), final_schedule="step")
    with pytest.raises(RunDirError, match="the search's own"):
        S.refinalize(out, out, data=synthetic())
    with pytest.raises(RunDirError, match="holds another run"):
        S.refinalize(out, new, data=synthetic(), max_final=4)
    with pytest.raises(RunDirError, match="in-memory"):
        S.refinalize(out, tmp_path / "x")
    with pytest.raises(RunDirError, match="not a search run folder"):
        S.refinalize(tmp_path, tmp_path / "x", data=synthetic())
    assert not (tmp_path / "x").exists()


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


def test_dropped_members_and_their_reserve_are_the_same_with_parallel_workers(tmp_path):
    """The first max_final finalists are re-trained together by two workers; when one is dropped, one reserve
    is tried after them, as in one process: the same final lines, and one line more than max_final."""
    budget = FAKE_BUDGET.with_(max_final=2)
    one = fake_search(tmp_path / "one", evaluator=FakeEvaluator(drop_odd=True), budget=budget)
    two = fake_search(tmp_path / "two", evaluator=FakeEvaluator(drop_odd=True), budget=budget, workers=2)
    lines = final_lines(tmp_path / "one")
    assert lines == final_lines(tmp_path / "two")
    assert one.dropped and len(lines) == budget.max_final + 1
    assert [s.to_dict() for s in one.admissible] == [s.to_dict() for s in two.admissible]


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
    """Two worker processes judge the candidates and re-train the finalists (in parallel): the same search and
    final lines, and the same admissible set, as the run in this process."""
    res = fake_search(tmp_path / "run", workers=2)
    assert search_lines(tmp_path / "run") == search_lines(fake_run[2])
    lines = R.Archive(tmp_path / "run" / R.ARCHIVE).read()[0]
    pids = {r["pid"] for r in lines if r["stage"] == "search"}
    assert os.getpid() not in pids
    final_pids = {r["pid"] for r in lines if r["stage"] != "search"}
    assert final_pids and os.getpid() not in final_pids
    assert final_lines(tmp_path / "run") == final_lines(fake_run[2])
    assert [s.to_dict() for s in res.admissible] == [s.to_dict() for s in fake_run[0].admissible]


# 18 candidates: 3 pools each; one worker's processes also by ProcessBackend's own test below
@pytest.mark.parametrize("workers,per", [pytest.param(1, 7, marks=pytest.mark.slow), (2, 4)])
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

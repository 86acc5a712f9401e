"""End-to-end search tests with real training: a tiny space on a real Fashion-MNIST subset (the proxy
evaluator, resume after a crash, processes and Dask, kill -9, the paper ablation, export and verification)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nachos_tf import nas as S
from nachos_tf import results as R
from nachos_tf.errors import ConstraintError

from search_fakes import REAL_BUDGET, REAL_CONSTRAINTS, ROOT, CountingProxy, ready, search_lines, tiny_space


# --------------------------------------------------------------------------------------------------
# real training: a tiny space on a real Fashion-MNIST subset
# --------------------------------------------------------------------------------------------------


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


@pytest.mark.slow  # real training in replaced processes (about 45 s); the mechanism is tested with fakes in
# test_search_runs.py::test_processes_replaced_after_tasks_per_process_give_the_same_archive
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
    from search_fakes import tiny_space, REAL_CONSTRAINTS
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

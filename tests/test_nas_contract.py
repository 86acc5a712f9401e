"""The search's contracts after the nas/ restructuring: evaluators are pluggable objects with a one-time
setup, config.json is a `RunSpec`, and run folders written before the restructuring still load and resume.

`tests/fixtures/run_v0` was written by nachos-tf main at commit e6e179c (before nachos_tf/nas existed):
a complete tiny real search on Fashion-MNIST (DataRef), its archive, pareto.json and saved model.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nachos_tf as nt
from nachos_tf import nas as S
from nachos_tf import results as R
from nachos_tf.errors import ConstraintError, RunDirError
from search_fakes import FAKE_BUDGET, FAKE_CONSTRAINTS, FakeEvaluator, synthetic

ROOT = Path(__file__).resolve().parents[1]
OLD_RUN = ROOT / "tests" / "fixtures" / "run_v0"


@S.register_evaluator
class SetupCounting(FakeEvaluator):
    """A fake evaluator whose setup is expensive one-time work: it writes `shared.json` into the run folder
    and counts, in that file, how often the work was really done; a setup that finds it reuses it."""

    name = "setup-counting"
    setups_here = 0          # setup calls in this process (class-wide: survives pickling to workers)

    def setup(self, context):
        type(self).setups_here += 1
        self.context = context
        shared = context.run_dir / "shared.json"
        if shared.exists():
            self.state = json.loads(shared.read_text())
        else:
            self.state = {"work_done": 1}
            shared.write_text(json.dumps(self.state))

    def evaluate(self, genome):
        assert self.state["work_done"] == 1          # workers see the state set up once
        return super().evaluate(genome)


def _search(out, **kw):
    kw.setdefault("progress", None)
    return S.search(nt.SearchSpace.mcu((8, 8, 1), 10), synthetic(), FAKE_CONSTRAINTS, budget=FAKE_BUDGET, seed=3,
                    out_dir=out, **kw)


def test_setup_runs_once_per_run_not_per_candidate_and_not_again_on_resume(tmp_path):
    SetupCounting.setups_here = 0
    res = _search(tmp_path / "run", evaluator="setup-counting")
    assert len(res.archive) > 5 and SetupCounting.setups_here == 1
    assert json.loads((tmp_path / "run" / "shared.json").read_text()) == {"work_done": 1}
    cfg = json.loads((tmp_path / "run" / R.CONFIG).read_text())
    assert cfg["evaluator"] == {"name": "setup-counting", "drop_odd": False}
    # interrupted: drop the second half of the archive and the final stage, then resume by the folder alone
    lines = (tmp_path / "run" / R.ARCHIVE).read_text().splitlines(keepends=True)
    (tmp_path / "run" / R.ARCHIVE).write_text("".join(lines[:4]))
    (tmp_path / "run" / R.PARETO).unlink()
    again = S.resume_search(tmp_path / "run", progress=None, data=synthetic())
    assert SetupCounting.setups_here == 2                              # set up for the resumed run ...
    assert json.loads((tmp_path / "run" / "shared.json").read_text()) == {"work_done": 1}   # ... work reused
    assert [r.id for r in again.archive] == [r.id for r in res.archive]


def test_evaluator_by_name_object_or_unknown(tmp_path):
    assert {"proxy", "setup-counting"} <= set(S.evaluator_names())
    assert isinstance(S.make_evaluator(None), S.ProxyEvaluator)
    assert S.make_evaluator("proxy", calibration="grid").to_dict()["calibration"] == "grid"
    with pytest.raises(ConstraintError, match="unknown evaluator 'nope'"):
        _search(tmp_path / "a", evaluator="nope")
    with pytest.raises(ConstraintError, match="setup, evaluate, finalize"):
        _search(tmp_path / "b", evaluator=lambda *a: None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_resume_with_other_evaluator_settings_is_refused(tmp_path):
    _search(tmp_path / "run", evaluator=FakeEvaluator())
    with pytest.raises(RunDirError, match="differ in evaluator"):
        _search(tmp_path / "run", evaluator=FakeEvaluator(drop_odd=True), resume=True)


def test_runspec_is_config_json_and_round_trips(tmp_path):
    _search(tmp_path / "run", evaluator=FakeEvaluator(), algorithm="random")
    cfg = json.loads((tmp_path / "run" / R.CONFIG).read_text())
    spec = S.RunSpec.from_dict(cfg)
    assert spec.algorithm == "random" and spec.seed == 3 and spec.budget == FAKE_BUDGET
    assert spec.to_dict() == cfg
    for field, value, match in (("space", "oops", "'space' must be a JSON object"),
                                ("seed", -1, "'seed' must be a whole number"),
                                ("evaluator", 7, "'evaluator' must name an evaluator"),
                                ("constraints", {"min_accuracy": "x", "max_macs": 1}, "min_accuracy must be a number")):
        with pytest.raises(RunDirError, match=match):
            S.RunSpec.from_dict(dict(cfg, **{field: value}), "config.json")


def test_a_run_folder_from_before_the_restructuring_still_loads():
    res = nt.load_run(OLD_RUN)
    assert [s.id for s in res.admissible] == ["c0001"] and len(res.archive) == 8
    assert isinstance(res.archive[0], R.CandidateRecord) and res.archive[0].metrics.accuracy == 0.16
    assert res.archive[0]["metrics"]["accuracy"] == 0.16                 # the JSON view still answers
    spec = S.RunSpec.from_dict(json.loads((OLD_RUN / R.CONFIG).read_text()))
    assert spec.evaluator == {"name": "proxy", "calibration": "pareto", "cost_model": "staged"}
    assert spec.algorithm == "nsga2" and spec.threads == 1
    # what the old archive says on disk is what the typed records write back
    lines = [json.loads(line) for line in (OLD_RUN / R.ARCHIVE).read_text().splitlines()]
    assert [r.to_dict() for r in R.Archive(OLD_RUN / R.ARCHIVE).records()] == lines
    model = res.admissible[0].model
    assert model.output_names[-1] == "final" and len(model.output_names) == 7   # 3 early exits + confidences


def test_a_run_folder_from_before_the_restructuring_resumes_from_the_cli(tmp_path):
    """`nachos-tf search --resume` on the old folder: every candidate and the final stage come from the
    archive (nothing trained), pareto.json is unchanged, config.json is rewritten in the new layout."""
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    before = json.loads((run / R.PARETO).read_text())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-m", "nachos_tf.cli", "search", "--resume", str(run)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "resuming" in out.stdout and "8 candidates in the archive" in out.stdout
    assert "re-trained earlier (archive)" in out.stdout
    assert json.loads((run / R.PARETO).read_text()) == before
    assert json.loads((run / R.CONFIG).read_text())["evaluator"]["name"] == "proxy"
    assert len((run / R.ARCHIVE).read_text().splitlines()) == 9          # nothing appended


# --------------------------------------------------------------------------------------------------
# reliability of the run folder (issue 14: lock, Ctrl-C, tampering, config values)
# --------------------------------------------------------------------------------------------------

class SwallowingEvaluator(FakeEvaluator):
    """Receives a Ctrl-C while 'inside TensorFlow' at its third candidate, and swallows it there (as a
    weakref callback or __del__ does): the search must stop anyway."""

    def evaluate(self, genome):
        if len(self.calls) == 2:
            import signal

            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                pass                                  # "Exception ignored in ..."
        return super().evaluate(genome)


def test_ctrl_c_swallowed_inside_an_evaluation_still_stops_the_search(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "run", evaluator=SwallowingEvaluator())
    lines = R.Archive(tmp_path / "run" / R.ARCHIVE).read()[0]
    assert len(lines) == 3                            # the candidate in progress was archived, no more
    assert not (tmp_path / "run" / ".lock").exists()  # and the lock was released


def test_a_live_lock_refuses_a_second_process_and_a_dead_one_is_taken_over(tmp_path):
    _search(tmp_path / "run", evaluator=FakeEvaluator())
    (tmp_path / "run" / ".lock").write_text(str(os.getppid()))          # a live process holds the run
    with pytest.raises(RunDirError, match=r"in use by another nachos-tf process \(pid"):
        _search(tmp_path / "run", evaluator=FakeEvaluator(), resume=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run" / ".lock").write_text(str(dead.pid))              # its holder is gone
    res = _search(tmp_path / "run", evaluator=FakeEvaluator(), resume=True)
    assert res.admissible and not (tmp_path / "run" / ".lock").exists()


def _tamper(run: Path, index: int, change) -> None:
    lines = (run / R.ARCHIVE).read_text().splitlines()
    rec = json.loads(lines[index])
    change(rec)
    lines[index] = json.dumps(rec)
    (run / R.ARCHIVE).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("change, match", [
    (lambda r: r["metrics"].update(error=1e-4), "field 'error' must equal 1 - accuracy"),
    (lambda r: r["metrics"].update(error="abc"), "field 'error' must be a finite number"),
    (lambda r: r["metrics"].update(exit_rates=[0.5, 0.1]), "field 'exit_rates' must be non-negative and sum to 1"),
    (lambda r: r["metrics"].update(expected_macs=1.0), "outside its staged exit costs"),
    (lambda r: r["genome"]["backbone"].update(s1_depth=9), "not a member of this run's space"),
    (lambda r: r.update(feasible=True, constraints=dict(r["constraints"], accuracy=0.5)), "'feasible' is true"),
])
def test_a_tampered_archive_is_refused_naming_file_line_and_field(tmp_path, change, match):
    _search(tmp_path / "run", evaluator=FakeEvaluator())
    _tamper(tmp_path / "run", 1, change)
    with pytest.raises(RunDirError, match=match) as err:
        _search(tmp_path / "run", evaluator=FakeEvaluator(), resume=True)
    assert "archive.jsonl" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_a_bad_seed_is_refused_before_anything_is_written(tmp_path, seed):
    with pytest.raises(ConstraintError, match="seed"):
        S.search(nt.SearchSpace.mcu((8, 8, 1), 10), synthetic(), FAKE_CONSTRAINTS, budget=FAKE_BUDGET, seed=seed,
                 out_dir=tmp_path / "run", evaluator=FakeEvaluator(), progress=None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["solutions"][0]["val"].update(accuracy="abc"), "field 'accuracy' must be a finite number"),
    (lambda d: d["solutions"][0]["test"].update(expected_macs=None), "field 'expected_macs'"),
    (lambda d: d["solutions"][0].update(model="../../../etc/passwd"), "outside|inside"),
])
def test_pareto_json_figures_are_checked_when_read(tmp_path, edit, match):
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    doc = json.loads((run / R.PARETO).read_text())
    edit(doc)
    (run / R.PARETO).write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match=match):
        res = nt.load_run(run)
        res.admissible[0].model


_REPLAY = """
import json, sys
sys.path.insert(0, {tests!r})
import nachos_tf as nt
from nachos_tf import nas as S
from nachos_tf.results import Archive
from search_fakes import ready
run = {run!r}
spec = S.RunSpec.from_dict(json.load(open(run + "/config.json")))
S.pin_threads(spec.threads)                    # a fresh process: the run's thread count, as a worker would
old = Archive(run + "/archive.jsonl").records()[0]
ev = ready(S.ProxyEvaluator(), nt.SearchSpace.from_dict(spec.space), S.DataRef(**spec.data["ref"]).load(),
           spec.search_constraints, spec.budget, seed=spec.seed)
print(json.dumps(ev.evaluate(nt.Genome.from_dict(old.genome)).to_dict()))
"""


def test_the_proxy_evaluator_reproduces_the_old_codes_archived_candidate_bit_for_bit(tmp_path):
    """Behaviour did not change in the restructuring: the first candidate of the fixture (trained by the code
    before nachos_tf.nas existed, 1 thread) gets exactly the same figures again, and the same thresholds to
    float rounding."""
    script = tmp_path / "replay.py"
    script.write_text(_REPLAY.format(tests=str(ROOT / "tests"), run=str(OLD_RUN)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    new = json.loads(out.stdout.strip().splitlines()[-1])
    old = json.loads((OLD_RUN / R.ARCHIVE).read_text().splitlines()[0])
    for key in ("metrics", "exit_macs", "seed", "constraints", "feasible", "rule"):
        assert new[key] == old[key], key
    # a threshold is the midpoint between two consecutive distinct scores of the trained model: training on
    # another CPU's instruction set (oneDNN picks AVX-512 where it exists) rounds the scores differently in the
    # 4th decimal, which moves the midpoint without changing a single exit decision (the metrics above)
    assert new["thresholds"] == pytest.approx(old["thresholds"], abs=1e-3)

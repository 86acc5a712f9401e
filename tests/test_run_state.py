"""benchmarks/run_state.py: an unfinished search run carried to a fresh checkout resumes where it stood."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from nachos_tf import results as R
from nachos_tf.errors import RunDirError
from nachos_tf.nas.clock import read_clock

from search_fakes import FakeEvaluator, fake_search, middle_cut, search_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_state  # noqa: E402


def _interrupted(run: Path, max_seconds: float, at: int) -> None:
    """A time-limited search stopped by Ctrl-C at its `at`-th candidate (FakeEvaluator raises KeyboardInterrupt)."""
    with pytest.raises(KeyboardInterrupt):
        fake_search(run, evaluator=FakeEvaluator(sleep=0.03, interrupt_at=at), generations=500,
                    max_seconds=max_seconds)


def test_a_saved_run_resumes_in_another_checkout_with_the_time_it_had_left(tmp_path):
    kw = dict(generations=500, max_seconds=8.0)
    runs, state = tmp_path / "a" / "runs", tmp_path / "a" / "state"
    _interrupted(runs / "nachos_proxy" / "seed0", kw["max_seconds"], 40)      # 40 x 0.03 s: >= 1.2 s spent
    fake_search(runs / "random" / "seed0", evaluator=FakeEvaluator(), generations=1)   # finished: not carried
    src = runs / "nachos_proxy" / "seed0"
    before, spent = search_lines(src), read_clock(src)["seconds"]
    with open(src / R.ARCHIVE, "a") as f:
        f.write('{"id": "c9999", "gen')                     # a write cut short by the interruption
    manifest = run_state.save(runs, state)
    assert list(manifest["runs"]) == ["nachos_proxy/seed0"]
    assert manifest["runs"]["nachos_proxy/seed0"]["records"] == len(R.Archive(src / R.ARCHIVE).read()[0])
    assert (state / "nachos_proxy" / "seed0" / R.ARCHIVE).read_bytes().endswith(b"}\n")   # partial line cut
    assert not (state / "random").exists()

    fresh = tmp_path / "b" / "runs"                          # the next session: a new clone, no runs/ folder
    shutil.copytree(state, tmp_path / "b" / "state")
    assert run_state.restore(tmp_path / "b" / "state", fresh) == ["nachos_proxy/seed0"]
    dst = fresh / "nachos_proxy" / "seed0"
    assert search_lines(dst) == before and read_clock(dst)["seconds"] == pytest.approx(spent)
    fake_search(dst, evaluator=FakeEvaluator(sleep=0.03), resume=True, **kw)
    after = search_lines(dst)
    assert {k: after[k] for k in before} == before and len(after) > len(before)   # replayed, then searched on
    clock = read_clock(dst)
    assert len(clock["sessions"]) == 2 and clock["seconds"] >= kw["max_seconds"]
    # only the time it had left (plus the generation running at the deadline), not the whole limit again
    assert spent >= 1.2 and clock["sessions"][1]["seconds"] <= kw["max_seconds"] - spent + 1.0
    assert (dst / R.PARETO).exists()                         # the final stage ran: the run is finished
    assert run_state.save(fresh, tmp_path / "b" / "state")["runs"] == {}     # so the saved copy is dropped
    assert not (tmp_path / "b" / "state" / "nachos_proxy").exists()


def test_restore_never_overwrites_a_run_and_checks_what_it_reads(tmp_path, capsys):
    runs, state = tmp_path / "runs", tmp_path / "state"
    _interrupted(runs / "m" / "seed1", 2.0, 8)
    run_state.save(runs, state)
    with pytest.raises(RunDirError, match="already holds a run"):
        run_state.restore(state, runs)                       # the newer work in runs/ is kept
    lines = (state / "m" / "seed1" / R.ARCHIVE).read_text().splitlines()
    lines.insert(1, "not json")
    (state / "m" / "seed1" / R.ARCHIVE).write_text("\n".join(lines) + "\n")
    assert run_state.main(["restore", str(state), str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "corrupt" in err and "\n" not in err
    assert not (tmp_path / "new" / "m" / "seed1" / R.CONFIG).exists()     # nothing half-restored

    doc = json.loads((state / run_state.STATE).read_text())
    doc["runs"] = {"../escape": doc["runs"]["m/seed1"]}
    (state / run_state.STATE).write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match="leaves the state folder"):
        run_state.restore(state, tmp_path / "new")
    assert run_state.main(["save", str(tmp_path / "empty"), str(state)]) == 2   # no run folder there


def test_a_cut_run_is_carried_with_its_cut_note(tmp_path):
    from nachos_tf.nas.cut import CUT, cut_run

    long = fake_search(tmp_path / "long", evaluator=FakeEvaluator(sleep=0.02), generations=500, max_seconds=3.0)
    runs = tmp_path / "runs"
    note = cut_run(long.out_dir, runs / "nachos_proxy" / "seed1", middle_cut(long.out_dir))
    manifest = run_state.save(runs, tmp_path / "state")
    assert manifest["runs"]["nachos_proxy/seed1"]["records"] == note["kept"]
    assert manifest["runs"]["nachos_proxy/seed1"]["search_s"] == pytest.approx(note["clock_s"], abs=0.1)
    run_state.restore(tmp_path / "state", tmp_path / "again")
    back = tmp_path / "again" / "nachos_proxy" / "seed1"
    assert json.loads((back / CUT).read_text()) == note
    assert search_lines(back) == search_lines(runs / "nachos_proxy" / "seed1")

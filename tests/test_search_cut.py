"""Tests of cutting a run folder at a search time (nachos_tf.nas.cut) and of placing records on the clock."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from nachos_tf import results as R
from nachos_tf.errors import RunDirError
from nachos_tf.nas.clock import CLOCK, read_clock, record_search_seconds
from nachos_tf.nas.cut import CUT, cut_run
from nachos_tf.records import CandidateRecord, Metrics

from search_fakes import FAKE_BUDGET, FakeEvaluator, fake_search, middle_cut, search_lines


def _rec(cid: str, time: str) -> CandidateRecord:
    return CandidateRecord({"backbone": {}, "exits": []}, Metrics(error=0.1, expected_macs=1e5), {}, True,
                           seconds=1.0, id=cid, time=time)


SESSIONS = [{"started": "2026-01-01T10:00:00+00:00", "seconds": 100.0},
            {"started": "2026-01-01T12:00:00+00:00", "seconds": 50.0}]


def test_records_are_placed_on_the_clock_by_hand():
    recs = [_rec("c0", "2026-01-01T10:00:30+00:00"), _rec("c1", "2026-01-01T10:01:39+00:00"),
            _rec("c2", "2026-01-01T12:00:05+00:00"), _rec("c3", "2026-01-01T12:00:45+00:00")]
    got = record_search_seconds(recs, SESSIONS)
    assert [k for k, _ in got] == [0, 0, 1, 1]
    assert [t for _, t in got] == pytest.approx([30.0, 99.0, 105.0, 145.0])   # 100 s before session 1
    with pytest.raises(RunDirError, match="before the run's first session"):
        record_search_seconds([_rec("c9", "2026-01-01T09:59:59+00:00")], SESSIONS)
    with pytest.raises(RunDirError, match="no time stamp"):
        record_search_seconds([_rec("c9", "")], SESSIONS)
    with pytest.raises(RunDirError, match="no start time"):
        record_search_seconds(recs, [{"started": "", "seconds": 1.0}])


def test_a_run_cut_and_resumed_with_a_shorter_limit_is_the_shorter_run(tmp_path):
    long = fake_search(tmp_path / "long", evaluator=FakeEvaluator(sleep=0.03), generations=500, max_seconds=3.0)
    whole = search_lines(long.out_dir)
    limit = middle_cut(long.out_dir)
    note = cut_run(long.out_dir, tmp_path / "cut", limit)
    kept = search_lines(tmp_path / "cut")
    # the cut keeps the archive's prefix written before the limit (clock read independently from the stamps)
    stamps = [r for r in R.Archive(long.out_dir / R.ARCHIVE).read()[0] if r["stage"] == R.STAGE_SEARCH]
    sessions = read_clock(long.out_dir)["sessions"]
    t0 = dt.datetime.fromisoformat(sessions[0]["started"])
    before = [r["id"] for r in stamps if (dt.datetime.fromisoformat(r["time"]) - t0).total_seconds() <= limit]
    assert list(kept) == before == list(whole)[:len(before)]
    assert 0 < note["kept"] == len(before) < len(whole) and note["dropped"] == len(whole) - len(before)
    assert note["final_records_dropped"] > 0            # the long run's final stage is not copied
    assert note["clock_s"] <= limit and read_clock(tmp_path / "cut")["seconds"] == pytest.approx(note["clock_s"])
    assert json.loads((tmp_path / "cut" / CUT).read_text()) == note
    assert (tmp_path / "cut" / R.CONFIG).read_bytes() == (long.out_dir / R.CONFIG).read_bytes()
    # resumed with the shorter limit: the same candidates as the long run, stopping at a generation end past it
    again = fake_search(tmp_path / "cut", evaluator=FakeEvaluator(sleep=0.03), generations=500, max_seconds=limit,
                        resume=True)
    after = search_lines(again.out_dir)
    assert list(after)[:len(kept)] == list(kept)
    assert {k: after[k] for k in after} == {k: whole[k] for k in after}       # identical records, same genomes
    # it finishes the generation running at the cut (none, if the cut fell at a generation's end: stamps are to
    # the second, so the kept prefix ends with the last record of a second) and stops before the long run
    assert len(kept) <= len(after) < min(len(kept) + FAKE_BUDGET.population, len(whole))
    assert read_clock(again.out_dir)["seconds"] >= limit
    assert again.final_records and (again.out_dir / "pareto.json").exists()   # the final stage ran again


def test_cutting_refuses_what_it_cannot_do_and_leaves_the_source_alone(tmp_path):
    run = fake_search(tmp_path / "r", evaluator=FakeEvaluator(sleep=0.02), generations=500, max_seconds=1.0).out_dir
    snapshot = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    total = read_clock(run)["seconds"]
    with pytest.raises(RunDirError, match="keep it all"):
        cut_run(run, tmp_path / "a", total + 1)
    for bad in (0, -1.0, float("nan"), True, "10"):
        with pytest.raises(RunDirError, match="> 0"):
            cut_run(run, tmp_path / "a", bad)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(RunDirError, match="not empty"):
        cut_run(run, tmp_path / "full", total / 2)
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(RunDirError, match="not a run folder: it has no config.json"):
        cut_run(tmp_path / "full", tmp_path / "b", 1.0)
    no_clock = tmp_path / "nc"
    no_clock.mkdir()
    for name in (R.CONFIG, R.ARCHIVE):
        (no_clock / name).write_bytes(snapshot[name])
    with pytest.raises(RunDirError, match=CLOCK):
        cut_run(no_clock, tmp_path / "b", 1.0)
    first = min(dt.datetime.fromisoformat(r["time"]) for r in R.Archive(run / R.ARCHIVE).read()[0]
                if r["stage"] == R.STAGE_SEARCH)
    late = {"started": (first - dt.timedelta(hours=1)).isoformat(), "seconds": 4000.0}   # records at ~3600 s
    (no_clock / CLOCK).write_text(json.dumps({"seconds": 4000.0, "sessions": [late]}))
    with pytest.raises(RunDirError, match="no record was written in the first 10 s"):
        cut_run(no_clock, tmp_path / "b", 10.0)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == snapshot
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())

"""Tests of the search clock (nachos_tf.nas.clock): a time-limited search keeps its limit across resumes."""
from __future__ import annotations

import json

import pytest

from nachos_tf import results as R
from nachos_tf.errors import RunDirError
from nachos_tf.nas.clock import CLOCK, SearchClock, archive_search_seconds, read_clock
from nachos_tf.records import CandidateRecord, Metrics

from search_fakes import FAKE_BUDGET, FakeEvaluator, fake_search, search_lines


def _rec(cid: str, time: str, seconds: float) -> CandidateRecord:
    """A search record finished at `time` after `seconds` of evaluation."""
    return CandidateRecord({"backbone": {}, "exits": []}, Metrics(error=0.1, expected_macs=1e5), {}, True,
                           seconds=seconds, id=cid, time=time)


def test_archive_seconds_are_counted_from_the_session_start_by_hand():
    recs = [_rec("c0", "2026-01-01T10:00:30+00:00", 30.0),     # an earlier session: its evaluation seconds
            _rec("c1", "2026-01-01T10:00:50+00:00", 20.0),
            _rec("c2", "2026-01-01T12:00:10+00:00", 10.0),     # the last session began at 12:00:00
            _rec("c3", "2026-01-01T12:01:40+00:00", 90.0)]
    assert archive_search_seconds(recs, "2026-01-01T12:00:00+00:00") == pytest.approx(100.0 + 50.0)
    assert archive_search_seconds(recs, "2026-01-01T12:00:00+00:00", workers=2) == pytest.approx(100.0 + 25.0)
    assert archive_search_seconds([], "2026-01-01T12:00:00+00:00") == 0.0
    assert archive_search_seconds(recs, "") == pytest.approx(150.0)     # no session start known
    with pytest.raises(RunDirError, match="ISO"):
        archive_search_seconds(recs, "noon")


def test_the_clock_adds_earlier_sessions_and_stops_with_the_search(tmp_path):
    t = [100.0]
    clock = SearchClock(tmp_path, [{"started": "2026-01-01T10:00:00+00:00", "seconds": 40.0}], now=lambda: t[0])
    t[0] = 103.0
    clock.tick()                                         # written: the first tick
    t[0] = 104.0
    clock.tick()                                         # not written again within a few seconds
    assert read_clock(tmp_path)["seconds"] == pytest.approx(43.0)
    t[0] = 110.0
    clock.stop()
    t[0] = 500.0                                         # the final stage: not search time
    clock.save()
    doc = read_clock(tmp_path)
    assert doc["seconds"] == pytest.approx(50.0) and clock.seconds == pytest.approx(50.0)
    assert [s["seconds"] for s in doc["sessions"]] == [40.0, 10.0]


@pytest.mark.parametrize("text, match", [("{", "not valid JSON"), ('{"sessions": 3}', "sessions"),
                                         ('{"sessions": [{"started": "2026-01-01", "seconds": -1}]}', "seconds"),
                                         ('{"sessions": [{"started": "dawn", "seconds": 1}]}', "ISO")])
def test_a_bad_clock_file_is_one_clear_error(tmp_path, text, match):
    (tmp_path / CLOCK).write_text(text)
    with pytest.raises(RunDirError, match=match):
        read_clock(tmp_path)


def _n_search(path) -> int:
    return len(search_lines(path))


def test_resuming_a_finished_time_limited_search_searches_no_further(tmp_path):
    kw = dict(generations=500, max_seconds=1.5)
    first = fake_search(tmp_path / "r", evaluator=FakeEvaluator(sleep=0.03), **kw)
    n = _n_search(first.out_dir)
    clock = read_clock(first.out_dir)
    assert clock["seconds"] >= 1.5 and len(clock["sessions"]) == 1
    assert FAKE_BUDGET.population * 2 <= n < 500 * FAKE_BUDGET.population
    before = search_lines(first.out_dir)
    again = fake_search(tmp_path / "r", evaluator=FakeEvaluator(sleep=0.03), resume=True, **kw)
    assert search_lines(again.out_dir) == before          # replayed to where it stopped, nothing new
    clock = read_clock(first.out_dir)
    assert len(clock["sessions"]) == 2 and clock["sessions"][1]["seconds"] < 1.0


def test_an_interrupted_time_limited_search_gets_only_the_time_left(tmp_path):
    kw = dict(generations=500, max_seconds=3.0)
    whole = _n_search(fake_search(tmp_path / "whole", evaluator=FakeEvaluator(sleep=0.03), **kw).out_dir)
    cut = whole // 2
    with pytest.raises(KeyboardInterrupt):
        fake_search(tmp_path / "r", evaluator=FakeEvaluator(sleep=0.03, interrupt_at=cut), **kw)
    spent = read_clock(tmp_path / "r")["seconds"]
    assert 0.3 < spent < 3.0
    fake_search(tmp_path / "r", evaluator=FakeEvaluator(sleep=0.03), resume=True, **kw)
    total = _n_search(tmp_path / "r")
    # within two generations of an uninterrupted run; the old behaviour (the whole limit again after the
    # replay) gives about cut + whole candidates
    pop = FAKE_BUDGET.population
    assert total <= whole + 2 * pop < whole + cut, (whole, cut, total)
    assert read_clock(tmp_path / "r")["seconds"] >= 3.0
    cfg = json.loads((tmp_path / "r" / R.CONFIG).read_text())
    assert cfg["resumed"] is True


def test_a_run_folder_without_a_clock_resumes_from_the_archive_times(tmp_path):
    kw = dict(generations=500, max_seconds=1.0)
    first = fake_search(tmp_path / "r", evaluator=FakeEvaluator(sleep=0.03), **kw)
    before = search_lines(first.out_dir)
    cfg = json.loads((first.out_dir / R.CONFIG).read_text())
    cfg["started"] = "2000-01-01T00:00:00+00:00"          # a session that began long ago: its time is spent
    (first.out_dir / R.CONFIG).write_text(json.dumps(cfg))
    (first.out_dir / CLOCK).unlink()
    fake_search(tmp_path / "r", evaluator=FakeEvaluator(sleep=0.03), resume=True, **kw)
    assert search_lines(first.out_dir) == before
    first_session = read_clock(first.out_dir)["sessions"][0]
    assert first_session["from"] == "archive time stamps" and first_session["seconds"] > 1e8

"""A run folder cut at a search time: what a shorter time limit would have searched, ready to be resumed.

The algorithm's next generation depends only on the candidates evaluated before it, so the records a run wrote
in its first T seconds of search are the ones a run with a time limit of T would have written up to then.
`cut_run` copies a run folder's settings and those records into a new folder whose clock stands at the last
kept record. Resumed with the limit T (``search(..., resume=True, max_seconds=T)``), it replays them at no cost,
evaluates the rest of the generation that was running at T (and further generations while its clock is below
T), then runs the final stage: the run that limit would have given, except that the few candidates between the
cut and that generation's end are evaluated again. The benchmarks use it to give a finished run a shorter
limit after the fact (`benchmarks/cut_run.py`).
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Union

from ..errors import RunDirError
from ..records import CandidateRecord, utc_now
from ..results import ARCHIVE, CONFIG, Archive, read_json, write_json
from .clock import CLOCK, read_clock, record_search_seconds
from .settings import RunSpec

__all__ = ["CUT", "cut_run"]

CUT = "cut.json"


def cut_run(run_dir: Union[str, os.PathLike], out_dir: Union[str, os.PathLike],
            max_seconds: float) -> Dict[str, Any]:
    """Copy a run folder into `out_dir`, keeping only the search records written in its first `max_seconds`.

    Args:
        run_dir: a run folder with ``config.json``, ``archive.jsonl`` and ``search_clock.json`` (finished or not).
        out_dir: the new folder (absent or empty); it receives ``config.json``, the cut archive, a clock
            file that sums to the last kept record's search time, and ``cut.json`` saying what was cut.
        max_seconds: the search time to cut at (> 0, below the run's own search seconds).

    Returns:
        What ``cut.json`` holds: ``source``, ``cut_at_s``, ``clock_s`` (the new clock), ``kept`` and
        ``dropped`` (search records), ``final_records_dropped``, ``source_search_s``, ``written``.

    Raises:
        RunDirError: `run_dir` is not a readable run folder or has no clock file, `out_dir` is not empty,
            `max_seconds` is not a number > 0 below the run's search time, or no record falls before it.
    """
    src, dst = Path(run_dir), Path(out_dir)
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not math.isfinite(max_seconds) \
            or max_seconds <= 0:
        raise RunDirError(f"the cut must be a number of seconds > 0 (got {max_seconds!r:.40})")
    for name in (CONFIG, ARCHIVE):
        if not (src / name).is_file():
            raise RunDirError(f"{src} is not a run folder: it has no {name}")
    RunSpec.from_dict(read_json(src / CONFIG, "the settings of the run to cut"), str(src / CONFIG))
    clock = read_clock(src)
    if clock is None:
        raise RunDirError(f"{src} has no {CLOCK}: its records cannot be placed on the search clock")
    if max_seconds >= clock["seconds"]:
        raise RunDirError(f"{src} searched {clock['seconds']:.1f} s; a cut at {max_seconds:g} s would keep it all")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise RunDirError(f"{dst} is not empty; cut into a new folder")
    records = Archive(src / ARCHIVE).records()
    search = [r for r in records if isinstance(r, CandidateRecord)]
    at = record_search_seconds(search, clock["sessions"])
    kept = []                                        # the archive's prefix written before the cut
    for r, (k, t) in zip(search, at):
        if t > max_seconds:
            break
        kept.append((r, k, t))
    if not kept:
        raise RunDirError(f"{src}: no record was written in the first {max_seconds:g} s of search")
    _, k, last = kept[-1]                            # the sessions up to the one the last kept record is in
    sessions = [dict(s) for s in clock["sessions"][:k + 1]]
    sessions[-1]["seconds"] = round(last - sum(float(s["seconds"]) for s in sessions[:-1]), 3)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / CONFIG, dst / CONFIG)
    archive = Archive(dst / ARCHIVE)
    for r, _, _ in kept:
        archive.append(r)
    write_json(dst / CLOCK, {"seconds": round(sum(float(s["seconds"]) for s in sessions), 3), "sessions": sessions})
    note = {"source": str(src), "cut_at_s": float(max_seconds), "clock_s": round(last, 3), "kept": len(kept),
            "dropped": len(search) - len(kept), "final_records_dropped": len(records) - len(search),
            "source_search_s": round(float(clock["seconds"]), 3), "written": utc_now()}
    write_json(dst / CUT, note)
    return note

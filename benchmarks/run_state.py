"""Carry unfinished benchmark search runs from one checkout to the next (issue 12, deliverable 5).

A `compare.py` run of the proxy methods searches for 3.1 h, longer than a session here, and each session
starts from a fresh clone: the ``runs/`` folder of the last one is gone, and with it what ``--resume`` would
continue. A run folder's resumable state is three small JSON files (``config.json``, ``archive.jsonl``,
``search_clock.json``; `nt.search(..., resume=True)` replays the archive and the clock keeps the search time
already spent; a run cut at a search time, `nachos_tf.nas.cut`, also has ``cut.json``), so this script copies
them into the checkout, where they can be committed, and back:

    .venv/bin/python benchmarks/run_state.py save runs/compare_rs benchmarks/state/compare_rs      # end of a session
    .venv/bin/python benchmarks/run_state.py restore benchmarks/state/compare_rs runs/compare_rs   # next session

``save`` takes every run folder under the runs folder that has an ``archive.jsonl`` and no ``pareto.json`` (a
finished run's figures are in the benchmark's result JSON; a saved run that has finished since is dropped from
the state folder), checks each file (the archive record by record,
the clock's sessions), drops a truncated last archive line, and writes ``state.json``: per run, the records,
the search seconds spent and where it was saved from. ``restore`` checks the same and copies each run back,
refusing to overwrite a run folder that is already there (it may hold newer work). Nothing else of a run
folder is carried: model files are written only by the final stage, after the search.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))   # benchmarks/_common (puts the checkout on sys.path)

from _common import git_state, utc_now, write_json  # noqa: E402

from nachos_tf.errors import RunDirError  # noqa: E402
from nachos_tf.nas.clock import CLOCK, read_clock  # noqa: E402
from nachos_tf.nas.cut import CUT  # noqa: E402
from nachos_tf.results import Archive, read_json  # noqa: E402

STATE = "state.json"
CONFIG, ARCHIVE, PARETO = "config.json", "archive.jsonl", "pareto.json"


def _check_run(d: Path) -> Dict[str, Any]:
    """Validate one run folder's resumable state; its summary for state.json (RunDirError if it is bad)."""
    config = read_json(d / CONFIG, "the run's settings")
    if not isinstance(config, dict) or not isinstance(config.get("seed"), int):
        raise RunDirError(f"{d / CONFIG}: not a run's config (no integer 'seed')")
    records = Archive(d / ARCHIVE).records()
    clock = read_clock(d)
    return {"records": len(records), "search_s": round(clock["seconds"], 1) if clock else None,
            "sessions": len(clock["sessions"]) if clock else 0}


def unfinished_runs(runs_dir: Path) -> List[Path]:
    """Run folders under `runs_dir` (at any depth: an archive.jsonl) without a pareto.json, sorted."""
    return sorted(p.parent for p in Path(runs_dir).rglob(ARCHIVE) if not (p.parent / PARETO).exists())


def read_manifest(state_dir: Path) -> Dict[str, Any]:
    """``state_dir/state.json``, checked: ``{"runs": {relative path: summary}}``, no path leaving the folder.

    Args:
        state_dir: a folder written by `save`.

    Returns:
        The manifest (``{"runs": {}}`` when there is none yet).

    Raises:
        RunDirError: the file is not valid JSON or not such a manifest.
    """
    path = Path(state_dir) / STATE
    if not path.exists():
        return {"runs": {}}
    manifest = read_json(path, "written by run_state.py save")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), dict):
        raise RunDirError(f"{path}: not a run-state manifest (an object with a 'runs' object)")
    for rel, info in manifest["runs"].items():
        if not rel or ".." in Path(rel).parts or Path(rel).is_absolute():
            raise RunDirError(f"{path}: run path {rel!r} leaves the state folder")
        n = info.get("records") if isinstance(info, dict) else None
        if isinstance(n, bool) or not isinstance(n, int):
            raise RunDirError(f"{path}: run {rel!r} has no integer 'records'")
    return manifest


def save(runs_dir: Path, state_dir: Path) -> Dict[str, Any]:
    """Copy the resumable state of every unfinished run under `runs_dir` into `state_dir`.

    Args:
        runs_dir: the benchmark's runs folder (``--runs-dir``).
        state_dir: where the copies go (replaced run by run; other runs there are kept, but a saved run that
            has finished in `runs_dir` since is dropped).

    Returns:
        The state manifest written to ``state_dir/state.json``.

    Raises:
        RunDirError: a run folder's files do not validate, or `runs_dir` holds no run folder.
    """
    runs_dir, state_dir = Path(runs_dir), Path(state_dir)
    if not any(runs_dir.rglob(ARCHIVE)):
        raise RunDirError(f"{runs_dir}: no run folder (archive.jsonl) in it")
    runs = unfinished_runs(runs_dir)
    manifest = read_manifest(state_dir)
    commit = git_state().get("commit") if runs else None
    for d in runs:
        info = _check_run(d)
        rel = d.relative_to(runs_dir).as_posix()
        dst = state_dir / rel
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy2(d / CONFIG, dst / CONFIG)
        end = Archive(d / ARCHIVE).read()[1]         # the valid part only: no truncated last line
        (dst / ARCHIVE).write_bytes((d / ARCHIVE).read_bytes()[:end])
        for name in (CLOCK, CUT):                   # a run cut at a search time (cut_run) keeps its note
            if (d / name).exists():
                shutil.copy2(d / name, dst / name)
            elif (dst / name).exists():
                (dst / name).unlink()
        manifest["runs"][rel] = dict(info, saved=utc_now(), commit=commit)
    for rel in [r for r in manifest["runs"] if (runs_dir / r / PARETO).exists()]:
        del manifest["runs"][rel]                   # finished since it was saved: its figures are in the results
        shutil.rmtree(state_dir / rel, ignore_errors=True)
        parent = (state_dir / rel).parent
        while parent != state_dir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()                          # and the method folder it leaves empty
            parent = parent.parent
    write_json(state_dir / STATE, manifest)
    return manifest


def restore(state_dir: Path, runs_dir: Path) -> List[str]:
    """Copy every run saved in `state_dir` back under `runs_dir`, after checking it.

    Args:
        state_dir: a folder written by `save`.
        runs_dir: the benchmark's runs folder.

    Returns:
        The restored runs (paths relative to both folders).

    Raises:
        RunDirError: the manifest or a saved run does not validate, or a run folder is already in `runs_dir`.
    """
    state_dir, runs_dir = Path(state_dir), Path(runs_dir)
    if not (state_dir / STATE).exists():
        raise RunDirError(f"{state_dir / STATE} is missing (written by run_state.py save)")
    manifest = read_manifest(state_dir)
    rels = sorted(manifest["runs"])
    if not rels:
        raise RunDirError(f"{state_dir / STATE}: no saved run")
    for rel in rels:
        src = state_dir / rel
        if _check_run(src)["records"] != manifest["runs"][rel]["records"]:
            raise RunDirError(f"{src / ARCHIVE}: its record count differs from {STATE}'s")
        if (runs_dir / rel / CONFIG).exists():
            raise RunDirError(f"{runs_dir / rel} already holds a run; move it away to restore the saved one")
    for rel in rels:
        (runs_dir / rel).mkdir(parents=True, exist_ok=True)
        for name in (CONFIG, ARCHIVE, CLOCK, CUT):
            if (state_dir / rel / name).exists():
                shutil.copy2(state_dir / rel / name, runs_dir / rel / name)
    return rels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save", help="copy unfinished runs' JSON state into the checkout")
    s.add_argument("runs_dir", type=Path)
    s.add_argument("state_dir", type=Path)
    r = sub.add_parser("restore", help="copy saved runs back into a runs folder")
    r.add_argument("state_dir", type=Path)
    r.add_argument("runs_dir", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "save":
            runs = save(a.runs_dir, a.state_dir)["runs"]
            for rel, info in sorted(runs.items()):
                print(f"{rel}: {info['records']} records, {info['search_s']} s of search, saved {info['saved']}")
        else:
            for rel in restore(a.state_dir, a.runs_dir):
                print(f"restored {a.runs_dir / rel}")
    except (RunDirError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

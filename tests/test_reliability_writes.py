"""Issue 14, items 2 and 10: nothing already written is lost, every failed write is one line naming the file.

The faults are real: RLIMIT_FSIZE makes the kernel refuse a write in the middle of a file (what a full disk
does), permission bits are enforced by running the block as `nobody`, /dev/full answers ENOSPC, and two
processes really write the same file at once.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from fsfaults import file_size_limit, open_tmp_dir, unprivileged
from nachos_tf import fsio
from nachos_tf.errors import NachosError, WriteError

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run_v0"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if fsio.STAGING_MARK in p.name or p.name.endswith(".tmp"))


# ------------------------------------------------------------------ atomic writes under real faults

@pytest.mark.parametrize("writer", ["fsio", "results.write_json"])
def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path, writer):
    from nachos_tf import results

    path = tmp_path / "pareto.json"
    old = {"solutions": ["x" * 1000] * 40}                 # ~40 kB
    path.write_text(json.dumps(old))
    before = path.read_bytes()
    new = {"solutions": ["y" * 1000] * 200}                # ~200 kB: cut at 64 kB by the kernel
    write = fsio.atomic_write_json if writer == "fsio" else results.write_json
    with file_size_limit(64 << 10):
        with pytest.raises(WriteError) as e:
            write(path, new)
    msg = str(e.value)
    assert msg.startswith("cannot write ") and str(path) in msg and "\n" not in msg
    assert path.read_bytes() == before                     # the old file, whole
    assert _leftovers(tmp_path) == []                      # the cut temporary file was removed
    write(path, new)                                       # and without the limit the new one lands
    assert json.loads(path.read_text()) == new


def test_failed_report_keeps_every_plot_whole(tmp_path):
    """The issue's case: `report` on a full disk cut pareto.png from 55 kB to 16 kB and printed a traceback."""
    from nachos_tf.cli import main

    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    runner = CliRunner()
    res = runner.invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    sizes = {n: (run / n).stat().st_size for n in ("pareto.png", "exit_rates.png", "report.md")}
    assert sizes["pareto.png"] > 16 << 10
    digests = {n: _sha(run / n) for n in sizes}
    with file_size_limit(16 << 10):
        res = runner.invoke(main, ["report", str(run)])
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write ") and ".png" in lines[0], res.output
    assert "Traceback" not in res.output
    assert {n: _sha(run / n) for n in sizes} == digests
    assert _leftovers(run) == []


def _hammer(path: str, tag: int, n: int, q) -> None:
    from nachos_tf import results

    try:
        for i in range(n):
            results.write_json(path, {"writer": tag, "i": i, "pad": "z" * 4000})
        q.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        q.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_writing_one_file_never_collide(tmp_path):
    """Unique temporary names per process: the search's `config.json.tmp` crashed the second of two writers."""
    path = tmp_path / "config.json"
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(path), t, 300, q)) for t in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(q.get(timeout=5) for _ in procs) == ["ok", "ok"]
    doc = json.loads(path.read_text())                     # a whole file from one writer
    assert doc["writer"] in (1, 2) and doc["i"] == 299
    assert _leftovers(tmp_path) == []


def test_dev_full_and_devices_are_written_in_place_never_replaced(tmp_path):
    with pytest.raises(WriteError, match=r"^cannot write /dev/full: No space left on device$"):
        fsio.atomic_write_json("/dev/full", {"a": 1})
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)    # still the device, not a regular file
    fsio.atomic_write_text("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fsio.ensure_writable("/dev/full")                     # opening it works; the write is what fails


def test_symlinks_and_permissions_are_kept(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("{}")
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    fsio.atomic_write_json(link, {"v": 2})
    assert link.is_symlink() and json.loads(target.read_text()) == {"v": 2}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    fresh = fsio.atomic_write_text(tmp_path / "new.md", "hello")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~fsio._umask()


# ------------------------------------------------------------------ checked before long work

def test_ensure_writable_says_why_in_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(WriteError, match=r"cannot create folder .*afile/deploy: .*afile is not a folder"):
        fsio.ensure_writable(afile / "deploy", folder=True)
    with pytest.raises(WriteError, match=r"cannot write .*afile/x\.json: .*afile is not a folder"):
        fsio.ensure_writable(afile / "x.json")
    with pytest.raises(WriteError, match=r"folder .*nowhere does not exist"):
        fsio.ensure_writable(tmp_path / "nowhere" / "x.json")
    with pytest.raises(WriteError, match=r"cannot create folder /sys/nachos_tf_probe"):
        fsio.ensure_writable("/sys/nachos_tf_probe", folder=True)
    with pytest.raises(WriteError, match="it is a folder"):
        fsio.ensure_writable(tmp_path)
    deep = tmp_path / "a" / "b" / "c"
    assert fsio.ensure_writable(deep, folder=True) == deep
    assert not (tmp_path / "a").exists() and _leftovers(tmp_path) == []     # the probe leaves nothing


def test_read_only_folder_is_refused_before_work():
    with open_tmp_dir() as d:
        ro = d / "ro"
        ro.mkdir()
        (ro / "keep.txt").write_text("mine")
        os.chmod(ro, 0o555)
        with unprivileged():
            with pytest.raises(WriteError, match=r"cannot write in .*ro: Permission denied"):
                fsio.ensure_writable(ro, folder=True)
            with pytest.raises(WriteError, match=r"cannot write .*ro/keep\.txt: Permission denied"):
                fsio.atomic_write_text(ro / "keep.txt", "lost?")
        assert (ro / "keep.txt").read_text() == "mine"


def test_report_on_a_read_only_run_folder_is_one_line():
    from nachos_tf.cli import main

    with open_tmp_dir() as d:
        run = d / "run"
        shutil.copytree(FIXTURE_RUN, run)
        for p in [run, *run.rglob("*")]:
            os.chmod(p, 0o555 if p.is_dir() else 0o444)
        digests = {p.name: _sha(p) for p in run.iterdir() if p.is_file()}
        with unprivileged():
            res = CliRunner().invoke(main, ["report", str(run)])
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0] == f"error: cannot write in {run}: Permission denied", res.output
        assert {p.name: _sha(p) for p in run.iterdir() if p.is_file()} == digests


# ------------------------------------------------------------------ whole folders: staged, then published

def test_publish_replaces_an_export_file_by_file_and_keeps_foreign_files(tmp_path):
    dest = tmp_path / "deploy"
    dest.mkdir()
    for name, text in (("stage0.tflite", "old0"), ("stage2.tflite", "old2"), ("manifest.json", "old"),
                       ("evaluate.json", "user's figures")):
        (dest / name).write_text(text)
    with fsio.staging_dir(dest) as tmp:
        assert tmp.parent == dest and fsio.STAGING_MARK in tmp.name
        for name, text in (("stage0.tflite", "new0"), ("stage1.tflite", "new1"), ("manifest.json", "new")):
            (tmp / name).write_text(text)
        order = fsio.publish_dir(tmp, dest, last=["manifest.json"],
                                 remove=["stage0.tflite", "stage2.tflite", "manifest.json"])
    assert order[-1] == "manifest.json"
    assert sorted(p.name for p in dest.iterdir()) == ["evaluate.json", "manifest.json", "stage0.tflite",
                                                      "stage1.tflite"]
    assert (dest / "stage0.tflite").read_text() == "new0" and (dest / "evaluate.json").read_text() == "user's figures"
    # a new folder arrives in one rename, with ordinary permissions (not the staging folder's 0700)
    new = tmp_path / "fresh"
    with fsio.staging_dir(new) as tmp:
        (tmp / "a.txt").write_text("a")
        fsio.publish_dir(tmp, new)
    assert (new / "a.txt").read_text() == "a"
    assert stat.S_IMODE(new.stat().st_mode) == 0o777 & ~fsio._umask()
    assert _leftovers(tmp_path) == [] and _leftovers(dest) == []


def test_a_failure_while_staging_leaves_the_destination_untouched(tmp_path):
    dest = tmp_path / "deploy"
    dest.mkdir()
    (dest / "stage0.tflite").write_bytes(b"old" * 1000)
    before = _sha(dest / "stage0.tflite")
    with pytest.raises(WriteError):
        with fsio.staging_dir(dest) as tmp:
            with file_size_limit(4 << 10):
                fsio.atomic_write_bytes(tmp / "stage0.tflite", b"n" * (64 << 10))
            fsio.publish_dir(tmp, dest)                    # never reached
    assert _sha(dest / "stage0.tflite") == before and _leftovers(dest) == []


def test_paths_read_from_files_stay_inside_their_folder(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ok.keras").write_text("x")
    assert fsio.resolve_inside(tmp_path, "models/ok.keras") == (tmp_path / "models" / "ok.keras").resolve()
    (tmp_path / "models" / "evil.keras").symlink_to("/etc/passwd")
    for bad, why in (("../../../etc/passwd", "leads outside"), ("/etc/passwd", "absolute"),
                     ("models/evil.keras", "leads outside"), ("", "non-empty"), ("a\x00b", "non-empty"),
                     (["models/ok.keras"], "non-empty")):
        with pytest.raises(ValueError, match=why):
            fsio.resolve_inside(tmp_path, bad, "model path")


def test_write_error_is_a_typed_one_line_error():
    assert issubclass(WriteError, NachosError) and issubclass(WriteError, OSError)


def test_atomic_path_for_writers_that_need_a_file_name(tmp_path):
    import keras

    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2, name="final")(inp))
    target = tmp_path / "c0001.keras"
    target.write_bytes(b"the earlier model")
    with pytest.raises(RuntimeError):
        with fsio.atomic_path(target) as tmp:
            assert tmp.suffix == ".keras" and tmp.parent == tmp_path
            model.save(tmp)
            raise RuntimeError("killed half-way")
    assert target.read_bytes() == b"the earlier model" and _leftovers(tmp_path) == []
    with fsio.atomic_path(target) as tmp:
        model.save(tmp)
    assert keras.models.load_model(target).output_names == ["final"] and _leftovers(tmp_path) == []

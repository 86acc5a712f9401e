"""Issue 14 on the deployment side: export folders are never overwritten by mistake (1), paths and names read from
files stay inside their folder (11, 12), `evaluate` refuses data the export was not made for (13, 14), failed
writes are one line (10), and `export` prints readable figures (19).

A tiny real export (converted with the TFLite converter, run on TFLM) serves the evaluate tests; the run folder is
the committed fixture tests/fixtures/run_v0. The refusals all happen before any conversion, so they are fast.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")
pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

from nachos_tf.cli import main  # noqa: E402
from nachos_tf.errors import ExportError, RunDirError  # noqa: E402
from tflite_export import validate  # noqa: E402
from tflite_export.from_run import export_solution, manifest_summary  # noqa: E402
from tflite_export.tflm import load_export  # noqa: E402

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "run_v0"
CLASSES = 3


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _one_line_error(res, *needles):
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    err = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(err) == 1, res.output
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def _npz(path: Path, shape, classes: int, n: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    np.savez(path, x_train=rng.integers(0, 256, (n,) + shape).astype(np.uint8), y_train=y,
             x_test=rng.integers(0, 256, (n,) + shape).astype(np.uint8), y_test=y)
    return path


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A real 2-stage int8 export of an 8x8x1, 3-class EENN (arenas not measured, no Cortex-M build)."""
    from tflite_export import export_eenn

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Rescaling(1 / 255.0)(inp)
    x = L.Conv2D(4, 3, strides=2, padding="same", name="c1")(x)
    x = L.Identity(name="exit_0_point")(x)
    e0 = L.Dense(CLASSES, name="exit_0")(L.GlobalAveragePooling2D()(x))
    x = L.Conv2D(4, 3, padding="same", name="c2")(x)
    fin = L.Dense(CLASSES, name="final")(L.GlobalAveragePooling2D()(x))
    rep = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1)).astype(np.float32)
    out = tmp_path_factory.mktemp("tiny") / "deploy"
    export_eenn(keras.Model(inp, [e0, fin]), out, rep, "max_softmax", [0.6], None, num_samples=16,
                cortex_m4=False, measure_arena=False)
    return out


@pytest.fixture()
def run(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, d)
    return d


def _set_model_path(run: Path, value) -> None:
    p = json.loads((run / "pareto.json").read_text())
    p["solutions"][0]["model"] = value
    (run / "pareto.json").write_text(json.dumps(p))


# ------------------------------------------------------------------ 13, 14: evaluate checks data against the manifest

def test_evaluate_refuses_images_of_another_shape(tiny_export, tmp_path):
    bad = _npz(tmp_path / "cifar_like.npz", (32, 32, 3), CLASSES)
    res = CliRunner().invoke(main, ["evaluate", str(tiny_export), "--dataset", "npz", "--data-path", str(bad)])
    _one_line_error(res, "shape 32x32x3", "takes 8x8x1")


def test_evaluate_refuses_another_number_of_classes(tiny_export, tmp_path):
    """12-class data on a 10-class export reported accuracy 0.083; here 5 classes on a 3-class export."""
    bad = _npz(tmp_path / "five.npz", (8, 8, 1), 5, n=20)
    res = CliRunner().invoke(main, ["evaluate", str(tiny_export), "--dataset", "npz", "--data-path", str(bad)])
    _one_line_error(res, "has 5 classes", "classifies 3")
    manifest, _ = load_export(tiny_export)
    with pytest.raises(ExportError, match="label 7, outside the export's classes 0..2"):
        validate.check_data_fits(manifest, (8, 8, 1), CLASSES, labels=np.array([0, 7]))


def test_evaluate_json_to_a_full_device_is_one_line(tiny_export, tmp_path):
    good = _npz(tmp_path / "good.npz", (8, 8, 1), CLASSES)
    args = ["evaluate", str(tiny_export), "--dataset", "npz", "--data-path", str(good), "--limit", "4"]
    res = CliRunner().invoke(main, args + ["--json", "/dev/full"])
    _one_line_error(res, "cannot write /dev/full: No space left on device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    res = CliRunner().invoke(main, args + ["--json", str(tmp_path / "good.npz" / "r.json")])   # under a file
    _one_line_error(res, "cannot write", "good.npz is not a folder")
    res = CliRunner().invoke(main, args + ["--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 4


# ------------------------------------------------------------------ 12: names in a manifest

@pytest.mark.parametrize("field, value", [
    ("tflite", "stage\x000.tflite"), ("tflite", "../stage0.tflite"), ("tflite", "sub/stage0.tflite"),
    ("tflite", "..\\stage0.tflite"), ("tflite", ".."), ("tflite", "/etc/passwd"), ("tflite", ""),
    ("tflite", 7), ("symbol", "x;system(\"rm\")"), ("symbol", "a\x00b"),
])
def test_manifest_names_that_leave_the_folder_are_refused(tiny_export, tmp_path, field, value):
    d = tmp_path / "deploy"
    shutil.copytree(tiny_export, d)
    m = json.loads((d / "manifest.json").read_text())
    m["stages"][0][field] = value
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ExportError, match=rf"manifest\.json: stages\[0\]\.{field} .* (file name|C identifier)"):
        load_export(d)
    res = CliRunner().invoke(main, ["evaluate", str(d), "--dataset", "npz", "--data-path", str(tmp_path / "x.npz")])
    _one_line_error(res, "manifest.json", f"stages[0].{field}")


# ------------------------------------------------------------------ 1: export --out never overwrites what it did not write

def test_export_refuses_a_folder_that_is_not_an_earlier_export(run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "manifest.json").write_text('{"my": "own manifest"}')
    before = {p.name: _sha(p) for p in out.iterdir()}
    res = CliRunner().invoke(main, ["export", str(run), "--solution", "c0001", "--out", str(out)])
    _one_line_error(res, str(out), "not a nachos-tf export manifest")
    (out / "manifest.json").unlink()
    res = CliRunner().invoke(main, ["export", str(run), "--solution", "c0001", "--out", str(out)])
    _one_line_error(res, "not empty (README.md)", "not an earlier export")
    (out / "manifest.json").write_text(json.dumps({"format": "nachos-tf staged EENN", "solution": "c0042"}))
    res = CliRunner().invoke(main, ["export", str(run), "--solution", "c0001", "--out", str(out)])
    _one_line_error(res, "holds the export of solution 'c0042', not 'c0001'")
    (out / "manifest.json").write_text(json.dumps({"format": "nachos-tf staged EENN", "solution": "c0001",
                                                   "source": {"model_sha256": "0" * 64}}))
    res = CliRunner().invoke(main, ["export", str(run), "--solution", "c0001", "--out", str(out)])
    _one_line_error(res, "another model named 'c0001'")
    res = CliRunner().invoke(main, ["export", str(run), "--solution", "c0001", "--out", str(run)])  # the run itself
    _one_line_error(res, "not an earlier export")
    assert (out / "README.md").read_text() == "my notes"
    assert before["README.md"] == _sha(out / "README.md")


def test_an_earlier_export_of_the_same_solution_may_be_replaced(tiny_export, tmp_path):
    d = tmp_path / "deploy"
    shutil.copytree(tiny_export, d)
    m = json.loads((d / "manifest.json").read_text())
    m.update(solution="c0001", source={"solution": "c0001", "model_sha256": "ab" * 32})
    (d / "manifest.json").write_text(json.dumps(m))
    (d / "evaluate.json").write_text("{}")                     # the user's own file stays
    files = validate.check_export_target(d, "c0001", "ab" * 32)
    assert "stage0.tflite" in files and "manifest.json" in files and "evaluate.json" not in files
    assert validate.check_export_target(d, "c0001", None) == files       # an export from before the hash
    assert validate.check_export_target(tmp_path / "new", "c0001") == []
    (tmp_path / "empty").mkdir()
    assert validate.check_export_target(tmp_path / "empty", "c0001") == []


# ------------------------------------------------------------------ 10: export --out where nothing can be written

def test_export_out_under_a_file_or_in_sys_is_refused_before_any_work(run, tmp_path):
    (tmp_path / "afile").write_text("x")
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "afile" / "deploy")])
    _one_line_error(res, "cannot create folder", "afile is not a folder")
    res = CliRunner().invoke(main, ["export", str(run), "--out", "/sys/nachos_tf_deploy"])
    _one_line_error(res, "cannot create folder /sys/nachos_tf_deploy")
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "afile")])
    _one_line_error(res, "afile")
    assert not os.path.exists("/sys/nachos_tf_deploy")


# ------------------------------------------------------------------ 11: model paths and unsafe models of a run folder

@pytest.mark.parametrize("path, why", [("../../../etc/passwd", "leads outside"), ("/etc/passwd", "is absolute"),
                                       ("models/link.keras", "leads outside")])
def test_export_refuses_model_paths_outside_the_run_before_loading(run, tmp_path, path, why):
    (run / "models" / "link.keras").symlink_to("/etc/passwd")
    _set_model_path(run, path)
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "d")])
    _one_line_error(res, "pareto.json", why)
    assert not (tmp_path / "d").exists()
    from nachos_tf.results import load_run

    sol = load_run(run).admissible[0]
    with pytest.raises(RunDirError, match=why):
        sol.model


def test_export_of_a_model_with_a_lambda_layer_is_one_line(run, tmp_path):
    inp = keras.Input((28, 28, 1))
    out = keras.layers.Dense(10, name="final")(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2)(inp)))
    keras.Model(inp, out).save(run / "models" / "c0001.keras")
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "d")])
    _one_line_error(res, "c0001.keras", "Lambda layer", "safe mode")
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------ 19: what export prints

def test_export_summary_prints_thresholds_with_4_digits_and_a_readable_cortex_m_line():
    m = {"stages": [{"tflite": "stage0.tflite", "bytes": 55032, "arena_bytes": 18736, "macs": 509888,
                     "threshold": 0.7370249032974243},
                    {"tflite": "stage1.tflite", "bytes": 211104, "arena_bytes": 43104, "macs": 1025452,
                     "threshold": None}],
         "cortex_m4": {"flags": "-mcpu=cortex-m4 -Os", "model_data": {"text": 376920, "data": 0, "bss": 0},
                       "decision": {"text": 248, "data": 0, "bss": 0}, "compiler": "arm-none-eabi-g++ 12.2.1"}}
    text = manifest_summary(m)
    import re

    assert re.search(r"\b0\.737$", text.splitlines()[1]) and "0.7370249" not in text
    m4 = text.splitlines()[-1]
    assert m4.startswith("Cortex-M4 build") and "model data 376,920 B text" in m4 and "decision 248 B text" in m4
    assert "{" not in text and "'" not in text


# ------------------------------------------------------------------ the whole road, slow: export twice into one folder

@pytest.mark.slow
def test_reexport_into_an_earlier_export_keeps_user_files_and_is_atomic(run, tmp_path):
    out = tmp_path / "deploy"
    res = CliRunner().invoke(main, ["export", str(run), "--solution", "c0001", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(out.stat().st_mode) & 0o055 == 0o055          # not the staging folder's 0700
    (out / "evaluate.json").write_text('{"mine": true}')
    first = {p.name: _sha(p) for p in out.iterdir()}
    man = export_solution(run, "c0001", out)            # the same solution again: accepted
    assert man["solution"] == "c0001" and len(man["source"]["model_sha256"]) == 64
    assert (out / "evaluate.json").read_text() == '{"mine": true}'
    assert {p.name: _sha(p) for p in out.iterdir() if p.suffix == ".tflite"} == \
        {k: v for k, v in first.items() if k.endswith(".tflite")}          # deterministic conversion
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_malformed_thresholds_in_pareto_json_are_one_line(run, tmp_path):
    """`"thresholds": "abc"` said "could not convert string to float: 'a'"."""
    p = json.loads((run / "pareto.json").read_text())
    p["solutions"][0]["thresholds"] = "abc"
    (run / "pareto.json").write_text(json.dumps(p))
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "d")])
    _one_line_error(res, "pareto.json", "thresholds must be a list", "'abc'")


# ------------------------------------------------------------------ stages that never run

def test_export_leaves_out_the_stages_after_an_exit_every_image_stops_at_unless_asked(run, tmp_path):
    """The fixture's solution has threshold -inf at exit 2: its final stage never runs, so `export` leaves it out
    and says so; `--all-stages` keeps it (to try other thresholds on the device)."""
    sol = json.loads((run / "pareto.json").read_text())["solutions"][0]
    assert sol["thresholds"][2] == "-inf" and len(sol["exit_macs"]) == 4
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "cut")])
    assert res.exit_code == 0, res.output
    assert "not exported: final" in res.output
    cut = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert [st["exit"] for st in cut["stages"]] == ["exit_0", "exit_1", "exit_2"]
    assert cut["exits_not_exported"] == ["final"] and not (tmp_path / "cut" / "stage3.tflite").exists()
    res = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "all"), "--all-stages"])
    assert res.exit_code == 0, res.output
    every = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert len(every["stages"]) == 4 and every["exits_not_exported"] == [] and "not exported" not in res.output
    assert [st["bytes"] for st in every["stages"][:2]] == [st["bytes"] for st in cut["stages"][:2]]

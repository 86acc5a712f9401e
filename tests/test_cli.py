"""CLI: thin commands; every bad input is one clear line on stderr and a non-zero exit, no traceback."""
import json

import keras
import pytest
from click.testing import CliRunner

from nachos_tf.cli import main
from nachos_tf.macs import profile_macs


@pytest.fixture()
def runner():
    return CliRunner()


def _one_line_error(result, *needles):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    text = result.output.strip()
    for n in needles:
        assert n in text, text
    return text


def test_profile_prints_table_and_json_that_match_the_library(runner, tmp_path):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="valid", name="c")(inp)   # 3x3 out, 1*9*4 per pixel
    out = keras.layers.Dense(3, name="d")(keras.layers.Flatten()(x))           # 36 inputs x 3
    model = keras.Model(inp, out)
    path = tmp_path / "m.keras"
    model.save(path)
    res = runner.invoke(main, ["profile", str(path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["total"] == 3 * 3 * 9 * 4 + 36 * 3 == profile_macs(model).total
    res = runner.invoke(main, ["profile", str(path)])
    assert res.exit_code == 0 and "Total MACs" in res.output


def test_profile_of_a_file_that_is_not_a_model(runner, tmp_path):
    bad = tmp_path / "junk.keras"
    bad.write_bytes(b"not a zip")
    _one_line_error(runner.invoke(main, ["profile", str(bad)]), "error:", "junk.keras")
    _one_line_error(runner.invoke(main, ["profile", str(tmp_path / "missing.keras")]), "error:")


@pytest.mark.parametrize("args, needle", [
    (["--min-accuracy", "1.5", "--max-macs", "1M"], "accuracy"),
    (["--min-accuracy", "-0.1", "--max-macs", "1M"], "accuracy"),
    (["--min-accuracy", "0.8", "--max-macs", "-5"], "max-macs"),
    (["--min-accuracy", "0.8", "--max-macs", "lots"], "size"),
    (["--min-accuracy", "0.8", "--max-macs", "1M", "--dataset", "imagenet"], "imagenet"),
    (["--min-accuracy", "0.8", "--max-macs", "1M", "--algorithm", "bayes"], "bayes"),
    (["--min-accuracy", "0.8", "--max-macs", "1M", "--max-time", "0"], "max-time"),
    (["--min-accuracy", "0.8", "--max-macs", "1M", "--threads", "0"], "threads"),
    (["--resume", "somewhere", "--threads", "1"], "threads"),
])
def test_search_rejects_bad_arguments_with_one_line(runner, tmp_path, args, needle):
    res = runner.invoke(main, ["search", "--out", str(tmp_path / "run")] + args)
    _one_line_error(res, needle)
    assert not (tmp_path / "run" / "archive.jsonl").exists()


def test_search_without_constraints_says_what_is_missing(runner, tmp_path):
    _one_line_error(runner.invoke(main, ["search", "--out", str(tmp_path / "r")]), "--min-accuracy")


def test_report_export_evaluate_on_unreadable_folders(runner, tmp_path):
    _one_line_error(runner.invoke(main, ["report", str(tmp_path / "nope")]), "error:")
    _one_line_error(runner.invoke(main, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "d")]), "error:")
    broken = tmp_path / "deploy"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    _one_line_error(runner.invoke(main, ["evaluate", str(broken), "--limit", "5"]), "error:", "manifest")

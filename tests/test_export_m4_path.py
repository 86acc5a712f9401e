"""Regression: the Cortex-M4 size check works with a relative export folder (as `make demo` passes)."""
import shutil

import pytest

from tflite_export.c_export import cortex_m4_size


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="arm-none-eabi-g++ not installed")
def test_cortex_m4_size_with_a_relative_folder(tmp_path, monkeypatch):
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "nachos_model_data.cc").write_text("alignas(16) extern const unsigned char m[] = {1, 2, 3, 4};\n")
    (out / "nachos_decision.cc").write_text("int decide(int a, int b) { return a >= b; }\n")
    monkeypatch.chdir(tmp_path)
    res = cortex_m4_size("deploy")
    assert res["model_data"]["text"] + res["model_data"]["data"] >= 4
    assert res["decision"]["text"] > 0

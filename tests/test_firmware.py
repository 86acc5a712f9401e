"""The export built with real TFLM and run: on the host and on Cortex-M4F with CMSIS-NN under QEMU.

A small EENN from the search space is trained briefly on real Fashion-MNIST, thresholded and exported;
`build_firmware` compiles it against TFLM's own library (TFLM_ROOT, built once and cached) and runs 200
real test images. Every image's class and exit must equal the Python TFLM evaluation (the code behind
`nachos-tf evaluate`). Needs TFLM_ROOT, g++, make, arm-none-eabi-g++ with newlib and qemu-system-arm;
without them the tests skip and say which is missing. The first run builds two TFLM libraries (about 18
minutes on 2 cores); later runs take them from ~/.cache/nachos-tf/tflm. Marked `firmware`: not part of
`make test` (kept under 15 minutes), run by `make test-firmware`, which .ci/run runs after it.
"""
import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

FMNIST = Path("/usr/share/datasets/fashion-mnist")
N_RUN = 200


def _missing():
    if not os.environ.get("TFLM_ROOT"):
        return "TFLM_ROOT is not set (point it at a tflite-micro checkout; .ci/run uses ../shared/third_party)"
    for tool, pkg in (("make", "make"), ("g++", "g++"), ("arm-none-eabi-g++", "gcc-arm-none-eabi"),
                      ("qemu-system-arm", "qemu-system-arm")):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package {pkg}; scripts/ensure_firmware_tools.sh)"
    if not (FMNIST / "t10k-images-idx3-ubyte.gz").exists():
        return "Fashion-MNIST (Debian package dataset-fashion-mnist) not installed"
    return None


pytestmark = [pytest.mark.firmware, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def _idx(prefix):
    with gzip.open(FMNIST / f"{prefix}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(FMNIST / f"{prefix}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A sampled genome of the MCU search space, 1 epoch on 2000 images, thresholds at the median score."""
    import nachos_tf as nt
    from nachos_tf import naming, policy
    from tflite_export.c_export import export_eenn

    keras.utils.set_random_seed(1)
    x, y = _idx("train")
    x, y = x[:2500], y[:2500]
    space = nt.SearchSpace.mcu(input_shape=(28, 28, 1), num_classes=10)
    model = nt.build_eenn(space, space.sample(seed=3))
    names = naming.output_names(model)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(3e-3), [("binary_crossentropy" if "conf" in n else ce) for n in names])
    yt = y[:2000]
    ys = [((yt < 5).astype(np.float32)[:, None] if "conf" in n else yt) for n in names]
    model.fit(x[:2000], ys if len(ys) > 1 else ys[0], epochs=1, batch_size=32, verbose=0)
    layout = naming.exit_layout(model)
    outs = model.predict(x[2000:], verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    thresholds = [float(np.median(policy.softmax(outs[e.logits_index]).max(axis=1))) for e in layout[:-1]]
    out = tmp_path_factory.mktemp("fw") / "deploy"
    export_eenn(model, out, x[:64], "max_softmax", thresholds, num_samples=64, cortex_m4=False)
    return out


def _check(rep, target, kernels):
    run = rep["run"]
    assert rep["target"] == target and rep["kernels"] == kernels
    assert run["n"] == N_RUN and run["failed"] is None
    assert run["all_agree"], run["mismatches"]
    assert run["agree"] == run["agree_class"] == run["agree_exit"] == N_RUN
    assert sum(run["exit_counts"]) == N_RUN
    assert run["exit_counts"] == run["python"]["exit_counts"]
    assert len([c for c in run["exit_counts"] if c]) >= 2, "thresholds should send images out at two exits"
    s = rep["sizes"]
    man = json.loads((Path(rep["export"]) / "manifest.json").read_text())
    stage_bytes = sum(st["bytes"] for st in man["stages"])
    assert stage_bytes <= s["model_bytes"] <= stage_bytes + 16 * len(man["stages"])
    assert s["code_bytes"] == s["flash_bytes"] - s["model_bytes"] and s["code_bytes"] > 50_000
    assert s["ram"]["arena"] == rep["arena_bytes"] == man["arena_bytes"]
    assert all(0 < u <= rep["arena_bytes"] for u, c in zip(run["arena_used"], run["exit_counts"]) if c)
    assert Path(rep["files"]["elf"]).is_file() and Path(rep["files"]["makefile"]).is_file()
    return run


def test_host_and_cortex_m4_cmsis_nn_agree_with_python_tflm(export):
    from tflite_export.convert import build_firmware

    host = build_firmware(export, "host", "reference", run=N_RUN)
    _check(host, "host", "reference")
    assert host["run"]["scores"]["images_differing"] == 0       # same reference kernels: same int8 bytes

    m4 = build_firmware(export, "cortex-m4", "cmsis-nn", run=N_RUN)
    run = _check(m4, "cortex-m4", "cmsis-nn")
    assert m4["machine"] == "mps2-an386"
    ram = m4["sizes"]["ram"]
    assert ram["total"] == ram["data"] + ram["bss"] + ram["heap"] + ram["stack"]
    assert ram["bss"] >= ram["arena"]
    assert 0 < run["stack_used"] <= ram["stack"]
    fw = Path(m4["files"]["folder"])
    for name in ("Makefile", "nachos_main.cc", "nachos_startup.c", "mps2-an386.ld", "cortex-m4-cmsis-nn.mk"):
        assert (fw / name).is_file(), name
    mk = (fw / "cortex-m4-cmsis-nn.mk").read_text()
    assert "-std=c++17" in mk and "-DTF_LITE_STATIC_MEMORY" in mk and "-DCMSIS_NN" in mk
    assert json.loads((fw / "cortex-m4-cmsis-nn.json").read_text())["run"]["agree"] == N_RUN

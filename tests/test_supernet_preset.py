"""The supernet shipped for the default Fashion-MNIST space: it matches the current space definition (a
change to the space, its genes or the supernet's layout makes this fail: re-train with the committed script),
was made by that script, loads, and its subnets classify real images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nachos_tf as nt
from nachos_tf.supernet import Supernet, space_fingerprint
from nachos_tf.supernet.gates import SupernetSpec
from nachos_tf.supernet.store import MANIFEST_FILE, WEIGHTS_FILE, preset_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fmnist():
    try:
        return nt.data.load("fashion_mnist")
    except Exception as exc:  # pragma: no cover - data missing on this machine
        pytest.skip(f"Fashion-MNIST not available: {exc}")


def test_preset_matches_the_current_default_space(fmnist):
    folder = preset_folder()
    assert folder is not None, "no shipped preset: run scripts/train_default_supernet.py"
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    space = nt.SearchSpace.mcu(fmnist.input_shape, fmnist.num_classes)     # what `nachos-tf search` builds
    assert manifest["space_fingerprint"] == space_fingerprint(space)
    assert manifest["spec"] == json.loads(json.dumps(SupernetSpec.from_space(space).to_dict()))
    assert manifest["command"].startswith("scripts/train_default_supernet.py")
    assert (REPO / "scripts" / "train_default_supernet.py").is_file()
    assert (folder / WEIGHTS_FILE).stat().st_size < 5_000_000                # float16, small enough to ship
    Supernet.load(folder, space, fmnist)                                     # fingerprints of space and data


@pytest.mark.slow  # about a minute or more on 2 cores (make test stays under 15 minutes)
def test_preset_subnets_classify_real_images(fmnist):
    """The smallest subnet, BN re-estimated on 500 training images, on 500 validation images: far above
    chance (10 %), as its evaluation.json says (0.865 on 5,000)."""
    space = nt.SearchSpace.mcu(fmnist.input_shape, fmnist.num_classes)
    sn = Supernet.load(preset_folder(), space, fmnist)
    x, y = fmnist.x_val[:500], np.asarray(fmnist.y_val[:500]).reshape(-1)
    for largest in (False,):
        outs = sn.subnet_predict(sn.extreme_genome(largest), x, bn_x=fmnist.x_train[:500])
        acc = float(np.mean(np.argmax(outs[-1], -1) == y))
        assert acc > 0.7, (largest, acc)


def test_checkpoint_export_holds_the_checkpoint_weights(fmnist, tmp_path):
    """`scripts/train_default_supernet.py --export-checkpoint`: a checkpoint's weights (here the preset's,
    shifted) become a loadable supernet folder holding exactly them in float16, with the checkpoint's epochs
    and the preset's record under init_from; weights of another layout are refused."""
    import importlib.util

    from nachos_tf.errors import SupernetError
    from nachos_tf.supernet.store import read_weights, write_weights

    spec = importlib.util.spec_from_file_location("train_default_supernet",
                                                  REPO / "scripts" / "train_default_supernet.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    space = nt.SearchSpace.mcu(fmnist.input_shape, fmnist.num_classes)
    w = {k: v.astype(np.float32) + 0.25 for k, v in read_weights(preset_folder() / WEIGHTS_FILE).items()}
    write_weights(tmp_path / "epoch3.weights.h5", w)
    (tmp_path / "epoch3.state.json").write_text(json.dumps({"epochs_done": 3, "history": [{"epoch": 1}] * 3,
                                                            "settings": {"epochs": 10}}))
    out = script.export_checkpoint(tmp_path / "epoch3.weights.h5", tmp_path / "e3", space, fmnist)
    got = read_weights(out / WEIGHTS_FILE)
    assert set(got) == set(w) and all(np.array_equal(got[k], w[k].astype(np.float16)) for k in w)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    preset = json.loads((preset_folder() / MANIFEST_FILE).read_text())
    assert manifest["epochs_done"] == 3 and manifest["weights_dtype"] == "float16"
    assert manifest["init_from"]["epochs_done"] == preset["epochs_done"]
    Supernet.load(out, space, fmnist)
    del w[sorted(w)[0]]
    write_weights(tmp_path / "bad.weights.h5", w)
    with pytest.raises(SupernetError):
        script.export_checkpoint(tmp_path / "bad.weights.h5", tmp_path / "bad", space, fmnist)

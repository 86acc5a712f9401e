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
    sn = Supernet.load(folder, space, fmnist)                                # fingerprints of space and data


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

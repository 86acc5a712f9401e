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


def _chain(manifest: dict) -> list:
    """A supernet's training stages, first to last (each manifest's ``init_from`` is the stage before)."""
    out = []
    while isinstance(manifest, dict) and manifest.get("settings"):
        out.append(manifest)
        manifest = manifest.get("init_from")
    return out[::-1]


SEED_SUPERNETS = sorted((REPO / "benchmarks" / "supernets").glob("fashion_mnist_seed*"))


@pytest.mark.parametrize("folder", SEED_SUPERNETS, ids=[p.name for p in SEED_SUPERNETS])
def test_comparison_seed_supernets_follow_the_preset_recipe_with_their_seed(fmnist, folder):
    """The supernets of `benchmarks/compare.py`'s other seeds (`--supernet-from S=benchmarks/supernets/
    fashion_mnist_seedS`): made for the current space by the committed script, stage by stage with the shipped
    preset's settings (epochs, images, random subnets, learning rate, ...) but the folder's seed; they load."""
    seed = int(folder.name.rsplit("seed", 1)[1])
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    space = nt.SearchSpace.mcu(fmnist.input_shape, fmnist.num_classes)
    assert manifest["space_fingerprint"] == space_fingerprint(space)
    preset = _chain(json.loads((preset_folder() / MANIFEST_FILE).read_text()))
    mine = _chain(manifest)
    assert len(mine) == len(preset) == 3
    for a, b in zip(mine, preset):
        assert a["settings"]["seed"] == seed and b["settings"]["seed"] == 0
        drop = ("seed", "init_from")
        assert {k: v for k, v in a["settings"].items() if k not in drop} == \
            {k: v for k, v in b["settings"].items() if k not in drop}
        assert a["epochs_done"] == b["epochs_done"] == len(a["history"])
        assert a["command"].startswith("scripts/train_default_supernet.py")
    Supernet.load(folder, space, fmnist)

"""Train (or continue training) the supernet shipped for the default Fashion-MNIST space, then measure it.

The shipped preset is made in three stages, one after the other (each resumable: re-running the same
command continues after the last finished epoch in its --work folder; each stage writes the preset the next
one starts from):

    nohup nice -n 10 .venv/bin/python scripts/train_default_supernet.py > runs/supernet_fm12.log 2>&1 &
    nohup nice -n 10 .venv/bin/python scripts/train_default_supernet.py --init-from preset \
        --work runs/supernet_fm_cont --epochs 5 --warmup-epochs 0 --n-random 3 --train-limit 0 \
        --learning-rate 0.001 > runs/supernet_fm_cont.log 2>&1 &
    nohup nice -n 10 .venv/bin/python scripts/train_default_supernet.py --init-from preset \
        --work runs/supernet_fm_s3 --epochs 4 --warmup-epochs 0 --n-random 3 --train-limit 0 \
        --learning-rate 0.0005 > runs/supernet_fm_s3.log 2>&1 &

Stage 1: 12 epochs (2 of them largest-subnet warm-up) on 30,000 training images, about 65 minutes on
2 cores. Stage 2 continues from the stage-1 preset (`--init-from preset`; run stage 1 first) on all
54,000 training images with 3 random subnets per step, because mid-sized subnets were the weakest part
(below the smallest subnet, which every step trains); stage 3 continues stage 2 for 4 epochs at half its
learning rate (about 35 minutes). `--init-from` also accepts a supernet folder. The result is copied in float16 (< 3 MB) to nachos_tf/supernet/presets/fashion_mnist/,
then the largest and smallest subnets are extracted (BN re-estimated on 2000 training images) and
evaluated on the validation split; figures go to <preset>/evaluation.json.

Progressive shrinking (Once-For-All's schedule, `nachos_tf.supernet.DEFAULT_STAGES`: the largest subnet
alone, then elastic kernel and resolution, depth, expansion, and last every gene), from random weights:

    nohup nice -n 10 .venv/bin/python scripts/train_default_supernet.py --progressive --work runs/supernet_ps \
        --train-limit 0 --n-random 2 --preset-out runs/supernet_ps/preset > runs/supernet_ps.log 2>&1 &

Other schedules: `--stages benchmarks/schedules/ps_split.json` (the last stage split in three: widths, then SE and
activation, then every gene; re-uses the first four stages of the run above when given the same --work) and
`--stages benchmarks/schedules/ps_long.json --train-limit 0` (34 epochs: the largest subnet alone for 10 on all
54,000 images, then 24 sandwich epochs on 30,000 (the stages' own `train_limit`), the stem and stage output
channels sorted by importance as widths open (`sort_widths`); 7,835 s of training here). Every stage trains in
`<work>/<i>_<name>/` (resumable; measurable with `benchmarks/search_speed.py --supernet-dir <work>/<i>_<name>` once
finished). `--preset-out` writes the float16 result elsewhere than the shipped preset.

Measuring the estimate as training goes on: `--snapshots` also saves the supernet after every epoch as a
float16 folder `<work>/epochs/eN` (what the preset would be if training stopped there), to be given to
`benchmarks/search_speed.py --supernet-dir`. `--export-checkpoint WEIGHTS_H5 --out DIR` makes such a folder
from a checkpoint's `weights.h5` (or a copy of it taken after some epoch, with its `state.json` beside it
under the same prefix, e.g. `epoch3.weights.h5` and `epoch3.state.json`) and stops without touching the
preset.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

import nachos_tf as nt
from nachos_tf.supernet import DEFAULT_STAGES, Supernet, load_schedule, train_progressive, train_supernet
from nachos_tf.supernet.fitting import prior_record
from nachos_tf.supernet.store import assign_weights, read_weights

PRESET = Path(__file__).resolve().parents[1] / "nachos_tf" / "supernet" / "presets" / "fashion_mnist"


def evaluate(sn: Supernet, data, n_val: int = 5000) -> dict:
    """Largest / smallest subnet accuracy (final exit) on validation, and extraction timings."""
    space = sn.space
    spec = sn.spec
    gl, gs = sn.extreme_genome(True), sn.extreme_genome(False)
    out = {}
    xv, yv = data.x_val[:n_val], np.asarray(data.y_val[:n_val]).reshape(-1)
    for name, g in (("largest", gl), ("smallest", gs)) + tuple((f"sample{i}", space.sample(seed=i)) for i in range(3)):
        t0 = time.perf_counter()
        m = sn.extract(g, bn_data=data, bn_images=2000)
        t1 = time.perf_counter()
        outs = m.predict(xv, batch_size=500, verbose=0)
        t2 = time.perf_counter()
        outs = outs if isinstance(outs, list) else [outs]
        acc = float(np.mean(np.argmax(outs[-1], -1) == yv))
        macs = nt.profile_macs(m).exit_macs
        out[name] = {"val_acc_final": acc, "extract_bn_s": round(t1 - t0, 2), "predict_s": round(t2 - t1, 2),
                     "final_macs": int(macs[-1]), "genome": g.to_dict()}
        print(f"[eval] {name}: val acc {acc:.4f}, extract+BN {t1 - t0:.2f}s, predict {n_val} {t2 - t1:.2f}s, "
              f"MACs {int(macs[-1])}", flush=True)
    out["spec_resolutions"] = list(spec.resolutions)
    return out


class Snapshots(keras.callbacks.Callback):
    """After every epoch, the supernet being trained saved as a float16 folder `root/eN` (N: epochs of this
    call), as the shipped preset is saved."""

    def __init__(self, root: Path, space):
        super().__init__()
        self.root, self.space = root, space

    def on_epoch_end(self, epoch, logs=None):
        Supernet(self.space, net=self.model.net, info={"snapshot_epoch": epoch + 1}).save(
            self.root / f"e{epoch + 1}", dtype="float16")


def export_checkpoint(weights: Path, out: Path, space, data, base: Path = PRESET) -> Path:
    """A float16 supernet folder holding the weights of a training checkpoint (`save_checkpoint`'s
    weights.h5): the manifest record of `base` (the supernet that training continued: the shipped preset),
    with these weights (checked name by name, shape by shape, against the supernet of `space`) and, when the
    checkpoint's state.json is beside them, its settings, epochs and history (`base` under "init_from")."""
    sn = Supernet.load(base, space, data)
    prior = prior_record(sn, space, data)              # the supernet training continued, as train_supernet keeps it
    assign_weights(sn.net, read_weights(weights), str(weights))
    sn.info["exported_from_checkpoint"] = str(weights)
    state = weights.with_name(weights.name.replace("weights.h5", "state.json"))
    if state.is_file():
        st = json.loads(state.read_text())
        sn.info.update({"settings": st.get("settings"), "epochs_done": st.get("epochs_done"),
                        "history": st.get("history"), "init_from": prior})
    return sn.save(out, dtype="float16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/supernet_fm12")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--warmup-epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-random", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=30000)
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--init-from", default=None,
                    help="continue from a trained supernet: 'preset' (the shipped one) or a supernet folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evaluate-only", action="store_true")
    ap.add_argument("--snapshots", action="store_true",
                    help="also save the supernet after every epoch as a float16 folder <work>/epochs/eN "
                         "(to measure the estimate as training goes on)")
    ap.add_argument("--export-checkpoint", metavar="WEIGHTS_H5", default=None,
                    help="only convert checkpoint weights (<work>/checkpoint/weights.h5, or a copy of it taken "
                         "after some epoch) into a float16 supernet folder --out, then stop")
    ap.add_argument("--out", default=None, help="folder written by --export-checkpoint")
    ap.add_argument("--progressive", action="store_true",
                    help="progressive shrinking with nachos_tf.supernet.DEFAULT_STAGES (ignores --epochs, "
                         "--warmup-epochs and --learning-rate)")
    ap.add_argument("--stages", default=None, metavar="JSON_FILE",
                    help="with --progressive: the schedule, a JSON list of ShrinkStage fields (name, elastic, "
                         "epochs, learning_rate, sort_channels, sort_widths, train_limit); default nachos_tf.supernet.DEFAULT_STAGES")
    ap.add_argument("--kernel-transform", action="store_true",
                    help="OFA's kernel-transformation matrices for the smaller depthwise kernels "
                         "(train_supernet(kernel_transform=True))")
    ap.add_argument("--preset-out", default=None,
                    help="write the float16 result and evaluation.json here instead of the shipped preset")
    a = ap.parse_args()
    data = nt.data.load("fashion_mnist")
    space = nt.SearchSpace.mcu(data.input_shape, data.num_classes)
    if a.export_checkpoint:
        if not a.out:
            ap.error("--export-checkpoint needs --out")
        print(f"[nachos-tf] written {export_checkpoint(Path(a.export_checkpoint), Path(a.out), space, data)}")
        return
    preset = Path(a.preset_out) if a.preset_out else PRESET
    if a.evaluate_only:
        sn = Supernet.load(preset, space, data)
    else:
        init = Supernet.load(PRESET if a.init_from == "preset" else a.init_from, space, data) if a.init_from else None
        kt = {"kernel_transform": True} if a.kernel_transform else {}
        if a.progressive:
            stages = load_schedule(a.stages) if a.stages else DEFAULT_STAGES
            sn = train_progressive(space, data, a.work, stages=stages, batch_size=a.batch_size,
                                   n_random=a.n_random, train_limit=a.train_limit or None, seed=a.seed,
                                   init_from=init, verbose=2, **kt)
        else:
            sn = train_supernet(space, data, epochs=a.epochs, warmup_epochs=a.warmup_epochs, folder=a.work,
                                batch_size=a.batch_size, n_random=a.n_random, train_limit=a.train_limit or None,
                                learning_rate=a.learning_rate, seed=a.seed, verbose=2, init_from=init,
                                callbacks=[Snapshots(Path(a.work) / "epochs", space)] if a.snapshots else None, **kt)
        sn.info["command"] = "scripts/train_default_supernet.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if v is not None and v is not False)
        sn.save(preset, dtype="float16")
        print(f"[nachos-tf] preset written to {preset}", flush=True)
    res = evaluate(sn, data)
    (preset / "evaluation.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

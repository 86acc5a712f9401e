"""`Supernet`: the public face of the weight-sharing supernet (extract, predict, save/load)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import keras
import numpy as np
import tensorflow as tf

from .extract import bn_images as _bn_images
from .extract import load_subnet_weights, reestimate_bn, subnet_weights
from .gates import SupernetSpec
from .kernels import is_transform
from .model import SupernetNet


class Supernet:
    """Weight-sharing supernet of a `SearchSpace.mcu` space.

    Build one untrained with `Supernet(space, seed=...)`, train it with
    `nachos_tf.supernet.train_supernet`, or load a saved one with `Supernet.load(folder, space)`.
    `extract(genome)` gives the plain Keras model `nt.build_eenn(space, genome)` builds, with the
    supernet's weights; `subnet_predict(genome, x)` runs the supernet's own masked forward pass.

    Args:
        space: the search space (kind "mcu").
        seed: seed of the weight initialisation (ignored when `net` is given).
        net: an existing `SupernetNet` (used by training and loading).
        info: training record (settings, epochs done, history, fingerprints) kept in the manifest.
        kernel_transform: give every block with elastic kernels OFA's kernel-transformation matrices
            (`nachos_tf.supernet.kernels`; ignored when `net` is given).

    Raises:
        SupernetError: the space has no supernet (not an "mcu" space).
    """

    def __init__(self, space: Any, seed: int = 0, net: Optional[SupernetNet] = None,
                 info: Optional[Dict[str, Any]] = None, kernel_transform: bool = False):
        self.space = space
        self.spec = SupernetSpec.from_space(space)
        if net is None:
            keras.utils.set_random_seed(int(seed))
            net = SupernetNet(self.spec, kernel_transform=kernel_transform)
        self.net = net
        self.info: Dict[str, Any] = dict(info or {})
        self._predict_fns: Dict[str, Any] = {}

    # ------------------------------------------------------------------ extraction
    def extract(self, genome: Any, bn_data: Any = None, bn_images: int = 2000,
                bn_batch_size: Optional[int] = None, name: Optional[str] = None) -> keras.Model:
        """The model `nt.build_eenn(space, genome)` builds, with weights sliced from the supernet.

        Args:
            genome: a valid genome of the space (`space.repair` hand-made ones).
            bn_data: None (keep the supernet's BN statistics), an image array (raw pixels, its first
                `bn_images` are used) or a Dataset (a seeded subset of `bn_images` of x_train).
            bn_images: number of images for BN re-estimation.
            bn_batch_size: None = one batch (exact statistics), else batches averaged.
            name: model name (default as `build_eenn`).

        Returns:
            A plain functional keras.Model (saves/loads with keras, converts to int8 TFLite).

        Raises:
            GenomeError: the genome is not valid in the space.
            SupernetError: a layer of the built model has no matching supernet weights.
        """
        from ..builder import build_eenn

        model = build_eenn(self.space, genome, name=name)
        load_subnet_weights(model, subnet_weights(self.spec, self.net.numpy_weights(), genome))
        if bn_data is not None and bn_images > 0:
            reestimate_bn(model, _bn_images(bn_data, int(bn_images)), bn_batch_size)
        return model

    def subnet_predict(self, genome: Any, x: np.ndarray, batch_size: int = 512,
                       bn_x: Optional[np.ndarray] = None) -> List[np.ndarray]:
        """The supernet's own masked forward pass (inference mode) of the genome's subnet.

        With `bn_x`, the subnet's batch-norm statistics are first re-estimated on those images (one
        batch: exact, as `extract(..., bn_data=bn_x)` then `reestimate_bn`), in the supernet's graph; the
        supernet's own statistics are restored afterwards. Nothing is built per genome: this is the fast
        path of the supernet evaluator.

        Args:
            genome: a valid genome.
            x: raw images (N, H, W, C).
            batch_size: images per call.
            bn_x: raw images for BN re-estimation, or None (keep the supernet's statistics).

        Returns:
            Arrays in the order of the extracted model's outputs: exit_0, [exit_0_conf], ..., final
            (confidences with shape (N, 1) as the builder's).

        Raises:
            GenomeError: the genome is not valid in the space.
        """
        self.space.validate(genome)
        code, res = self.spec.encode(genome)
        fn = self._predict_fn()
        saved = None
        if bn_x is not None and len(bn_x):
            saved = self._moving_stats()
            self._predict_fn("recal")(tf.convert_to_tensor(np.asarray(bn_x), tf.float32), tf.constant(code))
        parts: Dict[str, List[np.ndarray]] = {"final": [], "logits": [], "conf": []}
        try:
            for i in range(0, len(x), batch_size):
                f, lg, cf = fn(tf.convert_to_tensor(x[i:i + batch_size], tf.float32), tf.constant(code))
                parts["final"].append(f.numpy())
                if lg is not None:
                    parts["logits"].append(lg.numpy())
                if cf is not None:
                    parts["conf"].append(cf.numpy())
        finally:
            if saved is not None:
                for v, a in saved:
                    v.assign(a)
        cat = {k: np.concatenate(v) if v else None for k, v in parts.items()}
        outs: List[np.ndarray] = []
        for pt in genome.exit_positions:
            outs.append(cat["logits"][:, pt, 0])          # only the subnet's own head ran
            if self.spec.confidence:
                outs.append(cat["conf"][:, pt, 0][:, None])
        outs.append(cat["final"])
        return outs

    def _moving_stats(self) -> List[Any]:
        """(variable, value) of every BN moving statistic (to restore after a re-estimation)."""
        return [(v, v.numpy()) for k, v in self.net.vars.items() if k.endswith(("/moving_mean", "/moving_variance"))]

    def _predict_fn(self, mode: str = "moving"):
        """The supernet's graph in `mode` (traced once; every subnet and resolution runs through it)."""
        if mode not in self._predict_fns:
            net = self.net

            @tf.function(input_signature=[tf.TensorSpec((None,) + self.spec.input_shape, tf.float32),
                                          tf.TensorSpec((self.spec.code_length,), tf.int32)],
                         autograph=False)
            def fn(x, code):
                o = net.forward(x, code, mode, only_chosen=True)
                return o["final"], o["logits"], o["conf"]

            self._predict_fns[mode] = fn
        return self._predict_fns[mode]

    def extreme_genome(self, largest: bool = True) -> Any:
        """The largest (or smallest) subnet as a genome.

        Args:
            largest: True for the largest subnet, False for the smallest.

        Returns:
            The genome (repaired): every gene at its max (min) value, SE on (off), hard-swish (ReLU), top
            (lowest) resolution; every exit point a gap_dense exit with the widest (narrowest) head.
        """
        from ..genome import ExitGene, Genome

        def pick(values, preferred):          # the preferred choice when the gene offers it
            return preferred if preferred in values else values[-1 if largest else 0]

        p: Dict[str, Any] = {}
        for g in self.space.backbone_genes:
            if g.name.endswith("_se"):
                p[g.name] = pick(g.values, bool(largest))
            elif g.name.endswith("_act"):
                p[g.name] = pick(g.values, "hard_swish" if largest else "relu")
            else:
                p[g.name] = max(g.values) if largest else min(g.values)
        w = max(self.spec.head_widths) if largest else min(self.spec.head_widths)
        exits = [ExitGene(True, "gap_dense", w, 1) for _ in range(self.spec.n_points)]
        return self.space.repair(Genome.make(p, exits))

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Union[str, Path], dtype: str = "float32") -> Path:
        """Write `supernet.weights.h5` and `supernet.json` (manifest) into `folder`; returns the folder.

        Args:
            folder: target folder (created if needed).
            dtype: "float32" or "float16" (half the size, for shipped presets).

        Returns:
            The folder.

        Raises:
            SupernetError: an unknown dtype, or the folder cannot be written.
        """
        from .store import save_supernet

        return save_supernet(self, folder, dtype)

    @classmethod
    def load(cls, folder: Union[str, Path], space: Any, data: Any = None) -> "Supernet":
        """Load a saved supernet for `space` (and, if given, check it was trained on `data`).

        Args:
            folder: the folder `save` wrote.
            space: the search space it was saved for.
            data: the Dataset it must have been trained on (None: not checked).

        Returns:
            The loaded Supernet.

        Raises:
            SupernetMismatchError: saved for another space (fingerprint differs) or other data.
            SupernetError: missing or malformed files.
        """
        from .store import WEIGHTS_FILE, assign_weights, check_manifest, read_manifest, read_weights

        manifest = read_manifest(folder)
        check_manifest(manifest, space, data, where=str(folder))
        weights = read_weights(Path(folder) / WEIGHTS_FILE)
        sn = cls(space, info={k: v for k, v in manifest.items()
                              if k not in ("weights", "space", "spec", "format", "versions")},
                 kernel_transform=any(is_transform(k) for k in weights))
        assign_weights(sn.net, weights, str(folder))
        return sn

    @property
    def kernel_transform(self) -> bool:
        """Whether the supernet has OFA's kernel-transformation matrices (`nachos_tf.supernet.kernels`)."""
        return bool(self.net.kernel_transform)

    def timed_extract(self, genome: Any, bn_data: Any = None, bn_images: int = 2000) -> Dict[str, Any]:
        """`extract` plus the seconds it took (extraction and BN re-estimation separately).

        Args:
            genome: a valid genome of the space.
            bn_data: None (no BN re-estimation), an image array or a Dataset (as `extract`).
            bn_images: number of images for BN re-estimation.

        Returns:
            {"model": the extracted keras.Model, "extract_s": seconds, "bn_s": seconds}.

        Raises:
            GenomeError: the genome is not valid in the space.
        """
        t0 = time.perf_counter()
        m = self.extract(genome)
        t1 = time.perf_counter()
        if bn_data is not None:
            reestimate_bn(m, _bn_images(bn_data, int(bn_images)))
        return {"model": m, "extract_s": t1 - t0, "bn_s": time.perf_counter() - t1}

    def __repr__(self) -> str:
        return (f"Supernet(input_shape={self.spec.input_shape}, classes={self.spec.num_classes}, "
                f"params={sum(int(np.prod(v.shape)) for v in self.net.vars.values())}, "
                f"epochs={self.info.get('epochs_done', 0)})")

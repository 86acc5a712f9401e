"""The supernet evaluator: every candidate inherits its weights from one trained weight-sharing supernet.

`setup` trains the supernet once per run, or finds it: in the run folder (a resumed run), in the user cache
(a later run on the same space, data and settings), or shipped with the package (a preset for the default
Fashion-MNIST space). Its weights live in ``<run>/supernet/`` (``supernet.weights.h5`` + ``supernet.json``,
no pickle), where worker processes load them too. `evaluate(genome)` = extract the subnet as the plain Keras
model `build_eenn` builds, re-estimate its batch-norm statistics on training images, one forward pass on
validation, calibrate: seconds per candidate, no training. `finalize` fine-tunes a front member from its
inherited weights, every exit distilled from the supernet's largest subnet, re-calibrates on validation and
reports test and int8 TFLM figures.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...errors import ConstraintError
from ...genome import ExitGene, Genome
from ...records import CandidateRecord, FinalRecord
from .base import EvalContext, register_evaluator
from .common import (CALIBRATIONS, calibrate_outputs, candidate_record, candidate_seed, exit_rule,
                     final_record, over_budget_at_first_exit, place_member, sizes_still_hold)
from .supernet_source import SUPERNET_EPOCHS, SUPERNET_TRAIN_LIMIT, cache_root, find_or_train
from .teacher import (TEACHER_BATCH, concat_chunks, read_teacher, teacher_chunks, teacher_key, teacher_path,
                      write_teacher)

__all__ = ["SupernetEvaluator", "SUPERNET_EPOCHS", "SUPERNET_TRAIN_LIMIT", "cache_root"]

RUN_SUBDIR = "supernet"


@register_evaluator
class SupernetEvaluator:
    """Candidates judged with weights inherited from a trained weight-sharing supernet (Once-For-All style).

    Args:
        supernet_dir: a folder holding a trained supernet (`Supernet.save`) to use as is (e.g. shared by
            several searches); None: find or train one in `setup`.
        epochs: supernet training epochs when one must be trained (None: by budget, `SUPERNET_EPOCHS`;
            with None a shipped preset or a cached supernet of any length is used when it matches).
        bn_images: training images for each candidate's batch-norm re-estimation.
        calibration: "pareto" or "grid" (as `ProxyEvaluator`).
        finetune: fine-tune front members in `finalize` (else they keep their inherited weights).

    Raises:
        ConstraintError: invalid settings, or a space without a supernet (e.g. a keras-tuner backbone).
    """

    name = "supernet"

    def __init__(self, supernet_dir: Optional[str] = None, epochs: Optional[int] = None, bn_images: int = 2000,
                 calibration: str = "pareto", finetune: bool = True):
        if calibration not in CALIBRATIONS:
            raise ConstraintError(f"unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}")
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ConstraintError(f"supernet epochs must be a whole number >= 1, got {epochs!r}")
        if isinstance(bn_images, bool) or not isinstance(bn_images, int) or bn_images < 1:
            raise ConstraintError(f"bn_images must be a whole number >= 1, got {bn_images!r}")
        self.supernet_dir = None if supernet_dir is None else str(supernet_dir)
        self.epochs, self.bn_images, self.calibration, self.finetune = epochs, bn_images, calibration, bool(finetune)
        self.context: EvalContext = None  # type: ignore[assignment]
        self.folder: Optional[Path] = None
        self.setup_seconds = 0.0
        self.source = ""
        self._supernet = None
        self._weights: Optional[Dict[str, Any]] = None     # the supernet's weights as arrays (for slicing)

    # ---------------------------------------------------------------- protocol
    def to_dict(self) -> Dict[str, Any]:
        """Name and settings (the run fingerprint).

        Returns:
            {"name": "supernet", and every constructor argument}.
        """
        return {"name": self.name, "supernet_dir": self.supernet_dir, "epochs": self.epochs,
                "bn_images": self.bn_images, "calibration": self.calibration, "finetune": self.finetune}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SupernetEvaluator":
        """The evaluator a config.json describes.

        Args:
            d: its `to_dict()` (every setting optional).

        Returns:
            The SupernetEvaluator.

        Raises:
            ConstraintError: invalid settings.
        """
        return cls(**{k: d[k] for k in ("supernet_dir", "epochs", "bn_images", "calibration", "finetune") if k in d})

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_supernet"] = None            # TensorFlow variables stay here; a worker loads the folder
        state["_weights"] = None
        return state

    def setup(self, context: EvalContext) -> None:
        """Find or train the supernet once for this run; its folder is `self.folder`.

        Args:
            context: the run's evaluation context.

        Raises:
            ConstraintError: the space has no supernet, or the found one was trained for another backbone space.
            SupernetError: the supernet folder's files are missing or malformed.
        """
        if not context.space.family.supports_supernet:
            raise ConstraintError("the supernet evaluator needs the built-in MCU backbone family "
                                  "(SearchSpace.mcu); use evaluator='proxy' for this space")
        self.context = context
        t0 = time.time()
        from ...supernet.store import MANIFEST_FILE

        if self.supernet_dir:
            self.folder, self.source = Path(self.supernet_dir).expanduser(), f"given folder {self.supernet_dir}"
            self._load()
        else:
            self.folder = Path(context.run_dir) / RUN_SUBDIR
            if (self.folder / MANIFEST_FILE).is_file():
                self.source = "the run folder (resumed)"
                self._load()
            else:
                self._find_or_train()
        self.setup_seconds = round(time.time() - t0, 3)
        context.say(f"supernet: {self.source}; ready in {self.setup_seconds:.0f}s")

    def evaluate(self, genome: Genome) -> CandidateRecord:
        """Inherited weights, BN re-estimated, calibrated on validation: no training, nothing built.

        Runs in the supernet's graph (`Supernet.subnet_predict`, in-graph BN re-estimation); exit MACs by arithmetic
        (`SearchSpace.exit_macs`). Only a run with a flash / RAM bound extracts the Keras model (int8 sizes).

        Args:
            genome: the candidate.

        Returns:
            Its search-stage record (judged on the search's validation subset).
        """
        return self._judge(genome, *self._val())

    def rescore(self, records: Sequence[CandidateRecord]) -> List[CandidateRecord]:
        """The same judgement (`evaluate`) on the whole validation split instead of the search's subset.

        Used before the final stage chooses whom to fine-tune (on ~1,000 images the most accurate-looking members
        are those whose estimate erred upwards; they lose accuracy after fine-tuning) and, with `Budget.confirm`, for
        every candidate entering the front. Records already judged on the whole split are returned as they are.

        Args:
            records: search-stage records (their ids are kept).

        Returns:
            New records (not written to the archive), each with ``extra["rescored"]``: the validation images
            and the search-time accuracy and expected MACs it replaces.
        """
        data = self.context.dataset()
        n_sub = len(self._val()[1])
        if n_sub >= len(data.y_val):
            return list(records)
        out = []
        for r in records:
            if r.extra.get("rescored"):        # judged on the whole split already (Budget.confirm)
                out.append(r)
                continue
            m = r.metrics                      # int8 sizes: kept while the export keeps the same stages
            known = None if m.flash_bytes is None or m.arena_bytes is None else {
                "flash_bytes": m.flash_bytes, "arena_bytes": m.arena_bytes}
            new = self._judge(Genome.from_dict(r.genome), data.x_val, data.y_val, known, r.thresholds)
            seen = {"n_val": int(len(data.y_val)), "search_n_val": int(n_sub),
                    "search_accuracy": float(r.metrics.accuracy), "search_expected_macs": float(r.metrics.expected_macs)}
            out.append(dataclasses.replace(new, id=r.id, stage=r.stage, time=r.time,
                                           extra=dict(r.extra, **new.extra, rescored=seen)))
        return out

    def _judge(self, genome: Genome, x_val: np.ndarray, y_val: np.ndarray,
               known_sizes: Optional[Dict[str, Optional[int]]] = None,
               known_at: Sequence[Any] = ()) -> CandidateRecord:
        """`evaluate` on the given validation images (`known_sizes`: its int8 sizes, measured before at thresholds
        `known_at`; measured again when the new thresholds export other stages)."""
        from ...naming import contract_names, layout_of_names
        from ...predict import exit_outputs

        c = self.context
        t0 = time.time()
        seed = candidate_seed(c.seed, genome)
        sn = self.supernet
        exit_macs = c.space.exit_macs(genome)
        sg = genome if sn.space is c.space else self._as_supernet_genome(genome)
        params = self._param_count(sg, genome)
        pruned = over_budget_at_first_exit(genome, exit_macs, params, c.constraints, seed, t0)
        if pruned is not None:
            return pruned
        outs = sn.subnet_predict(sg, x_val, batch_size=1000, bn_x=self._bn_x())
        if sg is not genome:                              # the run's genome has no early exit: final only
            outs = outs[-1:]
        n_early = len(exit_macs) - 1
        probs, confs = exit_outputs(outs, layout_of_names(contract_names(n_early, c.space.confidence)))
        rule = exit_rule(c.space)
        cal = calibrate_outputs(probs, confs, exit_macs, y_val, rule, c.constraints, self.calibration,
                                c.budget.accuracy_tolerance, c.budget.crossfit, c.seed)
        sizes = sizes_still_hold(known_sizes, known_at, cal.thresholds)
        misses = not c.constraints.meets_accuracy_and_macs(cal.result.accuracy, cal.result.expected_macs)
        if not (c.constraints.max_flash or c.constraints.max_ram) or misses:
            # no size bound, or infeasible whatever its size: the int8 conversion (seconds) is skipped
            sizes = {"flash_bytes": None, "arena_bytes": None}
        model = None
        if sizes is None:                                 # int8 sizes need the Keras model, quantised as exported
            from ...supernet import reestimate_bn

            model = self._extract(genome)
            reestimate_bn(model, self._bn_x())
        return candidate_record(genome, model, cal, exit_macs, c.constraints, rule, self._bn_x()[:64],
                                seed, 0.0, t0, sizes=sizes, params=params)

    def _param_count(self, sg: Genome, genome: Genome) -> int:
        """Parameters of `build_eenn`'s model for `genome` (BN statistics included), from the sliced weights' shapes."""
        from ...supernet import subnet_weights

        sn = self.supernet
        if self._weights is None:
            self._weights = sn.net.numpy_weights()
        w = subnet_weights(sn.spec, self._weights, sg)
        if sg is not genome:
            w = {k: v for k, v in w.items() if not k.startswith("exit_")}
        return int(sum(a.size for arrs in w.values() for a in arrs))

    def _as_supernet_genome(self, genome: Genome) -> Genome:
        """A genome of the supernet's space with the run genome's backbone (and one default exit)."""
        sn = self.supernet
        return sn.space.repair(Genome.make(genome.params, [ExitGene(True)] + [ExitGene(False)] *
                                           (sn.space.n_exit_points - 1)))

    def finalize(self, record: CandidateRecord, out_dir: Path) -> FinalRecord:
        """Fine-tune from inherited weights, exits distilled from the largest subnet (kept only if validation improves
        where the member is reported: `place_member`), re-calibrate, measure.

        Args:
            record: the candidate's search-stage record.
            out_dir: the folder its model is saved in.

        Returns:
            Its final record (`dropped` when it misses a constraint).
        """
        c = self.context
        t0 = time.time()
        b = c.budget
        model, exit_macs, seed = self._inherited(Genome.from_dict(record.genome))
        train_s, tuned, val_outputs = 0.0, None, None
        if self.finetune and b.final_epochs + b.final_head_epochs > 0:
            train_s, tuned, val_outputs = self._finetune(model, exit_macs, seed, self._train_set(b.final_train),
                                                         b.final_epochs, b.final_head_epochs,
                                                         keep_at=float(record.metrics.expected_macs))
        return final_record(record, model, c.dataset(), exit_macs, exit_macs, exit_rule(c.space), c.target,
                            self.calibration, seed, out_dir, train_s, t0, final_macs=b.final_macs,
                            tolerance=b.accuracy_tolerance, extra={"fine_tune": tuned} if tuned else None,
                            val_outputs=val_outputs)

    def screen(self, records: Sequence[CandidateRecord]) -> List[CandidateRecord]:
        """A brief fine-tune of each record, judged on the whole validation split (`Budget.screen`).

        The middle fidelity: the subnet is fine-tuned as in `finalize` for one exit-phase epoch on
        `Budget.screen_train` images (BN re-estimated afterwards) and placed as the final stage places a member
        (`place_member`); the figure is the better of the fine-tuned and inherited weights' there.

        Args:
            records: search-stage (or re-scored) records; their ids, stage and time are kept.

        Returns:
            New records (not written to the archive), each with ``extra["screened"]``: the training images,
            seconds, whether the fine-tuned weights were kept, and the accuracy and expected MACs it replaces.
        """
        from ...supernet import reestimate_bn

        c = self.context
        data, b = c.dataset(), c.budget
        rule = exit_rule(c.space)
        train = self._train_set(b.screen_train)
        bounded = bool(c.constraints.max_flash or c.constraints.max_ram)
        out = []
        for r in records:
            t0 = time.time()
            genome = Genome.from_dict(r.genome)
            model, exit_macs, seed = self._inherited(genome)

            cap = float(r.metrics.expected_macs)
            before = self._val_point(model, exit_macs, cap)
            train_s = self._finetune(model, exit_macs, seed, train, 0, 1)[0]
            reestimate_bn(model, self._bn_x())   # a short fine-tune leaves BN statistics of its last few batches
            after = self._val_point(model, exit_macs, cap)
            tuned = after.result.accuracy >= before.result.accuracy
            cal = after if tuned else before
            m = r.metrics
            sizes = {"flash_bytes": m.flash_bytes, "arena_bytes": m.arena_bytes}
            if bounded and None in sizes.values():          # not measured in the search: measured now
                sizes = None
            elif bounded:                                   # measured again if the export keeps other stages
                sizes = sizes_still_hold(sizes, r.thresholds, cal.thresholds)
            new = candidate_record(genome, model, cal, exit_macs, c.constraints, rule, self._bn_x()[:64], seed,
                                   train_s, t0, sizes=sizes, params=int(model.count_params()))
            seen = {"n_train": int(len(train.y_train)), "seconds": round(time.time() - t0, 3),
                    "fine_tuned_kept": bool(tuned), "n_val": int(len(data.y_val)),
                    "before_accuracy": float(m.accuracy), "before_expected_macs": float(m.expected_macs),
                    "inherited_accuracy": float(before.result.accuracy)}
            out.append(dataclasses.replace(new, id=r.id, stage=r.stage, time=r.time,
                                           extra=dict(r.extra, **new.extra, screened=seen)))
        return out

    def _inherited(self, genome: Genome):
        """(Keras subnet with inherited weights, BN re-estimated; its staged exit MACs; its training seed)."""
        from ...macs import profile_macs
        from ...supernet import reestimate_bn

        model = self._extract(genome)
        reestimate_bn(model, self._bn_x())
        return model, [int(m) for m in profile_macs(model).exit_macs], candidate_seed(self.context.seed, genome)

    def _train_set(self, n: Optional[int]):
        """The run's data with its training split cut to n images (seeded; None: all)."""
        c = self.context
        data = c.dataset()
        return data.subset(train=n, val=0, test=0, seed=int(c.seed)) if n is not None else data

    def _val_outputs(self, model) -> Tuple[Any, Any]:
        """`predict_exits` of `model` on the whole validation split: (exit probabilities, confidences)."""
        from ...predict import predict_exits

        return predict_exits(model, self.context.dataset().x_val)

    def _val_point(self, model, exit_macs: Sequence[int], cap: float, outputs: Optional[Tuple[Any, Any]] = None):
        """`model` calibrated on the whole validation split where the final stage places a member (`final_record`);
        `outputs`: its `_val_outputs`, when already computed."""
        c = self.context
        data, b = c.dataset(), c.budget
        probs, confs = self._val_outputs(model) if outputs is None else outputs
        return place_member(probs, confs, exit_macs, exit_macs, data.y_val, exit_rule(c.space), c.target,
                            self.calibration, b.accuracy_tolerance, b.final_macs, cap)[0]

    def _finetune(self, model, exit_macs: Sequence[int], seed: int, train, epochs: int, head_epochs: int,
                  keep_at: Optional[float] = None) -> Tuple[float, Optional[Dict[str, Any]], Optional[Tuple[Any, Any]]]:
        """Fine-tune in place on `train` (exits distilled from the largest subnet, a third of the learning rate,
        `Budget.final_schedule`). With
        `keep_at` (search-time expected MACs) the inherited weights come back unless validation accuracy improves at
        the point the final stage reports (`_val_point`). Returns the training seconds and, with `keep_at`, what the
        check saw: ``{"kept", "inherited_accuracy", "fine_tuned_accuracy", "at_most_macs"}``, and the
        `_val_outputs` of the weights the model is left with (for `final_record`, which would predict them again);
        both None without `keep_at`."""
        from .proxy import train_built

        c, b = self.context, self.context.budget
        if keep_at is not None:
            inherited, out_before = model.get_weights(), self._val_outputs(model)
            before = self._val_point(model, exit_macs, keep_at, out_before).result.accuracy
        seconds = train_built(model, exit_macs, train, c.loss, seed, epochs, head_epochs, b.batch_size,
                              b.learning_rate / 3.0, teacher_logits=self._teacher(train.x_train),
                              lr_schedule=b.final_schedule)
        if keep_at is None:
            return seconds, None, None
        out_after = self._val_outputs(model)
        after = self._val_point(model, exit_macs, keep_at, out_after).result.accuracy
        kept = after >= before
        if not kept:
            model.set_weights(inherited)
        seen = {"kept": bool(kept), "inherited_accuracy": float(before), "fine_tuned_accuracy": float(after),
                "at_most_macs": float(keep_at) if b.final_macs == "search" else None}
        return seconds, seen, (out_after if kept else out_before)

    def prepare_final(self, run_tasks: Callable[[Callable[..., Tuple[int, Any]], Sequence[Any]],
                                                Iterable[Tuple[int, Any]]], workers: int) -> None:
        """Compute the final stage's distillation targets once, split over `workers`, into the run folder
        (`teacher`), before the finalists start; nothing when the final stage does not fine-tune or they are kept.

        Args:
            run_tasks: ``run_tasks(task, items)`` yields ``(index, result)`` of ``task(evaluator, index, item)``
                for every item (in the backend's worker processes, in parallel).
            workers: how many of them run at once.
        """
        b = self.context.budget
        if not (self.finetune and b.final_epochs + b.final_head_epochs > 0):
            return
        x = self._train_set(b.final_train).x_train
        path = self._teacher_file(x)
        if read_teacher(path, len(x), self.context.dataset().num_classes) is None:
            chunks = teacher_chunks(len(x), workers)
            write_teacher(path, concat_chunks(run_tasks(teacher_task, chunks), len(chunks)))

    def _teacher(self, x: np.ndarray) -> np.ndarray:
        """The distillation teacher: the largest subnet's final-exit logits on `x` (BN re-estimated), read from
        the run folder when `prepare_final` (or another process) computed them, else computed and kept there."""
        c = self.context
        path = self._teacher_file(x)
        if str(path) not in c.cache:
            got = read_teacher(path, len(x), c.dataset().num_classes)
            if got is None:
                got = self._teacher_rows(x)
                write_teacher(path, got)
            c.cache[str(path)] = got
        return c.cache[str(path)]

    def _teacher_file(self, x: np.ndarray) -> Path:
        from ...supernet.store import WEIGHTS_FILE

        return teacher_path(self.context.run_dir, teacher_key(x, self._bn_x(), self.folder / WEIGHTS_FILE))

    def _teacher_rows(self, x: np.ndarray) -> np.ndarray:
        """The teacher's logits on `x`, computed here (batches of `TEACHER_BATCH` from the first row)."""
        sn = self.supernet
        return np.asarray(sn.subnet_predict(sn.extreme_genome(True), x, batch_size=TEACHER_BATCH,
                                            bn_x=self._bn_x())[-1], np.float32)

    # ---------------------------------------------------------------- the supernet
    @property
    def supernet(self):
        """The loaded `nachos_tf.supernet.Supernet` (loaded lazily in worker processes)."""
        if self._supernet is None:
            self._load()
        return self._supernet

    def _supernet_space(self):
        """The space the supernet was trained for: the run's, or its manifest's when the backbone genes match."""
        from ...space import SearchSpace
        from ...supernet.store import read_manifest

        space = self.context.space
        m = read_manifest(self.folder)
        own = SearchSpace.from_dict(m["space"])
        if own.to_dict() == space.to_dict():
            return space
        same = (own.input_shape == space.input_shape and own.num_classes == space.num_classes
                and [(g.name, tuple(g.values)) for g in own.backbone_genes]
                == [(g.name, tuple(g.values)) for g in space.backbone_genes] and own.settings == space.settings)
        if not same:
            raise ConstraintError(f"the supernet in {self.folder} was trained for another backbone space")
        return own

    def _load(self) -> None:
        from ...supernet import Supernet

        space = self._supernet_space()
        self._supernet = Supernet.load(self.folder, space)
        self._weights = None

    def _find_or_train(self) -> None:
        """Put the run's supernet in `self.folder`: the shipped preset, the cache, or trained here
        (`supernet_source.find_or_train`)."""
        sn, self.source = find_or_train(self.context, self.folder, self.epochs, self._train_limit())
        if sn is None:
            self._load()
        else:
            self._supernet = sn

    def _train_limit(self) -> Optional[int]:
        return SUPERNET_TRAIN_LIMIT.get(self.context.budget.name) if self.epochs is None else None

    def _bn_x(self):
        c = self.context
        if "bn_x" not in c.cache:
            from ...supernet.extract import bn_images

            c.cache["bn_x"] = bn_images(c.dataset(), self.bn_images, seed=c.seed)
        return c.cache["bn_x"]

    def _val(self):
        c = self.context
        if "val" not in c.cache:
            from .proxy import proxy_subset

            sub = proxy_subset(c.dataset(), c.budget, c.seed)
            c.cache["val"] = (sub.x_val, sub.y_val)
        return c.cache["val"]

    def _extract(self, genome: Genome):
        """The subnet as the plain model `build_eenn(context.space, genome)` builds, supernet weights."""
        import keras

        from ...supernet import subnet_weights
        from ...supernet.extract import load_subnet_weights

        keras.backend.clear_session()
        sn = self.supernet
        if sn.space is self.context.space:
            return sn.extract(genome)
        from ...builder import build_eenn

        model = build_eenn(self.context.space, genome)           # e.g. a static genome, no exits
        w = subnet_weights(sn.spec, sn.net.numpy_weights(), self._as_supernet_genome(genome))
        names = {layer.name for layer in model.layers if layer.weights}
        load_subnet_weights(model, {k: v for k, v in w.items() if k in names})
        return model


def teacher_task(evaluator: SupernetEvaluator, index: int, item: Tuple[int, int]) -> Tuple[int, np.ndarray]:
    """A backend task of `SupernetEvaluator.prepare_final`: the teacher's logits on rows start..stop of the final
    stage's training images (in a worker process, or here)."""
    lo, hi = item
    x = evaluator._train_set(evaluator.context.budget.final_train).x_train
    return index, evaluator._teacher_rows(x[lo:hi])

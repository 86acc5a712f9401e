"""Progressive shrinking (Once-For-All, Cai et al. 2020): train the largest network first, then open the
elastic genes stage by stage, each stage continuing from the previous one's weights.

A stage is one `train_supernet` call (`init_from` the previous stage) with its own epochs, learning rate
and elastic gene groups; every stage trains in its own sub-folder, so a stopped run resumes in the stage
it was in, and finished stages are loaded rather than trained again. The result's training record chains
every stage (`info["init_from"]`), so its cost counts all of them.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import keras

from ..errors import SupernetError
from .api import Supernet
from .fitting import train_supernet
from .gates import ELASTIC_GROUPS, elastic_groups


@dataclass(frozen=True)
class ShrinkStage:
    """One stage of progressive shrinking.

    Attributes:
        name: folder-safe stage name (letters, digits, "_" and "-").
        elastic: gene groups sampled in this stage (empty: the largest subnet alone).
        epochs: epochs of the stage.
        learning_rate: its peak learning rate (cosine decay inside a sandwich stage).
        sort_channels: sort expanded channels by importance before the stage (before expansion opens).
        sort_widths: sort the stem's and stages' output channels by importance before the stage (before
            the stem and stage widths open; `nachos_tf.supernet.sorting.sort_widths`).
        train_limit: train this stage on a seeded subset of that many images (None: the run's
            `train_limit`), e.g. the largest network on every image and the sandwich stages, which cost
            about twice as much per image, on fewer.
    """

    name: str
    elastic: Tuple[str, ...]
    epochs: int
    learning_rate: float
    sort_channels: bool = False
    sort_widths: bool = False
    train_limit: Optional[int] = None


_KDE = ("resolution", "kernel", "depth", "expand")

#: OFA's order: the largest network, then elastic kernel (with elastic resolution, as OFA samples it from
#: the start), depth, expansion (channels sorted first), and last the genes OFA does not have (stem and stage
#: widths, squeeze-excite, activation, exit-head widths).
DEFAULT_STAGES: Tuple[ShrinkStage, ...] = (
    ShrinkStage("largest", (), 5, 2e-3),
    ShrinkStage("kernel", _KDE[:2], 2, 1e-3),
    ShrinkStage("depth", _KDE[:3], 2, 1e-3),
    ShrinkStage("expand", _KDE, 2, 1e-3, sort_channels=True),
    ShrinkStage("all", ELASTIC_GROUPS, 4, 1e-3),
)


def _check(stages: Sequence[ShrinkStage]) -> None:
    if not stages:
        raise SupernetError("progressive shrinking needs at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise SupernetError(f"stage names must be unique, got {names}")
    for s in stages:
        if not isinstance(s, ShrinkStage):
            raise SupernetError(f"stages must be ShrinkStage, got {type(s).__name__}")
        if not s.name or not all(c.isalnum() or c in "_-" for c in s.name):
            raise SupernetError(f"stage name {s.name!r}: use letters, digits, '_' and '-'")
        if s.epochs < 1 or s.learning_rate <= 0:
            raise SupernetError(f"stage {s.name!r}: epochs >= 1 and learning_rate > 0 are required")
        if s.train_limit is not None and (isinstance(s.train_limit, bool)
                                          or not isinstance(s.train_limit, numbers.Integral) or s.train_limit < 1):
            raise SupernetError(f"stage {s.name!r}: train_limit must be a positive number of images or None, "
                                f"got {s.train_limit!r}")
        try:
            elastic_groups(s.elastic)
        except SupernetError as e:
            raise SupernetError(f"stage {s.name!r}: {e}") from None


def load_schedule(path: Union[str, Path]) -> Tuple[ShrinkStage, ...]:
    """A progressive-shrinking schedule from a JSON file: a list of `ShrinkStage` fields per stage.

    Args:
        path: the JSON file (e.g. `benchmarks/schedules/ps_long.json`).

    Returns:
        The stages, checked as `train_progressive` checks them.

    Raises:
        SupernetError: the file is missing, not JSON, not a list of objects, has unknown or missing fields,
            or describes an invalid schedule.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SupernetError(f"schedule {path}: {e}") from None
    if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
        raise SupernetError(f"schedule {path}: expected a JSON list of stage objects")
    known = {f.name for f in fields(ShrinkStage)}
    stages = []
    for i, d in enumerate(raw):
        unknown = sorted(set(d) - known)
        if unknown:
            raise SupernetError(f"schedule {path}, stage {i}: unknown fields {unknown}; use {sorted(known)}")
        try:
            stages.append(ShrinkStage(**{**d, "elastic": tuple(d.get("elastic", ()))}))
        except TypeError as e:
            raise SupernetError(f"schedule {path}, stage {i}: {e}") from None
    stages = tuple(stages)
    _check(stages)
    return stages


def train_progressive(space: Any, data: Any, folder: Union[str, Path],
                      stages: Sequence[ShrinkStage] = DEFAULT_STAGES, batch_size: int = 128,
                      n_random: int = 2, train_limit: Optional[int] = None, seed: int = 0,
                      init_from: Optional[Supernet] = None, verbose: Union[int, str] = 1,
                      callbacks: Optional[List[keras.callbacks.Callback]] = None, **kwargs: Any) -> Supernet:
    """Train a supernet for `space` by progressive shrinking, one `train_supernet` call per stage.

    Args:
        space: a `SearchSpace.mcu` space.
        data: a `nachos_tf.data.Dataset`.
        folder: run folder; stage i trains in `folder/<i>_<name>/` (resumable there), the result is also
            saved in `folder` itself.
        stages: the schedule (default `DEFAULT_STAGES`, 15 epochs). A stage with no elastic genes trains
            the largest subnet alone; the others follow the sandwich rule on their elastic genes.
        batch_size, n_random, seed: as `train_supernet`, for every stage.
        train_limit: as `train_supernet`, for every stage that does not set its own.
        init_from: start the first stage from this trained supernet instead of random weights.
        verbose: Keras progress verbosity.
        callbacks: extra Keras callbacks, given to every stage.
        **kwargs: other `train_supernet` settings (kd_temperature, head_weight, conf_weight, loss, augment,
            val_limit), the same for every stage.

    Returns:
        The supernet after the last stage (`info["stages"]` lists the schedule).

    Raises:
        SupernetError: a malformed schedule or setting.
        SupernetMismatchError: a stage folder holds a checkpoint made with other settings, space or data.
    """
    _check(stages)
    clash = {"epochs", "warmup_epochs", "learning_rate", "elastic", "sort_channels_first", "sort_widths_first",
             "folder"} & set(kwargs)
    if clash:
        raise SupernetError(f"{sorted(clash)} are set per stage (ShrinkStage), not for the whole run")
    folder = Path(folder)
    sn = init_from
    for i, st in enumerate(stages):
        sub = folder / f"{i}_{st.name}"
        if verbose:
            print(f"[nachos-tf] progressive shrinking stage {i + 1}/{len(stages)} {st.name!r}: "
                  f"{st.epochs} epochs, elastic {list(st.elastic) or 'none (largest subnet)'}", flush=True)
        largest_only = not st.elastic
        sn = train_supernet(space, data, epochs=st.epochs, warmup_epochs=st.epochs if largest_only else 0,
                            folder=sub, batch_size=batch_size, n_random=n_random,
                            learning_rate=st.learning_rate, seed=seed,
                            train_limit=train_limit if st.train_limit is None else int(st.train_limit),
                            verbose=verbose, callbacks=callbacks, init_from=sn,
                            elastic=None if largest_only else st.elastic,
                            sort_channels_first=st.sort_channels, sort_widths_first=st.sort_widths,
                            sort_channels_after_warmup=False, **kwargs)
    sn.info["stages"] = [asdict(s) for s in stages]
    sn.save(folder)
    return sn

"""keras-tuner bridge: a user's `build(hp)` function or `keras_tuner.HyperModel` as the backbone space.

The user marks candidate exit points in their model with `nachos_tf.ExitPoint()` layers (identities).
Every keras-tuner hyperparameter the build function registers becomes a categorical backbone gene; each
ExitPoint becomes a candidate exit point whose genes (on/off, head, width, pooling) the search chooses.
The built EENN is the user's graph, cloned with ExitPoints replaced by plain `Identity` layers, plus heads.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Dict, List, Sequence, Tuple

import keras
import numpy as np
from keras import layers

from . import naming
from .errors import GenomeError


@keras.saving.register_keras_serializable(package="nachos_tf")
class ExitPoint(layers.Identity):
    """Identity layer that marks a candidate exit point in a user's backbone (keras-tuner bridge)."""


def _build_fn(hypermodel: Any) -> Callable:
    if hasattr(hypermodel, "build") and callable(hypermodel.build):
        return hypermodel.build
    if callable(hypermodel):
        return hypermodel
    raise GenomeError(f"expected a build(hp) function or a keras_tuner.HyperModel, got {type(hypermodel).__name__}")


def _call_build(hypermodel: Any, hp) -> keras.Model:
    model = _build_fn(hypermodel)(hp)
    if not isinstance(model, keras.Model) or not hasattr(model, "outputs") or len(model.inputs) != 1:
        raise GenomeError("the hypermodel must return a functional keras.Model with one input")
    if len(model.outputs) != 1:
        raise GenomeError("the hypermodel must return a model with one output (the final class logits)")
    return model


def _exit_points(model: keras.Model) -> List[str]:
    return [l.name for l in model.layers if isinstance(l, ExitPoint)]


def _gene_values(hp_obj, float_steps: int) -> Tuple[Any, ...]:
    import keras_tuner as kt

    hps = kt.engine.hyperparameters
    if isinstance(hp_obj, hps.Choice):
        return tuple(hp_obj.values)
    if isinstance(hp_obj, hps.Boolean):
        return (False, True)
    if isinstance(hp_obj, hps.Int):
        step = hp_obj.step or 1
        return tuple(int(v) for v in range(hp_obj.min_value, hp_obj.max_value + 1, step))
    if isinstance(hp_obj, hps.Float):
        if hp_obj.step:
            n = int(round((hp_obj.max_value - hp_obj.min_value) / hp_obj.step)) + 1
            return tuple(float(hp_obj.min_value + i * hp_obj.step) for i in range(n))
        return tuple(float(v) for v in np.linspace(hp_obj.min_value, hp_obj.max_value, float_steps))
    if isinstance(hp_obj, hps.Fixed):
        return (hp_obj.value,)
    raise GenomeError(f"unsupported keras-tuner hyperparameter type {type(hp_obj).__name__} ({hp_obj.name})")


def discover_space(cls, hypermodel: Any, input_shape: Sequence[int], num_classes: int, confidence: bool,
                   float_steps: int):
    """Run `build(hp)` once with default values to find the hyperparameters and the ExitPoints."""
    import keras_tuner as kt

    from .space import Gene

    hp = kt.HyperParameters()
    model = _call_build(hypermodel, hp)
    points = _exit_points(model)
    if not points:
        raise GenomeError("the hypermodel places no nachos_tf.ExitPoint layer: mark candidate exit points "
                          "with x = nachos_tf.ExitPoint()(x)")
    genes = [Gene(h.name, _gene_values(h, float_steps)) for h in hp.space]
    genes = [g for g in genes if len(g.values) > 1]
    space = cls(input_shape, num_classes, genes, len(points), kind="hypermodel", confidence=confidence,
                hypermodel=hypermodel, settings={"hp_config": hp.get_config(), "exit_points": points})
    return space


def _hp_for(space, genome):
    import keras_tuner as kt

    hp = kt.HyperParameters.from_config(space.settings["hp_config"])
    for name, value in genome.backbone:
        hp.values[name] = value
    return hp


def _backbone(space, genome) -> keras.Model:
    model = _call_build(space.hypermodel, _hp_for(space, genome))
    points = _exit_points(model)
    if len(points) != space.n_exit_points:
        raise GenomeError(f"the hypermodel placed {len(points)} ExitPoint layers for these hyperparameters, "
                          f"but {space.n_exit_points} when the space was made: the number of exit points "
                          "must not depend on the hyperparameters")
    return model


def exit_point_shapes(space, genome) -> List[Tuple[int, int, int]]:
    """(H, W, C) of each ExitPoint's tensor for this genome's backbone (cached per backbone)."""
    return list(_shapes_cached(space, genome.backbone))


@lru_cache(maxsize=256)
def _shapes_cached_impl(space_id: int, backbone: Tuple) -> Tuple:
    space = _SPACES[space_id]
    from .space import Genome

    model = _backbone(space, Genome(backbone, ()))
    shapes = []
    for name in _exit_points(model):
        shp = tuple(model.get_layer(name).output.shape[1:])
        if len(shp) != 3:
            raise GenomeError(f"ExitPoint {name!r} must sit on a 4-D feature map (N, H, W, C), got {shp}")
        shapes.append(tuple(int(s) for s in shp))
    return tuple(shapes)


_SPACES: Dict[int, Any] = {}


def _shapes_cached(space, backbone):
    _SPACES[id(space)] = space
    return _shapes_cached_impl(id(space), backbone)


def build_from_hypermodel(space, genome, name: str) -> keras.Model:
    """User backbone for this genome, ExitPoints replaced by `exit_k_point` identities, exit heads added."""
    from .builder import attach_exit_head

    user = _backbone(space, genome)
    points = _exit_points(user)
    enabled = {points[i]: k for k, i in enumerate(genome.exit_positions)}
    out_layer = user.outputs[0]._keras_history[0]

    def clone(layer):
        cfg = layer.get_config()
        if isinstance(layer, ExitPoint):
            k = enabled.get(layer.name)
            return layers.Identity(name=naming.point_name(k) if k is not None else layer.name)
        if layer is out_layer:
            cfg["name"] = naming.FINAL
        return layer.__class__.from_config(cfg)

    flat = keras.models.clone_model(user, clone_function=clone)
    outputs = []
    for k, pos in enumerate(genome.exit_positions):
        x = flat.get_layer(naming.point_name(k)).output
        outputs += attach_exit_head(x, k, genome.exits[pos], space.num_classes, space.confidence)
    outputs.append(flat.outputs[0])
    return keras.Model(flat.inputs, outputs, name=name)

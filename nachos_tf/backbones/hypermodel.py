"""keras-tuner bridge: a user's `build(hp)` function or `keras_tuner.HyperModel` as the backbone family.

The user marks candidate exit points in their model with `nachos_tf.ExitPoint()` layers (identities).
Every keras-tuner hyperparameter the build function registers becomes a categorical backbone gene; each
ExitPoint becomes a candidate exit point whose genes (on/off, head, width, pooling) the search chooses.
The built EENN is the user's graph, cloned with ExitPoints replaced by plain `Identity` layers, plus heads.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import keras
import numpy as np
from keras import layers

from .. import naming
from ..errors import GenomeError
from ..genome import Gene, Genome
from ..heads import attach_exit_head
from .base import BackboneFamily, Shape, SpaceView

_SHAPE_CACHE_SIZE = 256


@keras.saving.register_keras_serializable(package="nachos_tf")
class ExitPoint(layers.Identity):
    """Identity layer that marks a candidate exit point in a user's backbone (keras-tuner bridge).

    Use it in a `build(hp)` function as `x = nachos_tf.ExitPoint()(x)` on a 4-D (N, H, W, C) feature map.

    Args:
        **kwargs: Keras layer arguments (e.g. `name`), passed to `keras.layers.Identity`.
    """


class HypermodelFamily(BackboneFamily):
    """A keras-tuner `build(hp)` function or `HyperModel` as a backbone family (`"hypermodel"` kind).

    Made by `HypermodelFamily.discover(hypermodel)` (what `SearchSpace.from_hypermodel` calls). Holds the
    hypermodel and a per-family cache of exit-point shapes by backbone genes.

    Args:
        hypermodel: A `build(hp)` function or a `keras_tuner.HyperModel`.
        genes: Backbone genes (the hyperparameters with more than one value).
        exit_points: Names of the user's ExitPoint layers, in graph order.
        hp_config: `keras_tuner.HyperParameters.get_config()` of the discovery run.
    """

    kind = "hypermodel"
    supports_supernet = False

    def __init__(self, hypermodel: Any, genes: Sequence[Gene], exit_points: Sequence[str],
                 hp_config: Mapping[str, Any]):
        self.hypermodel = hypermodel
        self.genes = list(genes)
        self.n_exit_points = len(exit_points)
        self.settings: Dict[str, Any] = {"hp_config": hp_config, "exit_points": list(exit_points)}
        self._shapes: "OrderedDict[Tuple, Tuple[Shape, ...]]" = OrderedDict()

    @classmethod
    def discover(cls, hypermodel: Any, float_steps: int = 5) -> "HypermodelFamily":
        """Run `build(hp)` once with default values to find the hyperparameters and the ExitPoints.

        Args:
            hypermodel: A `build(hp)` function or a `keras_tuner.HyperModel`.
            float_steps: Number of values a `hp.Float` without a step is discretised to.

        Returns:
            The family.

        Raises:
            GenomeError: the hypermodel is not callable, does not return a one-input one-output functional
                model, places no ExitPoint, or uses an unsupported hyperparameter type.
        """
        import keras_tuner as kt

        hp = kt.HyperParameters()
        model = _call_build(hypermodel, hp)
        points = _exit_points(model)
        if not points:
            raise GenomeError("the hypermodel places no nachos_tf.ExitPoint layer: mark candidate exit points "
                              "with x = nachos_tf.ExitPoint()(x)")
        genes = [Gene(h.name, _gene_values(h, float_steps)) for h in hp.space]
        genes = [g for g in genes if len(g.values) > 1]
        return cls(hypermodel, genes, points, hp.get_config())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HypermodelFamily":
        """Not possible: the JSON does not hold the user's code.

        Raises:
            GenomeError: always; pass the hypermodel space object instead.
        """
        raise GenomeError(f"only the built-in 'mcu' space can be rebuilt from JSON, got {d.get('kind')!r}; "
                          "pass the hypermodel space object instead")

    def exit_feature_shapes(self, space: SpaceView, genome: Genome) -> List[Shape]:
        """(H, W, C) of each ExitPoint's tensor for this genome's backbone (cached per backbone genes).

        Args:
            space: The space (not read: the user's graph fixes the input).
            genome: A genome with valid backbone genes.

        Returns:
            One shape per candidate exit point.

        Raises:
            GenomeError: an ExitPoint does not sit on a 4-D feature map, or the number of ExitPoints
                depends on the hyperparameters.
        """
        key = genome.backbone
        if key in self._shapes:
            self._shapes.move_to_end(key)
            return list(self._shapes[key])
        model = self._backbone(genome)
        shapes = []
        for name in _exit_points(model):
            shp = tuple(model.get_layer(name).output.shape[1:])
            if len(shp) != 3:
                raise GenomeError(f"ExitPoint {name!r} must sit on a 4-D feature map (N, H, W, C), got {shp}")
            shapes.append(tuple(int(s) for s in shp))
        self._shapes[key] = tuple(shapes)
        if len(self._shapes) > _SHAPE_CACHE_SIZE:
            self._shapes.popitem(last=False)
        return list(shapes)

    def build(self, space: SpaceView, genome: Genome, name: str) -> keras.Model:
        """User backbone for this genome, ExitPoints replaced by `exit_k_point` identities, exit heads added.

        Args:
            space: The space (classes, confidence).
            genome: A valid genome.
            name: The Keras model name.

        Returns:
            The flat functional EENN; the user's output layer is renamed `final`.

        Raises:
            GenomeError: the hypermodel fails for these hyperparameters (see `discover`).
        """
        user = self._backbone(genome)
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

    def _backbone(self, genome: Genome) -> keras.Model:
        import keras_tuner as kt

        hp = kt.HyperParameters.from_config(self.settings["hp_config"])
        for gene_name, value in genome.backbone:
            hp.values[gene_name] = value
        model = _call_build(self.hypermodel, hp)
        points = _exit_points(model)
        if len(points) != self.n_exit_points:
            raise GenomeError(f"the hypermodel placed {len(points)} ExitPoint layers for these hyperparameters, "
                              f"but {self.n_exit_points} when the space was made: the number of exit points "
                              "must not depend on the hyperparameters")
        return model

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_shapes"] = OrderedDict()  # a cache: not shipped to worker processes
        return state

    def __repr__(self) -> str:
        return f"HypermodelFamily({_build_fn(self.hypermodel).__qualname__}, genes={len(self.genes)}, " \
               f"n_exit_points={self.n_exit_points})"


def _build_fn(hypermodel: Any) -> Callable:
    if hasattr(hypermodel, "build") and callable(hypermodel.build):
        return hypermodel.build
    if callable(hypermodel):
        return hypermodel
    raise GenomeError(f"expected a build(hp) function or a keras_tuner.HyperModel, got {type(hypermodel).__name__}")


def _call_build(hypermodel: Any, hp: Any) -> keras.Model:
    model = _build_fn(hypermodel)(hp)
    if not isinstance(model, keras.Model) or not hasattr(model, "outputs") or len(model.inputs) != 1:
        raise GenomeError("the hypermodel must return a functional keras.Model with one input")
    if len(model.outputs) != 1:
        raise GenomeError("the hypermodel must return a model with one output (the final class logits)")
    return model


def _exit_points(model: keras.Model) -> List[str]:
    return [l.name for l in model.layers if isinstance(l, ExitPoint)]


def _gene_values(hp_obj: Any, float_steps: int) -> Tuple[Any, ...]:
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

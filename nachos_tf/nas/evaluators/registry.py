"""The evaluators by name: the built-in ones, plug-ins declared under the entry-point group
``nachos_tf.evaluators``, and classes registered with `register_evaluator`."""
from __future__ import annotations

from typing import Any, Mapping, Union

from ...errors import ConstraintError
from . import proxy  # noqa: F401  (registers "proxy")
from .base import REGISTRY, Evaluator, register_evaluator

__all__ = ["make_evaluator", "evaluator_names", "evaluator_from_dict"]


def evaluator_names() -> list:
    """Names of the registered evaluators."""
    _load_builtin()
    return sorted(REGISTRY)


_PLUGINS_LOADED = []


def _load_builtin() -> None:
    """Register the built-in evaluators and those other packages declare under the entry-point group
    ``nachos_tf.evaluators`` (each entry point names an evaluator class)."""
    try:
        from . import supernet  # noqa: F401  (registers "supernet")
    except ImportError:  # pragma: no cover - supernet evaluator not available
        pass
    if not _PLUGINS_LOADED:
        _PLUGINS_LOADED.append(True)
        from importlib.metadata import entry_points

        for ep in entry_points(group="nachos_tf.evaluators"):
            try:
                register_evaluator(ep.load())
            except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break the CLI
                import warnings

                warnings.warn(f"evaluator plug-in {ep.name!r} could not be loaded: {exc}")


def make_evaluator(spec: Union[None, str, Evaluator], default: str = "proxy", **settings: Any) -> Evaluator:
    """An evaluator object from a name (with settings), an evaluator object, or None (the default).

    Raises:
        ConstraintError: an unknown name, or an object that does not implement the protocol.
    """
    if spec is None:
        spec = default
    if isinstance(spec, str):
        _load_builtin()
        if spec not in REGISTRY:
            raise ConstraintError(f"unknown evaluator {spec!r}; choose one of {', '.join(sorted(REGISTRY))}")
        return REGISTRY[spec](**settings)
    if settings:
        raise ConstraintError("evaluator settings are given to the evaluator object itself, not to search()")
    if not isinstance(spec, Evaluator) or not isinstance(getattr(spec, "name", None), str):
        raise ConstraintError(f"evaluator must be a name ({', '.join(evaluator_names())}) or an object with name, "
                              f"setup, evaluate, finalize and to_dict; got {type(spec).__name__}")
    return spec


def evaluator_from_dict(d: Mapping[str, Any]) -> Evaluator:
    """The evaluator a run's config.json names (its class re-created with the recorded settings).

    Raises:
        ConstraintError: the name is not registered (e.g. a custom evaluator not imported in this process).
    """
    d = dict(d)
    name = d.pop("name")
    _load_builtin()
    if name not in REGISTRY:
        raise ConstraintError(f"the run was evaluated by {name!r}, which is not registered in this process: "
                              "import the module that defines it (register_evaluator) before resuming")
    cls = REGISTRY[name]
    if hasattr(cls, "from_dict"):
        return cls.from_dict(d)
    return cls(**d)

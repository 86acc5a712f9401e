"""The public API keeps its documentation: every class and function `nachos_tf` exports (and `tflite_export` in
its `__all__`, and `tflite_export.convert`, the one door between the two), and every public method of those classes, has a docstring with `Args:` (when it takes parameters), `Returns:` (when it returns
something), type hints on its parameters and a return annotation; a class built from parameters documents them
(`Args:` or `Attributes:`)."""
import inspect

import pytest

import nachos_tf as nt
import tflite_export
import tflite_export.convert

_EMPTY = inspect.Parameter.empty
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _exported():
    yield from ((n, getattr(nt, n), "nachos_tf") for n in sorted(dir(nt)) if not n.startswith("_"))
    for mod in (tflite_export, tflite_export.convert):
        names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
        yield from ((f"{mod.__name__}.{n}", getattr(mod, n), "tflite_export") for n in names)


def _public_callables():
    out, seen = [], set()
    for name, obj, package in _exported():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
            continue
        if not getattr(obj, "__module__", "").startswith(package):
            continue
        seen.add(id(obj))
        out.append((name, obj))
        if inspect.isclass(obj):
            for k, v in vars(obj).items():
                if k.startswith("_"):
                    continue
                if isinstance(v, (classmethod, staticmethod)):
                    v = v.__func__
                if inspect.isfunction(v):
                    out.append((f"{name}.{k}", v))
    return out


def _gaps(name, obj):
    doc = inspect.getdoc(obj) or ""
    if not doc:
        return ["no docstring"]
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return []                                   # the typed errors: a message, no parameters of their own
        params = [p for p in inspect.signature(obj).parameters.values() if p.name != "self" and p.kind not in _VARIADIC]
        init_doc = inspect.getdoc(obj.__init__) or ""
        if params and "Args:" not in doc and "Attributes:" not in doc and "Args:" not in init_doc:
            return ["constructor parameters undocumented (no Args:/Attributes:)"]
        return []
    sig = inspect.signature(obj)
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    gaps = []
    if params and "Args:" not in doc:
        gaps.append("no Args:")
    if sig.return_annotation is _EMPTY:
        gaps.append("no return annotation")
    elif sig.return_annotation not in (None, "None") and "Returns:" not in doc and "Yields:" not in doc:
        gaps.append("no Returns:")
    untyped = [p.name for p in params if p.annotation is _EMPTY and p.kind not in _VARIADIC]
    if untyped:
        gaps.append(f"untyped parameters {untyped}")
    return gaps


def test_the_api_has_the_expected_entry_points():
    names = {n for n, _ in _public_callables()}
    for n in ("search", "train_eenn", "build_eenn", "profile_macs", "calibrate", "Supernet.extract",
              "SupernetEvaluator.evaluate", "Constraints", "Budget.preset", "load_run",
              "tflite_export.export_eenn", "tflite_export.StagedRunner.classify", "tflite_export.convert.export_solution"):
        assert n in names


@pytest.mark.parametrize("name,obj", _public_callables(), ids=lambda v: v if isinstance(v, str) else "")
def test_public_callable_is_documented_and_typed(name, obj):
    assert _gaps(name, obj) == [], f"{name}: {_gaps(name, obj)}"

"""Keras graph surgery for the export: re-call a functional model's layers on new input tensors.

Used to cut an EENN into stage models (`stages.split_stages`) and to give a model a static batch
size of 1 (`batch1_model`), both sharing the source model's layers and weights.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

from nachos_tf.errors import ExportError

__all__ = ["subgraph", "batch1_model"]


def _producing_node(t):
    op, node_index, _ = t._keras_history
    return op._inbound_nodes[node_index]


def subgraph(model, seeds: Dict[int, object], targets: Sequence, stage_desc: str) -> List[object]:
    """Re-calls the model's (shared) layers on new tensors: seeds maps id(old tensor) -> new tensor.

    Only the nodes the targets need are called, in the model's topological order.

    Args:
        model: a Keras 3 functional model.
        seeds: id(tensor of `model`) -> the new tensor that replaces it.
        targets: tensors of `model` to recompute from the seeds.
        stage_desc: what is being built, for error messages.

    Returns:
        The new tensors, one per target.

    Raises:
        ExportError: a target needs a tensor from before the seeds (a skip connection across a stage
            boundary).
    """
    depth_of = {}
    for d, nodes in model._nodes_by_depth.items():
        for n in nodes:
            depth_of[id(n)] = d
    needed = {}
    stack = list(targets)
    seen = set()
    while stack:
        t = stack.pop()
        if id(t) in seeds or id(t) in seen:
            continue
        seen.add(id(t))
        node = _producing_node(t)
        if node.is_input or id(node) not in depth_of:
            raise ExportError(f"{stage_desc} needs tensor {t.name!r} from before its input: a connection "
                              f"crosses the stage boundary, so the model cannot be split there")
        needed[id(node)] = node
        stack.extend(node.input_tensors)
    tensors = dict(seeds)
    for node in sorted(needed.values(), key=lambda n: -depth_of[id(n)]):
        args, kwargs = node.arguments.fill_in(tensors)
        out = node.operation(*args, **kwargs)
        outs = out if isinstance(out, (list, tuple)) else [out]
        for a, b in zip(node.outputs, outs):
            tensors[id(a)] = b
    return [tensors[id(t)] for t in targets]


def batch1_model(model):
    """The same Keras model (shared layers and weights) with a static batch size of 1, as on the device.

    Args:
        model: a single-input Keras 3 functional model.

    Returns:
        A keras.Model sharing `model`'s layers, with input batch size 1.

    Raises:
        ExportError: the model has more than one input.
    """
    import keras

    if len(model.inputs) != 1:
        raise ExportError("batch1_model needs a single-input model")
    t = model.inputs[0]
    inp = keras.Input(shape=tuple(t.shape[1:]), batch_size=1, dtype=t.dtype, name="image")
    outs = subgraph(model, {id(t): inp}, list(model.outputs), "the model")
    return keras.Model(inp, outs, name=f"{model.name}_b1")

"""MAC profiler for Keras 3 functional models: per-layer MACs and the staged cost of each exit.

Convention (one everywhere, see DESIGN.md): multiply-accumulates of convolutions and of every layer
with a weight matmul (Dense, EinsumDense); bias, normalisation, activations, pooling and element-wise
ops count 0 and are flagged ``zero_cost``. The staged cost of exit k is the MACs of every layer needed
to produce the outputs of exits 0..k (the union of their ancestors, each layer counted once), because
a sample that leaves at exit k has already paid for the earlier heads. A layer with weights whose MACs
are unknown (LSTM, attention, wrappers, ...) raises :class:`ProfileError` rather than counting 0.

Nested models (a ``keras.Model`` used as a layer, e.g. a ``keras.applications`` backbone) are
flattened: their layers are listed as ``outer/inner`` rows and their whole cost belongs to the node
that calls them.
"""
from __future__ import annotations

import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import keras

from .errors import ProfileError
from .units import human
from .naming import contract_problem, exit_layout, output_names

Shape = Tuple[Optional[int], ...]

# Layers with weights whose cost is 0 by convention (normalisation, per-channel scaling, lookups).
_ZERO_COST_WEIGHTED = (
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization",
    "UnitNormalization", "SpectralNormalization", "Normalization", "PReLU", "Embedding",
)
# Weightless layers / ops that multiply two activations: no convention for them, so refuse.
_ACTIVATION_PRODUCTS = (
    "Dot", "Attention", "AdditiveAttention", "Matmul", "Einsum", "Tensordot", "Conv", "DepthwiseConv",
    "SeparableConv", "ConvTranspose", "Inner", "Outer", "Vdot",
)


def _layer_classes(names: Sequence[str]) -> tuple:
    return tuple(c for c in (getattr(keras.layers, n, None) for n in names) if isinstance(c, type))


_ZERO_COST_CLASSES = _layer_classes(_ZERO_COST_WEIGHTED)


@dataclass(frozen=True)
class LayerMacs:
    """One row of the profile: one call of one layer (shared layers get one row per call)."""

    name: str
    class_name: str
    output_shape: Shape
    macs: int
    params: int
    zero_cost: bool


@dataclass
class MacReport:
    """Per-layer MACs and staged per-exit MACs of a model (see the module docstring).

    Attributes:
        layers: One `LayerMacs` row per layer call, in topological order.
        exit_names: The exit names, in depth order.
        exit_outputs: The model output names of each exit (logits, then confidence if any).
        exit_macs: The staged MACs of each exit (every layer needed for exits 0..k).
        total: MACs of the whole model.
        total_params: Parameters of the whole model (shared layers counted once).
        naming: Why the outputs are not mapped by the exit_k/final contract ("" if they are).
    """

    layers: List[LayerMacs]
    exit_names: List[str]
    exit_outputs: List[List[str]]
    exit_macs: List[int]
    total: int
    total_params: int = field(default=0)
    naming: str = field(default="")

    @property
    def zero_cost_layers(self) -> List[str]:
        """Names of the rows that count 0 MACs by convention (listed separately in the table)."""
        return [r.name for r in self.layers if r.zero_cost]

    def expected_macs(self, exit_rates: Union[Sequence[float], Mapping[str, float]]) -> float:
        """Expected MACs per sample: sum over exits of rate_k x staged cost_k.

        Args:
            exit_rates: One rate per exit in depth order, or a mapping exit name -> rate (missing exits
                get 0); the rates must be non-negative and sum to 1.

        Returns:
            The expected MACs per sample.

        Raises:
            ProfileError: Unknown exit names, wrong number of rates, or rates negative, not finite or not
                summing to 1.
        """
        if isinstance(exit_rates, Mapping):
            unknown = set(exit_rates) - set(self.exit_names)
            if unknown:
                raise ProfileError(f"unknown exit names in exit_rates: {sorted(unknown)}; "
                                   f"exits are {self.exit_names}")
            rates = [float(exit_rates.get(n, 0.0)) for n in self.exit_names]
        else:
            rates = [float(r) for r in exit_rates]
        if len(rates) != len(self.exit_macs):
            raise ProfileError(f"got {len(rates)} exit rates for {len(self.exit_macs)} exits "
                               f"({self.exit_names})")
        if any(not math.isfinite(r) or r < 0 for r in rates):
            raise ProfileError(f"exit rates must be finite and non-negative, got {rates}")
        if abs(sum(rates) - 1.0) > 1e-6:
            raise ProfileError(f"exit rates must sum to 1, got sum {sum(rates):.6g}")
        return float(sum(r * m for r, m in zip(rates, self.exit_macs)))

    def to_dict(self) -> dict:
        """JSON-safe form of the report.

        Returns:
            A dict with layers, exits (name, outputs, staged and incremental MACs) and totals.
        """
        prev = 0
        exits = []
        for name, outs, m in zip(self.exit_names, self.exit_outputs, self.exit_macs):
            exits.append({"name": name, "outputs": list(outs), "macs": int(m), "incremental_macs": int(m - prev)})
            prev = m
        return {
            "layers": [dict(asdict(r), output_shape=list(r.output_shape)) for r in self.layers],
            "exits": exits,
            "total": int(self.total),
            "total_params": int(self.total_params),
        }

    def table(self) -> str:
        """Human-readable per-layer table (compute layers, then zero-cost ones) and per-exit table.

        Returns:
            The tables as text.
        """
        def render(header, rows, nleft=3):
            widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
            fmt = lambda row: "  ".join(str(c).ljust(w) if i < nleft else str(c).rjust(w)  # noqa: E731
                                        for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])

        def shape(s):
            return "(" + ", ".join("None" if d is None else str(d) for d in s) + ")"

        compute = [r for r in self.layers if not r.zero_cost]
        zero = [r for r in self.layers if r.zero_cost]
        hdr = ("Layer", "Class", "Output shape", "MACs", "Params")
        parts = ["Layers with MACs",
                 render(hdr, [(r.name, r.class_name, shape(r.output_shape), human(r.macs), human(r.params))
                              for r in compute] or [("-", "-", "-", "0", "0")])]
        if zero:
            parts += ["", "Zero-cost layers (0 MACs by convention)",
                      render(hdr, [(r.name, r.class_name, shape(r.output_shape), "0", human(r.params))
                                   for r in zero])]
        rows, prev = [], 0
        for name, outs, m in zip(self.exit_names, self.exit_outputs, self.exit_macs):
            pct = 100.0 * m / self.total if self.total else 0.0
            rows.append((name, ",".join(outs), human(m), human(m - prev), f"{pct:.1f}%"))
            prev = m
        parts += ["", "Exits (staged cost: every layer needed for exits 0..k)"
                  + (f"; names do not follow the exit_k/final contract ({self.naming}), so every output is "
                     "one exit, in model order" if self.naming else ""),
                  render(("Exit", "Outputs", "Staged MACs", "Incremental", "% of total"), rows, nleft=2),
                  "", f"Total MACs: {human(self.total)} ({self.total:,})   Params: {human(self.total_params)}"]
        return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# graph walk


def _producer(t):
    """The Node that produced KerasTensor ``t`` (None for a graph entry point)."""
    hist = getattr(t, "_keras_history", None)
    if hist is None or hist.operation is None:
        return None
    return hist.operation._inbound_nodes[hist.node_index]


def _topo_nodes(inputs, outputs):
    """Nodes between ``inputs`` and ``outputs`` in topological order (DFS in output order), and a
    map node id -> parent node ids. Stops at the model's input tensors."""
    input_ids = {id(t) for t in inputs}
    order, parents, state = [], {}, {}
    for out in outputs:
        if id(out) in input_ids:
            continue
        root = _producer(out)
        if root is None:
            continue
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            key = id(node)
            if done:
                if state.get(key) != 2:
                    state[key] = 2
                    order.append(node)
                continue
            if state.get(key):
                continue
            state[key] = 1
            stack.append((node, True))
            ps = []
            for t in node.input_tensors:
                if id(t) in input_ids:
                    continue
                p = _producer(t)
                if p is None:
                    continue
                ps.append(p)
            parents[key] = [id(p) for p in ps]
            for p in reversed(ps):
                if not state.get(id(p)):
                    stack.append((p, False))
    return order, parents


def _ancestors(node_id, parents, memo) -> frozenset:
    if node_id in memo:
        return memo[node_id]
    seen, stack = {node_id}, [node_id]
    while stack:
        for p in parents.get(stack.pop(), ()):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    memo[node_id] = frozenset(seen)
    return memo[node_id]


def _shape(t) -> Shape:
    return tuple(None if d is None else int(d) for d in t.shape)


def _prod(dims, layer_name, what) -> int:
    out = 1
    for d in dims:
        if d is None:
            raise ProfileError(f"layer '{layer_name}': {what} has an unknown dimension; MACs depend on "
                               f"the input size, so build the model with a fixed input shape")
        out *= int(d)
    return out


def _spatial_and_channels(shape: Shape, data_format: str):
    if data_format == "channels_first":
        return shape[2:], shape[1]
    return shape[1:-1], shape[-1]


def _einsum_macs(layer, in_shape: Shape) -> int:
    """MACs of an EinsumDense per sample: the product of the sizes of every einsum index (each output
    element sums over the contracted ones), the batch index excluded. Sizes come from the input and
    kernel shapes (Keras may leave the symbolic output shape partly unknown)."""
    eq = layer.equation.replace(" ", "")
    lhs, out_spec = eq.split("->")
    in_spec, k_spec = lhs.split(",")
    kernel_shape = tuple(int(d) for d in layer.kernel.shape)
    sizes: Dict[str, Optional[int]] = {}
    ellipsis_dims: List[Optional[int]] = []
    if "..." in in_spec:
        head, tail = in_spec.split("...")
        n_ell = len(in_shape) - len(head) - len(tail)
        dims = list(in_shape[:len(head)]) + list(in_shape[len(in_shape) - len(tail):])
        ellipsis_dims = list(in_shape[len(head):len(head) + n_ell])
        if not head:  # the ellipsis starts with the batch dimension
            ellipsis_dims = ellipsis_dims[1:]
        letters, batch = head + tail, (head[:1] or None)
    else:
        dims, letters, batch = list(in_shape), in_spec, in_spec[:1]
    for ch, d in list(zip(letters, dims)) + list(zip(k_spec, kernel_shape)):
        if sizes.get(ch) is None:
            sizes[ch] = d
    every = (set(letters) | set(k_spec) | set(out_spec.replace("...", ""))) - {batch}
    return _prod([sizes.get(ch) for ch in sorted(every)] + ellipsis_dims, layer.name, "an einsum index")


def _op_macs(op, node) -> Tuple[int, bool]:
    """(MACs, zero_cost) of one call of a Keras layer or op."""
    name, cls = op.name, type(op).__name__
    L = keras.layers
    if not isinstance(op, keras.layers.Layer):  # a keras.ops call recorded in the functional graph
        if cls in _ACTIVATION_PRODUCTS:
            raise ProfileError(f"op '{name}' ({cls}) multiplies activations; its MACs are not defined "
                               f"by the nachos-tf convention")
        return 0, True
    ins = [_shape(t) for t in node.input_tensors]
    outs = [_shape(t) for t in node.outputs]
    fmt = getattr(op, "data_format", "channels_last")
    if isinstance(op, (L.SeparableConv1D, L.SeparableConv2D)):
        sp, cin = _spatial_and_channels(outs[0], fmt)[0], _spatial_and_channels(ins[0], fmt)[1]
        mid = _prod([cin], name, "the input channels") * op.depth_multiplier
        pos = _prod(sp, name, "the output")
        return pos * mid * math.prod(op.kernel_size) + pos * mid * op.filters, False
    if isinstance(op, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        sp, cin = _spatial_and_channels(outs[0], fmt)[0], _spatial_and_channels(ins[0], fmt)[1]
        return (_prod(sp, name, "the output") * _prod([cin], name, "the input channels")
                * op.depth_multiplier * math.prod(op.kernel_size)), False
    if isinstance(op, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        sp, cin = _spatial_and_channels(ins[0], fmt)
        return (_prod(sp, name, "the input") * _prod([cin], name, "the input channels")
                * op.filters * math.prod(op.kernel_size)), False
    if isinstance(op, (L.Conv1D, L.Conv2D, L.Conv3D)):
        sp = _spatial_and_channels(outs[0], fmt)[0]
        cin = _prod([_spatial_and_channels(ins[0], fmt)[1]], name, "the input channels")
        groups = getattr(op, "groups", 1) or 1
        return (_prod(sp, name, "the output") * op.filters * math.prod(op.kernel_size)
                * (cin // groups)), False
    if isinstance(op, L.Dense):
        return _prod(outs[0][1:], name, "the output") * _prod([ins[0][-1]], name, "the input"), False
    if isinstance(op, L.EinsumDense):
        return _einsum_macs(op, ins[0]), False
    if _ZERO_COST_CLASSES and isinstance(op, _ZERO_COST_CLASSES):
        return 0, True
    if cls in _ACTIVATION_PRODUCTS:
        raise ProfileError(f"layer '{name}' ({cls}) multiplies activations; its MACs are not defined "
                           f"by the nachos-tf convention")
    if op.weights:
        raise ProfileError(f"layer '{name}' ({cls}) has weights but its MACs are unknown to the "
                           f"profiler; refusing to count it as 0")
    return 0, True


def _inner_functional(model):
    """The functional graph of a nested model (a Functional, or a built Sequential's), or None."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model if hasattr(model, "_nodes_by_depth") else None


def _graph_inputs_outputs(model):
    try:
        return list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError) as e:
        raise ProfileError(f"model '{model.name}' has no symbolic graph ({e}); profile_macs needs a "
                           f"functional or built Sequential model") from e


def _profile_graph(inputs, outputs, prefix: str, seen_layers: set):
    """Rows per node: returns (topological nodes, parents map, {node id: [LayerMacs]})."""
    nodes, parents = _topo_nodes(inputs, outputs)
    calls: Dict[int, int] = {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
    node_rows: Dict[int, List[LayerMacs]] = {}
    for node in nodes:
        op = node.operation
        if getattr(node, "is_input", False) or isinstance(op, keras.layers.InputLayer):
            node_rows[id(node)] = []
            continue
        name = prefix + op.name
        if calls[id(op)] > 1:
            name += f"#{op._inbound_nodes.index(node)}"
        if isinstance(op, keras.Model):
            node_rows[id(node)] = _nested_rows(op, node, name, seen_layers)
            continue
        macs, zero = _op_macs(op, node)
        params = 0
        if isinstance(op, keras.layers.Layer) and id(op) not in seen_layers:
            seen_layers.add(id(op))
            params = int(op.count_params()) if op.weights else 0
        out_shape = _shape(node.outputs[0]) if node.outputs else ()
        node_rows[id(node)] = [LayerMacs(name, type(op).__name__, out_shape, int(macs), params, zero)]
    return nodes, parents, node_rows


def _nested_rows(model, node, name: str, seen_layers: set) -> List[LayerMacs]:
    inner = _inner_functional(model)
    if inner is None:
        raise ProfileError(f"nested model '{name}' ({type(model).__name__}) has no functional graph; "
                           f"pass a flat functional model")
    ins, outs = list(inner.inputs), list(inner.outputs)
    called = [_shape(t) for t in node.input_tensors]
    built = [_shape(t) for t in ins]
    if [s[1:] for s in called] != [s[1:] for s in built]:
        raise ProfileError(f"nested model '{name}' was built for inputs {built} but is called on "
                           f"{called}; its MACs depend on the call shape, so pass a flat model")
    nodes, _, node_rows = _profile_graph(ins, outs, name + "/", seen_layers)
    return [r for n in nodes for r in node_rows[id(n)]]


def profile_macs(model: keras.Model) -> MacReport:
    """Profile a flat (or nested-functional) Keras 3 functional model: per-layer and per-exit MACs.

    Exits follow :func:`nachos_tf.naming.exit_layout`: an ``exit_k_conf`` output is grouped with
    exit k; a model whose output names do not form a complete ``exit_0 .. final`` set has one exit
    per output, in output order (no output is ever dropped; ``MacReport.naming`` says why).

    Args:
        model: A functional or built Sequential Keras model with a fixed input shape.

    Returns:
        Its per-layer and staged per-exit MACs.

    Raises:
        ProfileError: `model` is not a Keras model or has no symbolic graph, an input size is unknown, a
            layer's MACs are not defined by the convention, or a nested model cannot be flattened.
    """
    if not isinstance(model, keras.Model):
        raise ProfileError(f"expected a keras.Model, got {type(model).__name__}")
    inputs, outputs = _graph_inputs_outputs(model)
    nodes, parents, node_rows = _profile_graph(inputs, outputs, "", set())
    rows = [r for n in nodes for r in node_rows[id(n)]]
    node_macs = {k: sum(r.macs for r in rs) for k, rs in node_rows.items()}

    names = output_names(model)
    layout = exit_layout(model)
    memo: Dict[int, frozenset] = {}
    paid: set = set()
    exit_macs, exit_outputs = [], []
    for spec in layout:
        idx = [spec.logits_index] + ([spec.conf_index] if spec.conf_index is not None else [])
        for i in idx:
            p = _producer(outputs[i])
            if p is not None:
                paid |= _ancestors(id(p), parents, memo)
        exit_macs.append(int(sum(node_macs.get(k, 0) for k in paid)))
        exit_outputs.append([names[i] for i in idx])
    return MacReport(
        layers=rows,
        exit_names=[s.name for s in layout],
        exit_outputs=exit_outputs,
        exit_macs=exit_macs,
        total=int(sum(r.macs for r in rows)),
        total_params=int(sum(r.params for r in rows)),
        naming=contract_problem(names) or "",
    )


def _load_reason(e: BaseException) -> str:
    """One short line for a Keras loading failure (Keras messages can run over many lines)."""
    text = str(e)
    if "safe_mode" in text and ("lambda" in text.lower() or "deserializ" in text.lower()):
        return ("it holds a Lambda layer (Python code), which Keras safe mode refuses to run; nachos-tf never "
                "loads code from a model file")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if len(first) > 240:
        first = first[:237] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def load_model_file(path: Union[str, Path], error: type = ProfileError):
    """Load a ``.keras`` (or legacy ``.h5``) model file in Keras safe mode, without compiling it.

    Args:
        path: the model file.
        error: the typed error class to raise (ProfileError here; RunDirError or ExportError for callers
            that read a run or export folder).
    Returns:
        The ``keras.Model``.
    Raises:
        error: one line naming the file: missing, not a Keras archive, unreadable, or holding a Lambda layer.
    """
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: no such file")
    if p.suffix == ".keras" and not zipfile.is_zipfile(p):
        raise error(f"{p}: not a Keras archive (a .keras file is a zip written by model.save())")
    try:
        return keras.saving.load_model(p, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for bad files; one typed error, one line
        raise error(f"{p}: cannot load as a Keras model ({_load_reason(e)})") from e


def load_and_profile(path: Union[str, Path]) -> MacReport:
    """Load a ``.keras`` (or legacy ``.h5``) model file without compiling it and profile it.

    Args:
        path: the model file.
    Returns:
        Its :class:`MacReport`.
    Raises:
        ProfileError: the file cannot be loaded (one line) or the model cannot be profiled.
    """
    return profile_macs(load_model_file(path))


def head_macs(report: MacReport) -> List[int]:
    """MACs of each exit's own head: the layers named after the exit (``exit_k``, ``exit_k_*``; the
    builder's and the keras-tuner bridge's convention), one entry per exit in depth order."""
    out = []
    for name in report.exit_names:
        out.append(int(sum(r.macs for r in report.layers
                           if r.name == name or r.name.startswith(name + "_"))))
    return out


def paper_exit_macs(report: MacReport) -> List[int]:
    """Per-exit cost as the NACHOS paper counts it: backbone up to exit k plus exit k's own head, i.e.
    the staged cost minus the heads of the earlier exits, which a sample leaving at exit k has in fact
    already run. Only for ablations; everything else uses the staged cost."""
    heads = head_macs(report)
    for name, h in zip(report.exit_names[:-1], heads[:-1]):
        if h == 0:
            raise ProfileError(f"no layer of early exit {name!r} is named {name}_*; the paper cost model needs "
                               "head layers named after their exit")
    return [int(m - sum(heads[:k])) for k, m in enumerate(report.exit_macs)]

"""Read a .tflite flatbuffer without running it: per-op MACs, staged per-exit MACs, I/O tensors.

Why: TFLite reorders a model's outputs and drops Keras layer names, so exits must be mapped through
the SignatureDef (``output_0``, ``output_1``, ... follow the Keras output order); and the MACs of the
deployed graph must be checked against :func:`nachos_tf.macs.profile_macs` (same convention: convs,
fully-connected and matmuls count, everything else 0).

Parsing uses the generated flatbuffer schema shipped with tflite-micro (fallback: TensorFlow's), not
a hand-written parser. Every function takes the model as bytes (or a path, or an already parsed
:func:`read_model` result) and looks at the subgraph of the first SignatureDef (subgraph 0 if none).
MACs are per invocation (batch 1 for models converted from Keras).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from nachos_tf.errors import ExportError, ProfileError

try:  # light (0.5 s) and the schema of the runtime that runs the model on device
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as _schema
except ImportError:  # pragma: no cover - tflite-micro is a dependency, TF is the fallback
    from tensorflow.lite.python import schema_py_generated as _schema

TFLiteModel = Union[bytes, bytearray, memoryview, str, Path, Any]

_OPNAMES = {v: k for k, v in vars(_schema.BuiltinOperator).items() if not k.startswith("_")}
_DTYPES = {v: k.lower() for k, v in vars(_schema.TensorType).items() if not k.startswith("_")}
# Ops that multiply by weights but have no formula here: refuse instead of counting 0.
_UNSUPPORTED_MAC_OPS = {
    "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
    "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF",
    "STABLEHLO_CONVOLUTION", "STABLEHLO_DOT_GENERAL",
}
_OUTPUT_RE = re.compile(r"^output_(\d+)$")


@dataclass(frozen=True)
class OpMacs:
    """MACs of one operator of the main subgraph, with its first output tensor."""

    index: int
    opcode: str
    macs: int
    output_name: str
    output_shape: Tuple[int, ...]


@dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor of the model.

    ``position`` is its index in the subgraph inputs/outputs, i.e. what ``interpreter.get_output(i)``
    (TFLM or TFLite) uses; ``signature_name`` its SignatureDef name (``output_k`` = Keras output k).
    ``scale``/``zero_point`` are None for a float tensor: real = scale * (q - zero_point).
    """

    signature_name: Optional[str]
    index: int
    position: int
    name: str
    shape: Tuple[int, ...]
    dtype: str
    scale: Optional[float]
    zero_point: Optional[int]


def read_model(tflite: TFLiteModel):
    """Parse a .tflite flatbuffer (bytes or path) into the schema's object API (``ModelT``)."""
    if isinstance(tflite, _schema.ModelT):
        return tflite
    if isinstance(tflite, (str, Path)):
        try:
            tflite = Path(tflite).read_bytes()
        except OSError as e:
            raise ExportError(f"{tflite}: cannot read ({e})") from e
    if not isinstance(tflite, (bytes, bytearray, memoryview)):
        raise ExportError(f"expected .tflite bytes or a path, got {type(tflite).__name__}")
    buf = bytes(tflite)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ExportError("not a TFLite flatbuffer (missing the 'TFL3' file identifier)")
    try:
        model = _schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # corrupt offsets surface as struct/index errors
        raise ExportError(f"corrupt TFLite flatbuffer ({type(e).__name__}: {e})") from e
    if not model.subgraphs:
        raise ExportError("TFLite flatbuffer has no subgraph")
    return model


def _text(b) -> str:
    return b.decode("utf-8") if isinstance(b, (bytes, bytearray)) else str(b or "")


def _signature(model):
    sigs = model.signatureDefs or []
    return sigs[0] if sigs else None


def _subgraph(model):
    sig = _signature(model)
    return model.subgraphs[sig.subgraphIndex if sig is not None else 0]


def _shape(tensor) -> Tuple[int, ...]:
    return tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))


def _opcode(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    name = _OPNAMES.get(builtin, f"BUILTIN_{builtin}")
    return f"CUSTOM:{_text(code.customCode)}" if name == "CUSTOM" else name


_MAC_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_3D", "TRANSPOSE_CONV",
            "CONV_3D_TRANSPOSE", "BATCH_MATMUL"}


def _check_static(opcode: str, op, tensors) -> None:
    """Static shapes are only trustworthy where the signature has no unknown non-batch dimension:
    a Keras model with a None batch can convert to a dynamic-shape graph (e.g. Dense on a rank-3
    tensor becomes SHAPE/GATHER/RESHAPE to [-1, -1]) whose stored shapes are placeholders."""
    for t in list(op.inputs) + list(op.outputs):
        sig = tensors[t].shapeSignature if t >= 0 else None
        if sig is not None and any(int(d) < 0 for d in list(sig)[1:]):
            raise ProfileError(f"{opcode} has a dynamic-shape operand '{_text(tensors[t].name)}' "
                               f"(signature {[int(d) for d in sig]}); convert the model with a fixed "
                               f"batch size of 1, e.g. keras.Input(shape, batch_size=1)")


def _op_mac_count(opcode: str, op, tensors) -> int:
    def shape(i):
        return _shape(tensors[op.inputs[i]])

    if opcode in _MAC_OPS:
        _check_static(opcode, op, tensors)
    out = _shape(tensors[op.outputs[0]])
    if opcode == "CONV_2D":  # filter [cout, kh, kw, cin/groups]
        return math.prod(out) * math.prod(shape(1)[1:])
    if opcode == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, cout]
        return math.prod(out) * math.prod(shape(1)[1:3])
    if opcode == "FULLY_CONNECTED":  # weights [units, in]; rows = prod(input) / in
        return math.prod(shape(0)) * shape(1)[0]
    if opcode == "CONV_3D":  # filter [kd, kh, kw, cin, cout]
        return math.prod(out) * math.prod(shape(1)[:4])
    if opcode == "TRANSPOSE_CONV":  # (output_shape, weights [cout, kh, kw, cin], input, bias)
        return math.prod(shape(2)) * math.prod(shape(1)[:3])
    if opcode == "CONV_3D_TRANSPOSE":  # (output_shape, filter [kd, kh, kw, cout, cin], input, bias)
        return math.prod(shape(2)) * math.prod(shape(1)[:4])
    if opcode == "BATCH_MATMUL":  # x [..., M, K] (or [..., K, M] with adj_x)
        adj_x = bool(getattr(op.builtinOptions, "adjX", False))
        x = shape(0)
        return math.prod(out) * (x[-2] if adj_x else x[-1])
    if opcode in _UNSUPPORTED_MAC_OPS:
        raise ProfileError(f"TFLite op {opcode} has weights but no MAC formula; refusing to count 0")
    return 0


def op_macs(tflite: TFLiteModel) -> List[OpMacs]:
    """One row per operator of the main subgraph, in execution order."""
    model = read_model(tflite)
    g = _subgraph(model)
    rows = []
    for i, op in enumerate(g.operators or []):
        opcode = _opcode(model, op)
        try:
            macs = _op_mac_count(opcode, op, g.tensors)
        except ProfileError as e:
            raise ProfileError(f"op {i}: {e}") from None
        t = g.tensors[op.outputs[0]] if op.outputs is not None and len(op.outputs) else None
        rows.append(OpMacs(i, opcode, int(macs), _text(t.name) if t is not None else "",
                           _shape(t) if t is not None else ()))
    return rows


#: CMSIS-NN's MVE depthwise kernel works on blocks of this many input channels (CH_IN_BLOCK_MVE).
CMSIS_NN_MVE_CH_BLOCK = 124


def cmsis_nn_scratch_bound(tflite: TFLiteModel) -> int:
    """An upper bound of the largest scratch buffer one CMSIS-NN kernel of the model asks the TFLM arena for
    (the reference kernels ask for none, so an arena measured with them misses it). Per operator, the
    larger of CMSIS-NN's DSP (Cortex-M4/M7/M33) and MVE (Cortex-M55) buffer sizes (CMSIS-NN
    `arm_depthwise_conv_s8_opt_get_buffer_size_*`, `arm_convolve_s8_get_buffer_size_*`): depthwise
    kh*kw*max(2*c_in, 4*124) bytes; convolution 4*c_in*kh*kw bytes.

    Args:
        tflite: the model (bytes or path).

    Returns:
        Bytes (0 for a model without convolutions).
    """
    model = read_model(tflite)
    g = _subgraph(model)
    worst = 0
    for op in g.operators or []:
        opcode = _opcode(model, op)
        if opcode not in ("DEPTHWISE_CONV_2D", "CONV_2D"):
            continue
        c_in = _shape(g.tensors[op.inputs[0]])[-1]
        f = _shape(g.tensors[op.inputs[1]])
        kh, kw = f[1], f[2]
        if opcode == "DEPTHWISE_CONV_2D":
            need = kh * kw * max(2 * c_in, 4 * CMSIS_NN_MVE_CH_BLOCK)
        else:
            need = 4 * c_in * kh * kw
        worst = max(worst, int(need))
    return worst


def total_macs(tflite: TFLiteModel) -> int:
    """Sum of :func:`op_macs` over the main subgraph."""
    return sum(r.macs for r in op_macs(tflite))


def _tensor_info(g, tensor_index: int, position: int, sig_name: Optional[str]) -> TensorInfo:
    t = g.tensors[tensor_index]
    q = t.quantization
    scale = zp = None
    if q is not None and q.scale is not None and len(q.scale) > 0:
        scale = float(q.scale[0])
        zp = int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0
    return TensorInfo(sig_name, int(tensor_index), int(position), _text(t.name), _shape(t),
                      _DTYPES.get(int(t.type), str(t.type)), scale, zp)


def _io(tflite: TFLiteModel, which: str) -> List[TensorInfo]:
    model = read_model(tflite)
    g = _subgraph(model)
    sub = [int(i) for i in (getattr(g, which) if getattr(g, which) is not None else [])]
    sig = _signature(model)
    entries = [(_text(m.name), int(m.tensorIndex)) for m in (getattr(sig, which) or [])] if sig else []
    if not entries:  # no SignatureDef: subgraph order is all there is
        return [_tensor_info(g, t, p, None) for p, t in enumerate(sub)]
    if all(_OUTPUT_RE.match(n) for n, _ in entries):  # output_10 sorts before output_2 in the file
        entries.sort(key=lambda e: int(_OUTPUT_RE.match(e[0]).group(1)))
    infos = []
    for name, t in entries:
        if t not in sub:
            raise ExportError(f"signature {which[:-1]} '{name}' (tensor {t}) is not a subgraph {which[:-1]}")
        infos.append(_tensor_info(g, t, sub.index(t), name))
    return infos


def signature_inputs(tflite: TFLiteModel) -> List[TensorInfo]:
    """Model inputs in SignatureDef order, with their subgraph position, shape and quantisation."""
    return _io(tflite, "inputs")


def signature_outputs(tflite: TFLiteModel) -> List[TensorInfo]:
    """Model outputs in Keras order (``output_0``, ``output_1``, ...; numeric order, not the file's),
    each with its position in the subgraph outputs (what ``get_output(i)`` needs), shape and
    quantisation. Without a SignatureDef, the subgraph order is returned as is."""
    return _io(tflite, "outputs")


def exit_groups(layout: Sequence[Any]) -> List[List[int]]:
    """Output groups of an EENN's exits from :func:`nachos_tf.naming.exit_layout`: exit k's logits
    output index plus its ``exit_k_conf`` index, for :func:`staged_macs`."""
    return [[s.logits_index] + ([s.conf_index] if s.conf_index is not None else []) for s in layout]


def staged_macs(tflite: TFLiteModel, groups: Optional[Sequence[Sequence[int]]] = None) -> List[int]:
    """Staged MACs per exit: entry k = MACs of every op that any output of groups 0..k depends on,
    each op counted once. ``groups`` holds indices into :func:`signature_outputs` (Keras output
    order); by default every output is its own exit. Comparable to ``profile_macs(m).exit_macs``
    with ``groups=exit_groups(exit_layout(m))``."""
    model = read_model(tflite)
    g = _subgraph(model)
    outs = signature_outputs(model)
    if groups is None:
        groups = [[i] for i in range(len(outs))]
    producer: Dict[int, int] = {}
    for i, op in enumerate(g.operators or []):
        for t in (op.outputs if op.outputs is not None else []):
            producer[int(t)] = i
    macs = [r.macs for r in op_macs(model)]
    paid: set = set()
    staged = []
    for group in groups:
        for k in group:
            if not 0 <= k < len(outs):
                raise ExportError(f"output index {k} out of range: the model has {len(outs)} outputs")
            stack = [outs[k].index]
            while stack:
                op_i = producer.get(stack.pop())
                if op_i is None or op_i in paid:
                    continue
                paid.add(op_i)
                stack.extend(int(t) for t in g.operators[op_i].inputs if t >= 0)
        staged.append(int(sum(macs[i] for i in paid)))
    return staged

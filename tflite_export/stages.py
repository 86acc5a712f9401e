"""Split an EENN into stage models and quantise them so that stage boundaries change no number.

Stage 0 takes the image and gives exit 0's outputs plus the backbone features at `exit_0_point`;
stage k takes the features of stage k-1 and gives exit k's outputs plus the features at
`exit_k_point`; the last stage gives the final classifier. Each class output gets a Softmax, so the
device decides on int8 probabilities. Running stage k+1 only when exit k is not confident is what
makes the early exit real on the microcontroller.

Boundary quantisation: stage k+1 is calibrated on the float features of stage k (same samples), and
its int8 input tensor's scale and zero point are then set, in the flatbuffer, to exactly those of
stage k's feature output. The int8 bytes handed over therefore mean the same real numbers on both
sides (`check_boundaries` verifies it from the files).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nachos_tf import naming
from nachos_tf.errors import ExportError

from .graph import subgraph
from .quantize import to_int8_tflite

if TYPE_CHECKING:
    import keras

# A boundary's calibrated ranges on both sides come from the same float features, so they agree to
# float rounding; anything further apart means the split is wrong, not rounding.
BOUNDARY_RTOL = 1e-3


@dataclass
class Stage:
    """One stage model and what its outputs are, in the stage model's (Keras) output order.

    Attributes:
        index: the stage's position (0 takes the image).
        exit_name: "exit_k" or "final".
        model: the stage's keras.Model, outputs [probs, (conf), (features)].
        has_conf: the stage has a confidence output.
        has_features: the stage hands features on to the next stage (all but the last).
        outputs: the kind of each output in order, "probs" / "confidence" / "features".
        input_tensor: the source model's tensor this stage starts from.
    """

    index: int
    exit_name: str                       # "exit_k" or "final"
    model: object                        # keras.Model: [probs, (conf), (features)]
    has_conf: bool
    has_features: bool
    outputs: List[str] = field(default_factory=list)   # "probs" / "confidence" / "features"
    input_tensor: object = None          # the source model's tensor this stage starts from

    def output_position(self, what: str) -> Optional[int]:
        """Keras output position of one kind of output.

        Args:
            what: "probs", "confidence" or "features".
        Returns:
            Its position in `outputs`, or None if the stage has no such output.
        """
        return self.outputs.index(what) if what in self.outputs else None


def split_stages(model: keras.Model, softmax: bool = True, batch_size: Optional[int] = 1,
                 n_stages: Optional[int] = None) -> List[Stage]:
    """Stage models of an EENN that follows `nachos_tf.naming` (one stage per exit, final last).

    The stage models share the EENN's layers (and so its weights).

    Args:
        model: the Keras EENN.
        softmax: append a Softmax to each class output (the device decides on int8 probabilities).
        batch_size: static batch size of the stage inputs; 1 (the device's) gives static shapes, so e.g.
            Flatten converts to one RESHAPE instead of SHAPE/STRIDED_SLICE/PACK (None: dynamic).
        n_stages: keep only the first `n_stages` exits (None: all). The last one kept then ends the network:
            it gives its class output only (no confidence, no features), for an exit every image stops at.
    Returns:
        One Stage per exit kept, in exit order.
    Raises:
        ExportError: no 'final' output, more than one input, a missing exit point layer, a stage that
            needs a tensor from before its input, or `n_stages` outside 1..number of exits.
    """
    import keras

    layout = naming.exit_layout(model)
    if n_stages is not None:
        if not 1 <= int(n_stages) <= len(layout):
            raise ExportError(f"n_stages must be 1..{len(layout)} (the model's exits), got {n_stages}")
        layout = layout[:int(n_stages)]
    names = naming.output_names(model)
    if naming.FINAL not in names:
        raise ExportError("the model has no output named 'final': not an EENN following nachos_tf.naming")
    if len(model.inputs) != 1:
        raise ExportError(f"an EENN has one image input, this model has {len(model.inputs)}")
    points = []
    for k in range(len(layout) - 1):
        try:
            points.append(model.get_layer(naming.point_name(k)).output)
        except ValueError:
            raise ExportError(f"exit {k} has no Identity layer {naming.point_name(k)!r} marking its stage "
                              f"boundary") from None
    stages: List[Stage] = []
    prev = model.inputs[0]
    for k, spec in enumerate(layout):
        last = k == len(layout) - 1
        inp = keras.Input(shape=tuple(prev.shape[1:]), dtype=prev.dtype, batch_size=batch_size,
                          name="image" if k == 0 else f"features_{k - 1}")
        targets = [model.outputs[spec.logits_index]]
        kinds = ["probs"]
        if spec.conf_index is not None and not last:       # the last stage never decides: no confidence
            targets.append(model.outputs[spec.conf_index])
            kinds.append("confidence")
        if not last:
            targets.append(points[k])
            kinds.append("features")
        outs = subgraph(model, {id(prev): inp}, targets, f"stage {k} ({spec.name})")
        if softmax:
            outs[0] = keras.layers.Softmax(name=f"{spec.name}_softmax")(outs[0])
        stage_model = keras.Model(inp, outs, name=f"stage{k}")
        stages.append(Stage(k, spec.name, stage_model, "confidence" in kinds, not last, kinds, prev))
        if not last:
            prev = points[k]
    return stages


# --------------------------------------------------------------------------- flatbuffer quant params

def input_quant(tflite_bytes) -> Tuple[float, int]:
    """(scale, zero_point) of the (single) input tensor, read from the flatbuffer."""
    from . import flatbuffer as fb

    ins = fb.signature_inputs(tflite_bytes)
    if len(ins) != 1 or ins[0].scale is None:
        raise ExportError(f"a stage has one int8 input, this .tflite has {len(ins)} ({[i.dtype for i in ins]})")
    return ins[0].scale, ins[0].zero_point


def set_input_quant(tflite_bytes: bytes, scale: float, zero_point: int) -> bytes:
    """A copy of the .tflite whose input tensor has the given scale and zero point (patched in place).

    Every TFLM/TFLite kernel derives its requantisation multipliers from tensor parameters at Prepare
    time, so patching the input tensor is how stage k+1 is told the exact scale of stage k's features.
    The rest of the file is left byte for byte as the converter wrote it (buffer alignment included).
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from . import flatbuffer as fb

    ins = fb.signature_inputs(tflite_bytes)
    buf = bytearray(tflite_bytes)
    model = schema.Model.GetRootAs(buf, 0)
    g = model.Subgraphs(0)
    q = g.Tensors(ins[0].index).Quantization()
    if q is None or q.ScaleLength() != 1 or q.ZeroPointLength() != 1:
        raise ExportError("the stage input tensor is not per-tensor quantised")
    q.ScaleAsNumpy()[0] = np.float32(scale)      # numpy views into `buf`
    q.ZeroPointAsNumpy()[0] = np.int64(zero_point)
    out = bytes(buf)
    if input_quant(out) != (float(np.float32(scale)), int(zero_point)):
        raise ExportError("patching the stage input quantisation failed")
    return out


# --------------------------------------------------------------------------- staged conversion

@dataclass
class QuantStage:
    """A converted stage: its bytes and the interpreter output positions of its outputs."""

    stage: Stage
    tflite: bytes
    positions: Dict[str, Optional[int]]       # "probs"/"confidence"/"features" -> interpreter output index
    input_quant: Tuple[float, int]
    output_quant: Dict[str, Optional[Tuple[float, int]]]
    calibration_input_quant: Tuple[float, int]   # before the boundary patch (for the record)


def output_positions(tflite_bytes, stage: Stage) -> Dict[str, Optional[int]]:
    """Interpreter output index of each stage output, through the SignatureDef (never by position)."""
    outs = _sig_outputs(tflite_bytes, stage)
    return {kind: (outs[p].position if (p := stage.output_position(kind)) is not None else None)
            for kind in ("probs", "confidence", "features")}


def _sig_outputs(tflite_bytes, stage: Stage):
    from . import flatbuffer as fb

    outs = fb.signature_outputs(tflite_bytes)
    if len(outs) != len(stage.outputs) or any(o.signature_name != f"output_{i}" for i, o in enumerate(outs)):
        raise ExportError(f"stage {stage.index}: expected SignatureDef outputs output_0..output_"
                          f"{len(stage.outputs) - 1}, found {[o.signature_name for o in outs]}")
    return outs


def stage_inputs(model, stages: Sequence[Stage], x: np.ndarray) -> List[np.ndarray]:
    """Float input of every stage for images `x`: x itself, then the features at each stage boundary
    (computed by the source EENN in one batched pass)."""
    import keras

    pts = [st.input_tensor for st in stages[1:]]
    if not pts:
        return [x]
    fm = keras.Model(model.inputs, pts)
    res = fm.predict(x, verbose=0, batch_size=256)
    res = res if isinstance(res, (list, tuple)) else [res]
    return [x] + [np.asarray(r, dtype=np.float32) for r in res]


def quantize_stages(stages: Sequence[Stage], representative_x: np.ndarray, num_samples: int = 256,
                    model: Optional[keras.Model] = None) -> List[QuantStage]:
    """Full-int8 conversion of every stage with boundary-consistent quantisation.

    Stage 0 is calibrated on `representative_x`; stage k+1 on the float features stage k computes from
    the same images. Stage k+1's input scale/zero point are then set to stage k's feature-output
    scale/zero point (they agree to rounding).

    Args:
        stages: the stages of `split_stages`.
        representative_x: raw images from the training split.
        num_samples: how many of them (the first) calibrate.
        model: the source EENN, which computes the boundary features (required).
    Returns:
        One QuantStage per stage, in order.
    Raises:
        ExportError: no `model`; a boundary whose scales differ by more than BOUNDARY_RTOL or zero points by
            more than 1 (a broken split); a failed conversion, or logits too narrow for TFLM's int8 softmax.
    """
    if model is None:
        raise ExportError("quantize_stages needs the source EENN (model=...) to compute boundary features")
    x = np.asarray(representative_x, dtype=np.float32)[:num_samples]
    calib = stage_inputs(model, stages, x)
    out: List[QuantStage] = []
    prev_q: Optional[Tuple[float, int]] = None
    for st, feats in zip(stages, calib):
        tfl = to_int8_tflite(st.model, feats, num_samples=num_samples)
        calib_q = input_quant(tfl)
        if prev_q is not None:
            s0, z0 = prev_q
            s1, z1 = calib_q
            if abs(s1 - s0) > BOUNDARY_RTOL * abs(s0) or abs(z1 - z0) > 1:
                raise ExportError(f"stage {st.index}: input calibrated to scale {s1:g}, zp {z1} but stage "
                                  f"{st.index - 1} outputs scale {s0:g}, zp {z0}: the split is inconsistent")
            tfl = set_input_quant(tfl, s0, z0)
        _check_softmax_scales(tfl, st)
        pos = output_positions(tfl, st)
        sig = _sig_outputs(tfl, st)
        oq = {k: ((sig[p].scale, sig[p].zero_point) if (p := st.output_position(k)) is not None else None)
              for k in pos}
        out.append(QuantStage(st, tfl, pos, input_quant(tfl), oq, calib_q))
        if st.has_features:
            prev_q = oq["features"]
    return out


# TFLM's int8 softmax needs input_scale * 2**26 > 1 (QuantizeMultiplierGreaterThanOne); below that
# it aborts the process, on the device as in the Python interpreter.
_MIN_SOFTMAX_INPUT_SCALE = 2.0 ** -26


def _check_softmax_scales(tflite_bytes: bytes, stage: Stage) -> None:
    """ExportError (instead of a TFLM abort) when an exit's logits span a range too small for int8 softmax."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from . import flatbuffer as fb

    m = fb.read_model(tflite_bytes)
    g = m.subgraphs[0]
    for op in g.operators or []:
        code = m.operatorCodes[op.opcodeIndex]
        if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) != schema.BuiltinOperator.SOFTMAX:
            continue
        q = g.tensors[op.inputs[0]].quantization
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
        if scale is not None and scale * 2.0 ** 26 <= 1.0:
            raise ExportError(f"stage {stage.index} ({stage.exit_name}): its logits span only about "
                              f"{scale * 255:.3g} on the calibration data (int8 scale {scale:.3g}); TFLM's "
                              f"int8 softmax cannot take that. Is the model trained?")


def check_boundaries(stage_bytes: Sequence[bytes]) -> List[dict]:
    """Scale/zero point/shape of stage k's feature output and of stage k+1's input, read from the files.

    The feature output is the last SignatureDef output of every stage but the last.

    Args:
        stage_bytes: the stage .tflite files, in stage order.
    Returns:
        One record per boundary: {"boundary": k, "scale", "zero_point", "shape"}.
    Raises:
        ExportError: unless both sides are bit-identical (float32 scale, integer zero point, shape, int8).
    """
    from . import flatbuffer as fb

    recs = []
    for k in range(len(stage_bytes) - 1):
        a = fb.signature_outputs(stage_bytes[k])[-1]
        ins = fb.signature_inputs(stage_bytes[k + 1])
        if len(ins) != 1:
            raise ExportError(f"stage {k + 1} has {len(ins)} inputs, expected 1")
        b = ins[0]
        if a.dtype != "int8" or b.dtype != "int8":
            raise ExportError(f"boundary {k}->{k + 1}: tensors are {a.dtype} and {b.dtype}, expected int8")
        if np.float32(a.scale) != np.float32(b.scale) or a.zero_point != b.zero_point:
            raise ExportError(f"boundary {k}->{k + 1}: stage {k} features have scale {a.scale!r}, zp "
                              f"{a.zero_point}, stage {k + 1} input has scale {b.scale!r}, zp {b.zero_point}")
        if tuple(a.shape) != tuple(b.shape):
            raise ExportError(f"boundary {k}->{k + 1}: feature shape {a.shape} != next input shape {b.shape}")
        recs.append({"boundary": k, "scale": a.scale, "zero_point": a.zero_point, "shape": list(a.shape)})
    return recs

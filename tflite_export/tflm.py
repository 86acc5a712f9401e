"""Staged int8 inference on the TensorFlow Lite Micro interpreter, with the device's exit decisions.

`evaluate_staged` runs an exported EENN image by image on TFLM's real micro kernels: stage 0, then
the exit decision on its int8 outputs (`tflite_export.int8`), and stage k+1 only if exit k is not
confident, exactly like the generated C runner. Outputs are mapped through each file's SignatureDef,
never by position. Also here: .tflite and manifest validation, loading an export folder, and TFLM
arena measurement (in a child process).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nachos_tf.errors import ExportError

from .int8 import (NEVER_MARGIN, NEVER_MAX_SOFTMAX, RULE_IDS, RULES, check_rule, exit_decision, exit_params,
                   quantize_input, score_table, threshold_f32, threshold_int)

__all__ = [  # the int8 names stay importable from here (tests and users wrote `tflm.exit_decision`)
    "RULES", "RULE_IDS", "NEVER_MAX_SOFTMAX", "NEVER_MARGIN", "threshold_f32", "threshold_int", "score_table",
    "exit_decision", "exit_params", "validate_tflite", "measure_arena", "with_policy", "validate_manifest",
    "load_export", "StagedRunner", "evaluate_staged",
]

ARENA_RE = re.compile(rb"Arena allocation total (\d+) bytes")
_MAX_PROBE_ARENA = 64 << 20


# --------------------------------------------------------------------------- validation and loading

def validate_tflite(data: bytes, what: str = "model") -> None:
    """ExportError unless `data` parses completely as a single-subgraph .tflite flatbuffer.

    Done in Python with the schema module before any bytes reach TFLM (which trusts its input and
    can crash on a corrupt file); `measure_arena` then runs it once in a child process.

    Args:
        data: the .tflite bytes.
        what: the model's name in error messages.
    Raises:
        ExportError: not bytes, too short, or a corrupt .tflite (indices or buffers out of range).
    """
    from . import flatbuffer as fb

    if not isinstance(data, (bytes, bytearray)) or len(data) < 16:
        raise ExportError(f"{what}: not a .tflite file ({len(data) if data is not None else 0} bytes)")
    try:
        m = fb.read_model(bytes(data))
    except ExportError as e:
        raise ExportError(f"{what}: {e}") from None
    try:
        g = m.subgraphs[0]
        n_t = len(g.tensors or [])
        n_b = len(m.buffers or [])
        n_c = len(m.operatorCodes or [])
        for t in g.tensors or []:
            if not 0 <= t.buffer < n_b:
                raise ExportError(f"tensor buffer index {t.buffer} out of range ({n_b} buffers)")
            if t.shape is not None and any(int(d) < 0 for d in t.shape):
                raise ExportError(f"tensor with negative dimension {list(t.shape)}")
        for i, op in enumerate(g.operators or []):
            if not 0 <= op.opcodeIndex < n_c:
                raise ExportError(f"operator {i} has opcode index {op.opcodeIndex} of {n_c}")
            for t in list(op.inputs if op.inputs is not None else []) + \
                    list(op.outputs if op.outputs is not None else []):
                if not -1 <= int(t) < n_t:
                    raise ExportError(f"operator {i} refers to tensor {t} of {n_t}")
        for t in list(g.inputs if g.inputs is not None else []) + list(g.outputs if g.outputs is not None else []):
            if not 0 <= int(t) < n_t:
                raise ExportError(f"subgraph input/output tensor {t} of {n_t}")
        for b in m.buffers or []:
            if b.offset and (b.offset + b.size > len(data)):
                raise ExportError("a buffer lies outside the file")
    except ExportError as e:
        raise ExportError(f"{what}: corrupt .tflite ({e})") from None
    except Exception as e:
        raise ExportError(f"{what}: corrupt .tflite ({type(e).__name__}: {e})") from None


_CHILD = r"""
import os, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = sys.stdin.buffer.read()
it = runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[1]))
d = it.get_input_details(0)
it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
it.invoke()
sys.stdout.flush(); sys.stderr.flush()
os.write(2, b"\n@@NACHOS_ALLOC@@\n")
it.print_allocations()
"""


def measure_arena(data: bytes, what: str = "model", start: Optional[int] = None) -> int:
    """Bytes of tensor arena TFLM allocates for the model (load + one invoke), measured in a child process.

    print_allocations() writes to the C-level stderr and an arena far too small segfaults, hence the
    child process. Starts from a generous arena and grows it while allocation fails.

    Args:
        data: the .tflite bytes.
        what: the model's name in error messages.
        start: the first arena size to try.

    Returns:
        The arena bytes TFLM reports ("Arena allocation total").

    Raises:
        ExportError: the model crashes or cannot run at any size (what a corrupt file does).
    """
    arena = int(start or max(64 << 10, 16 * len(data)))
    last = b""
    while arena <= _MAX_PROBE_ARENA:
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(arena)], input=bytes(data),
                                  capture_output=True, timeout=300, env=env)
        except subprocess.TimeoutExpired:
            raise ExportError(f"{what}: TFLM did not finish one inference in 300 s") from None
        if proc.returncode == 0:
            tail = proc.stderr.split(b"@@NACHOS_ALLOC@@", 1)[-1]
            m = ARENA_RE.search(tail)
            if not m:
                err = proc.stderr[-1000:].decode(errors="replace")
                raise ExportError(f"{what}: TFLM printed no arena total:\n{err}")
            return int(m.group(1))
        last = proc.stderr
        if proc.returncode < 0:   # a signal: the file makes TFLM crash; more arena will not help
            raise ExportError(f"{what}: TFLM crashed on this model (signal {-proc.returncode}); the .tflite "
                              f"is corrupt or uses an unsupported construct")
        if b"allocate" not in last.lower() and b"arena" not in last.lower():
            break
        arena *= 4
    lines = [ln.strip() for ln in last.decode(errors="replace").splitlines() if ln.strip()]
    raise ExportError(f"{what}: TFLM cannot run this model ({lines[-1] if lines else 'no message'}); the .tflite "
                      f"is corrupt or needs more than {_MAX_PROBE_ARENA >> 20} MiB of arena")


def with_policy(manifest: dict, rule: str, thresholds: Sequence[float]) -> dict:
    """A copy of a manifest with another exit rule / thresholds (for evaluate_staged; the stage files
    do not depend on the policy, but the C sources of an export do: re-export for the device).

    Args:
        manifest: the export's manifest (not modified).
        rule: the new exit rule.
        thresholds: one float threshold per early exit.
    Returns:
        The new manifest, its stages' thresholds (float, int8, float32) recomputed.
    Raises:
        ExportError: an unknown rule, a wrong number of thresholds, a NaN threshold, or rule 'confidence'
            without confidence outputs.
    """
    import copy

    check_rule(rule)
    m = copy.deepcopy(manifest)
    stages = m["stages"]
    if len(thresholds) != len(stages) - 1:
        raise ExportError(f"need one threshold per early exit ({len(stages) - 1}), got {len(thresholds)}")
    m["rule"] = rule
    for st, t in zip(stages, thresholds):
        p = exit_params(rule, float(t), st["probs_quant"], st.get("confidence_quant"))
        st["threshold"] = float(t) if math.isfinite(float(t)) else ("inf" if float(t) > 0 else "-inf")
        st["threshold_int8"] = p["t_int"]
        st["threshold_f32"] = p["t_f32"] if math.isfinite(p["t_f32"]) else st["threshold"]
    return m


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


_STAGE_KEYS = ("tflite", "logits_output", "confidence_output", "features_output")


def validate_manifest(manifest: Any, n_stage_bytes: Optional[int] = None) -> dict:
    """ExportError with the offending key unless the manifest has the structure export_eenn writes.

    Args:
        manifest: the parsed manifest.json.
        n_stage_bytes: the number of stage models given, checked against the stages listed (None: not checked).
    Returns:
        `manifest` itself.
    Raises:
        ExportError: a missing key or a malformed value.
    """
    if not isinstance(manifest, dict):
        raise ExportError(f"manifest: expected a JSON object, got {type(manifest).__name__}")
    for key in ("input", "rule", "stages"):
        if key not in manifest:
            raise ExportError(f"manifest: missing key {key!r}")
    if not isinstance(manifest["rule"], str) or manifest["rule"] not in RULES:
        _bad(f"rule must be one of {', '.join(RULES)}, got {manifest['rule']!r}")
    inp = manifest["input"]
    if not isinstance(inp, dict) or not all(k in inp for k in ("shape", "scale", "zero_point")):
        _bad("input must hold shape, scale and zero_point")
    if not _is_num(inp["scale"]) or not inp["scale"] > 0 or not isinstance(inp["zero_point"], int):
        _bad("input scale must be a positive number and zero_point an integer")
    stages = manifest["stages"]
    if not isinstance(stages, list) or len(stages) < 1:
        _bad("stages must be a non-empty list")
    if n_stage_bytes is not None and n_stage_bytes != len(stages):
        _bad(f"{len(stages)} stages listed, {n_stage_bytes} stage models given")
    for k, st in enumerate(stages):
        if not isinstance(st, dict):
            _bad(f"stages[{k}] must be an object")
        for key in _STAGE_KEYS:
            if key not in st:
                _bad(f"stages[{k}] is missing {key!r}")
        for key in ("logits_output", "confidence_output", "features_output"):
            v = st[key]
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                _bad(f"stages[{k}].{key} must be a non-negative integer or null")
        if not isinstance(st["logits_output"], int):
            _bad(f"stages[{k}].logits_output must be an integer")
        last = k == len(stages) - 1
        if (st["features_output"] is None) != last:
            _bad(f"stages[{k}].features_output must be {'null' if last else 'an integer'}")
        if not last:
            if not _is_num(st.get("threshold")) and st.get("threshold") not in ("inf", "-inf"):
                _bad(f"stages[{k}].threshold must be a number")
            if manifest["rule"] == "confidence" and st["confidence_output"] is None:
                _bad(f"stages[{k}] has no confidence_output but the rule is 'confidence'")
    dropped = manifest.get("exits_not_exported", [])
    if not isinstance(dropped, list) or not all(isinstance(v, str) for v in dropped):
        _bad("exits_not_exported must be a list of exit names")
    em = manifest.get("exit_macs")
    if em is not None and (not isinstance(em, list) or len(em) != len(stages) or not all(_is_num(v) for v in em)):
        _bad(f"exit_macs must list one number per exit ({len(stages)})")
    return manifest


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bad(msg: str):
    raise ExportError(f"manifest: {msg}")


def _threshold_value(v) -> float:
    return float(v)   # numbers, or the strings "inf" / "-inf" the manifest uses for infinities


def load_export(export_dir: Union[str, Path]) -> Tuple[dict, List[bytes]]:
    """Reads manifest.json and the stage files of an export directory, checking every file.

    Args:
        export_dir: the export folder.

    Returns:
        (manifest, [stage .tflite bytes]).

    Raises:
        ExportError: the manifest is missing or malformed, a stage file is missing, or a file's size
            or SHA-256 differs from the manifest (a truncated or corrupted .tflite).
    """
    d = Path(export_dir)
    mpath = d / "manifest.json"
    try:
        text = mpath.read_text()
    except OSError as e:
        raise ExportError(f"{mpath}: cannot read the manifest ({e.strerror or e})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExportError(f"{mpath}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    validate_manifest(manifest)
    from .validate import check_manifest_files   # plain file names, C identifiers (issue 14.12)

    check_manifest_files(manifest, mpath)
    blobs = []
    for k, st in enumerate(manifest["stages"]):
        name = st["tflite"]
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise ExportError(f"{mpath}: stages[{k}].tflite must be a file name inside the export directory")
        p = d / name
        try:
            b = p.read_bytes()
        except OSError as e:
            raise ExportError(f"{p}: cannot read stage {k} ({e.strerror or e})") from None
        if "bytes" in st and st["bytes"] != len(b):
            raise ExportError(f"{p}: {len(b)} bytes, the manifest says {st['bytes']} (truncated or replaced?)")
        if st.get("sha256") and st["sha256"] != _sha256(b):
            raise ExportError(f"{p}: contents differ from the manifest (SHA-256 mismatch): corrupted file")
        blobs.append(b)
    return manifest, blobs


# --------------------------------------------------------------------------- the staged runner

class StagedRunner:
    """Stage interpreters on TFLM plus the exit logic: `classify(image)` -> (class, exit index).

    Stage k+1 is invoked only when exit k does not fire; `invocations[k]` counts the calls.

    Args:
        stage_bytes: the stage .tflite files, in stage order.
        manifest: the export's manifest, checked against the files.
        check: measure each stage's arena (child process); else the manifest's arena_bytes or an estimate.
        arena_bytes: arena bytes per stage to use instead of measuring.
    Raises:
        ExportError: a malformed manifest, or stage files that do not match it.
    """

    def __init__(self, stage_bytes: Sequence[bytes], manifest: dict, check: bool = True,
                 arena_bytes: Optional[Sequence[int]] = None) -> None:
        from tflite_micro.python.tflite_micro import runtime

        from . import flatbuffer as fb

        validate_manifest(manifest, len(stage_bytes))
        self.manifest = manifest
        self.rule = manifest["rule"]
        inp = manifest["input"]
        self.in_scale, self.in_zp = float(inp["scale"]), int(inp["zero_point"])
        self.arena_bytes: List[int] = []
        self.interpreters = []
        self.params: List[Optional[dict]] = []
        self.out_idx: List[Tuple[int, Optional[int], Optional[int]]] = []
        for k, (b, st) in enumerate(zip(stage_bytes, manifest["stages"])):
            what = f"stage {k}"
            validate_tflite(b, what)
            outs = fb.signature_outputs(b)
            ins = fb.signature_inputs(b)
            if len(ins) != 1 or ins[0].dtype != "int8":
                raise ExportError(f"{what}: expected one int8 input, found {[i.dtype for i in ins]}")
            expect = ["logits_output"] + (["confidence_output"] if st["confidence_output"] is not None else []) \
                + (["features_output"] if st["features_output"] is not None else [])
            if len(outs) != len(expect):
                raise ExportError(f"{what}: the .tflite has {len(outs)} outputs, the manifest describes "
                                  f"{len(expect)}")
            for j, key in enumerate(expect):   # Keras order is probs, [confidence], [features]
                if outs[j].position != st[key]:
                    raise ExportError(f"{what}: manifest {key}={st[key]} but the SignatureDef maps "
                                      f"output_{j} to interpreter output {outs[j].position}")
                if outs[j].dtype != "int8":
                    raise ExportError(f"{what}: output_{j} is {outs[j].dtype}, expected int8")
            if k == 0 and (abs(ins[0].scale - self.in_scale) > 1e-6 * self.in_scale
                           or ins[0].zero_point != self.in_zp):
                raise ExportError("stage 0: input quantisation differs from the manifest's input")
            if arena_bytes is not None:
                arena = int(arena_bytes[k])
            elif check:
                arena = measure_arena(b, what)
            else:
                arena = int(st.get("arena_bytes") or max(64 << 10, 16 * len(b)))
            self.arena_bytes.append(arena)
            # in-process: generous headroom over the measured need (a short arena would crash us)
            self.interpreters.append(runtime.Interpreter.from_bytes(b, arena_size=2 * arena + (16 << 10)))
            self.out_idx.append((st["logits_output"], st["confidence_output"], st["features_output"]))
            if k < len(stage_bytes) - 1:
                pq = (outs[0].scale, outs[0].zero_point)
                cq = (outs[1].scale, outs[1].zero_point) if st["confidence_output"] is not None else None
                self.params.append(exit_params(self.rule, _threshold_value(st["threshold"]), pq, cq))
                if st.get("threshold_int8") is not None and self.params[-1]["t_int"] != st["threshold_int8"]:
                    raise ExportError(f"{what}: threshold_int8={st['threshold_int8']} does not match the "
                                      f"threshold {st['threshold']} on this file's output scale")
            else:
                self.params.append(None)
        self.in_shape = tuple(int(v) for v in fb.signature_inputs(stage_bytes[0])[0].shape)
        self.invocations = [0] * len(self.interpreters)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """A raw float image -> the int8 input tensor (the C helper's formula).

        Args:
            x: one raw float image.
        Returns:
            The int8 input tensor of stage 0.
        """
        return quantize_input(x, self.in_scale, self.in_zp).reshape(self.in_shape)

    def classify(self, x_q: np.ndarray) -> Tuple[int, int]:
        """(predicted class, exit index) for one int8 image; later stages run only if needed.

        Args:
            x_q: one int8 input.
        Returns:
            (predicted class, exit index).
        """
        c, k, _ = self.classify_trace(x_q)
        return c, k

    def classify_trace(self, x_q: np.ndarray) -> Tuple[int, int, List[np.ndarray]]:
        """`classify` plus the int8 scores (softmax) of every exit evaluated, exit 0 first.

        Args:
            x_q: one int8 input.

        Returns:
            (predicted class, exit index, [int8 scores of exit 0, ..., of the exit taken]).
        """
        data = np.asarray(x_q, dtype=np.int8).reshape(self.in_shape)
        stay = np.float32(1.0)
        last = len(self.interpreters) - 1
        scores: List[np.ndarray] = []
        for k, it in enumerate(self.interpreters):
            it.set_input(data, 0)
            it.invoke()
            self.invocations[k] += 1
            li, ci, fi = self.out_idx[k]
            probs = it.get_output(li).reshape(-1)
            scores.append(np.array(probs, dtype=np.int8))
            if k == last:
                return int(np.argmax(probs)), k, scores
            p = self.params[k]
            conf = int(it.get_output(ci).reshape(-1)[0]) if ci is not None else None
            ok, stay = exit_decision(self.rule, probs, conf, p["t_int"], p["t_f32"], p["table"], stay)
            if ok:
                return int(np.argmax(probs)), k, scores
            data = it.get_output(fi)
        raise AssertionError("unreachable")


def evaluate_staged(export: Union[str, Path, Sequence[bytes]], x: np.ndarray, y: np.ndarray,
                    limit: Optional[int] = None, manifest: Optional[dict] = None,
                    measure: bool = True, details: bool = False) -> Dict[str, Any]:
    """Accuracy, exit rates and expected MACs of an exported EENN measured on TFLM, image by image.

    `export` is an export directory (manifest.json + stage files) or a list of stage .tflite bytes
    with `manifest`. `x` holds raw images (float, as the Keras model takes them) or int8 tensors.
    Arena bytes per stage are measured in child processes (`measure=False` trusts the manifest).
    Returns a JSON-safe {accuracy, exit_rates, exit_counts, expected_macs, arena_bytes, stage_bytes,
    stage_invocations, n, seconds, ms_per_image, rule}; `details=True` adds per-image numpy arrays
    "predictions" and "exits".

    Args:
        export: an export folder, or the stage .tflite bytes (with `manifest`).
        x: raw float images or int8 tensors; y: labels.
        limit: only the first `limit` samples.
        manifest: the manifest when `export` is bytes.
        measure: measure the arenas (child processes) instead of trusting the manifest.
        details: add the per-image predictions and exits.

    Returns:
        The figures described above.

    Raises:
        ExportError: a broken export, or images and labels that do not match.
    """
    if isinstance(export, (str, Path)):
        manifest, blobs = load_export(export)
    else:
        if manifest is None:
            raise ExportError("evaluate_staged with stage bytes needs the manifest")
        blobs = [bytes(b) for b in export]
    runner = StagedRunner(blobs, manifest, check=measure)
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if len(x) != len(y) or len(x) == 0:
        raise ExportError(f"need as many labels as images (got {len(x)} images, {len(y)} labels)")
    n_exits = len(blobs)
    counts = np.zeros(n_exits, dtype=np.int64)
    correct = 0
    preds = np.zeros(len(x), dtype=np.int64)
    exits = np.zeros(len(x), dtype=np.int64)
    t0 = time.perf_counter()
    for i in range(len(x)):
        xi = x[i] if x.dtype == np.int8 else runner.quantize(x[i])
        c, k = runner.classify(xi)
        preds[i], exits[i] = c, k
        counts[k] += 1
        correct += int(c == int(y[i]))
    seconds = time.perf_counter() - t0
    n = len(x)
    exit_macs = manifest.get("exit_macs")
    if exit_macs is None:
        exit_macs = list(np.cumsum([st.get("macs", 0) for st in manifest["stages"]]))
    em = np.asarray(exit_macs, dtype=np.float64)
    tot = counts[0] * em[0]            # the summation order of nachos_tf.policy
    for k in range(1, n_exits):
        tot = tot + counts[k] * em[k]
    res = {
        "accuracy": correct / n,
        "stage_bytes": [len(b) for b in blobs],
        "exit_rates": [float(c) / n for c in counts],
        "exit_counts": [int(c) for c in counts],
        "expected_macs": float(tot / n),
        "arena_bytes": [int(a) for a in runner.arena_bytes],
        "stage_invocations": [int(v) for v in runner.invocations],
        "n": n,
        "seconds": seconds,
        "ms_per_image": 1000.0 * seconds / n,
        "rule": runner.rule,
    }
    if details:
        res["predictions"] = preds
        res["exits"] = exits
    return res

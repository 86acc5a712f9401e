"""Export a trained, thresholded EENN for a microcontroller: staged int8 .tflite files, C/C++ sources
for TFLM's MicroInterpreter, and manifest.json.

`export_eenn` is the one entry point (`convert_eenn` is its in-memory half, `write_export` the files).
The folder it writes:

* stage<k>.tflite: the int8 stage models (see stages.py), and manifest.json describing them;
* nachos_model_data.h/.cc, nachos_decision.h/.cc, nachos_eenn.h/.cc, README.md: see c_sources.py.

Identifiers come from a sanitised `name` (default "nachos"); nothing from the user's paths or model
names is written into C code. `evaluate_int8` gives the TFLM figures of exactly what `export_eenn`
would deploy, without writing files.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nachos_tf.errors import ExportError

from . import flatbuffer as fb
from .c_sources import (decision_sources, model_data_sources, readme_text, resolver_method, runner_sources,
                        sanitize_identifier)
from .int8 import check_rule, exit_params
from .qat import qat_finetune
from .stages import check_boundaries, quantize_stages, split_stages
from .tflm import evaluate_staged, measure_arena as tflm_measure_arena

if TYPE_CHECKING:
    import keras

__all__ = ["C_SOURCES", "ARENA_MARGIN", "ARENA_MARGIN_BYTES", "convert_eenn", "write_export", "export_eenn",
           "evaluate_int8", "cortex_m4_size", "sanitize_identifier", "resolver_method", "model_data_sources",
           "decision_sources", "runner_sources", "readme_text"]

C_SOURCES = ["nachos_model_data.h", "nachos_model_data.cc", "nachos_decision.h", "nachos_decision.cc",
             "nachos_eenn.h", "nachos_eenn.cc", "README.md"]
ARENA_MARGIN = 0.25          # fraction added to the largest measured stage arena
ARENA_MARGIN_BYTES = 1024


def _json_float(v: float):
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


# --------------------------------------------------------------------------- compiling

def cortex_m4_size(out_dir: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """Compiles the model data and the decision code for Cortex-M4 (-Os) and returns their section
    sizes from arm-none-eabi-size, or None if the ARM toolchain is not installed."""
    gxx = shutil.which("arm-none-eabi-g++")
    size = shutil.which("arm-none-eabi-size")
    if not gxx or not size:
        return None
    out_dir = Path(out_dir).resolve()  # the compiler runs with cwd=out_dir: a relative path would not resolve
    res: Dict[str, Any] = {"flags": "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -std=c++17"}
    with tempfile.TemporaryDirectory(prefix="nachos_m4_") as tmp:
        for key, src in (("model_data", "nachos_model_data.cc"), ("decision", "nachos_decision.cc")):
            obj = os.path.join(tmp, key + ".o")
            cmd = [gxx] + res["flags"].split() + ["-Wall", "-Wextra", "-Werror", "-c", str(out_dir / src),
                                                  "-o", obj]
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=str(out_dir))
            if p.returncode != 0:
                raise ExportError(f"arm-none-eabi-g++ failed on {src}:\n{p.stderr[-2000:]}")
            q = subprocess.run([size, obj], capture_output=True, text=True)
            vals = q.stdout.strip().splitlines()[-1].split()
            res[key] = {"text": int(vals[0]), "data": int(vals[1]), "bss": int(vals[2])}
        v = subprocess.run([gxx, "--version"], capture_output=True, text=True).stdout.splitlines()
        res["compiler"] = v[0] if v else "arm-none-eabi-g++"
    return res


# --------------------------------------------------------------------------- the export entry

def convert_eenn(model: keras.Model, representative_x: np.ndarray, rule: str, thresholds: Sequence[float],
                 exit_macs: Optional[Sequence[float]] = None, qat_epochs: int = 0,
                 train_xy: Optional[Tuple[np.ndarray, np.ndarray]] = None, num_samples: int = 256,
                 name: str = "nachos", measure_arena: bool = True,
                 drop_unreachable: bool = True) -> Tuple[Dict[str, Any], List[bytes]]:
    """In-memory half of `export_eenn`: (manifest, stage .tflite bytes), no files written.

    Splits the EENN into stages, quantises them with boundary-consistent int8 parameters, maps every
    output through the SignatureDefs, measures TFLM arenas (child processes) and turns the float
    thresholds into the device's integer / float32 thresholds.

    An early exit whose threshold is -inf takes every image that reaches it, so the stages after it never
    run: with `drop_unreachable` they are not exported (no flash, no arena, no ops for them), and that exit
    becomes the export's last stage, converted as a final classifier (class output only). Every image leaves at
    the same exit as in the whole export (the stages before it are the same flatbuffers); the last stage's int8
    rounding may differ from that stage's in the whole export, so a few images it classifies may get another
    class. manifest["exits_not_exported"] names the exits left out.

    Args:
        model: the trained Keras EENN (outputs named after `nachos_tf.naming`).
        representative_x: raw training-split inputs for PTQ calibration.
        rule: the exit rule.
        thresholds: one float threshold per early exit.
        exit_macs: staged MACs per exit (default: `nachos_tf.macs.profile_macs`).
        qat_epochs: quantisation-aware fine-tuning epochs first (needs `train_xy`).
        train_xy: (x, y) for QAT.
        num_samples: calibration samples.
        name: prefix of the C symbols (sanitised).
        measure_arena: measure each stage's TFLM arena (child processes).
        drop_unreachable: leave out the stages after the first early exit whose threshold is -inf.

    Returns:
        (manifest dict, list of stage .tflite bytes).

    Raises:
        ExportError: bad rule / thresholds / exit_macs, a model that cannot be split or converted, or an
            op TensorFlow Lite Micro cannot register.
    """
    from nachos_tf import naming
    from nachos_tf.policy import exported_stages

    check_rule(rule)
    layout = naming.exit_layout(model)
    n_early = len(layout) - 1
    thr = [float(t) for t in (thresholds if thresholds is not None else [])]
    if len(thr) != n_early:
        raise ExportError(f"need one threshold per early exit ({n_early}), got {len(thr)}")
    if any(math.isnan(t) for t in thr):
        raise ExportError("thresholds must not be NaN")
    n_keep = exported_stages(thr) if drop_unreachable else len(layout)
    if rule == "confidence" and any(e.conf_index is None for e in layout[:n_keep - 1]):
        raise ExportError("rule 'confidence' needs a confidence output (exit_k_conf) at every early exit")
    if exit_macs is None:
        from nachos_tf.macs import profile_macs

        exit_macs = profile_macs(model).exit_macs
    exit_macs = [float(m) for m in exit_macs]
    if len(exit_macs) != len(layout):
        raise ExportError(f"exit_macs must hold one value per exit ({len(layout)}), got {len(exit_macs)}")
    prefix = sanitize_identifier(name)

    quant = "ptq"
    if qat_epochs and qat_epochs > 0:
        if train_xy is None:
            raise ExportError("qat_epochs > 0 needs training data: train_xy=(x_train, y_train)")
        model = qat_finetune(model, train_xy[0], train_xy[1], epochs=int(qat_epochs))
        quant = "qat"

    stages = split_stages(model, n_stages=n_keep)
    qstages = quantize_stages(stages, representative_x, num_samples=num_samples, model=model)
    blobs = [q.tflite for q in qstages]
    boundaries = check_boundaries(blobs)

    ins = fb.signature_inputs(blobs[0])[0]
    num_classes = int(fb.signature_outputs(blobs[0])[0].shape[-1])
    stage_recs = []
    ops: List[str] = []
    for k, q in enumerate(qstages):
        b = q.tflite
        rows = fb.op_macs(b)
        stage_ops = sorted({r.opcode for r in rows})
        for op in stage_ops:
            if op not in ops:
                ops.append(op)
        for op in stage_ops:
            resolver_method(op)          # ExportError now for ops TFLM cannot register
        rec: Dict[str, Any] = {
            "exit": q.stage.exit_name,
            "tflite": f"stage{k}.tflite",
            "symbol": f"{prefix}_stage{k}",
            "bytes": len(b),
            "sha256": hashlib.sha256(b).hexdigest(),
            "arena_bytes": tflm_measure_arena(b, f"stage {k}") if measure_arena else None,
            "cmsis_nn_scratch_bytes": fb.cmsis_nn_scratch_bound(b),
            "macs": int(sum(r.macs for r in rows)),
            "ops": stage_ops,
            "logits_output": q.positions["probs"],
            "confidence_output": q.positions["confidence"],
            "features_output": q.positions["features"],
            "input_quant": list(q.input_quant),
            "probs_quant": list(q.output_quant["probs"]),
            "confidence_quant": list(q.output_quant["confidence"]) if q.output_quant["confidence"] else None,
            "features_quant": list(q.output_quant["features"]) if q.output_quant["features"] else None,
            "threshold": None,
            "threshold_int8": None,
            "threshold_f32": None,
        }
        if k < n_keep - 1:
            p = exit_params(rule, thr[k], rec["probs_quant"], rec["confidence_quant"])
            rec["threshold"] = _json_float(thr[k])
            rec["threshold_int8"] = p["t_int"]
            rec["threshold_f32"] = _json_float(p["t_f32"])
        stage_recs.append(rec)

    # the arena is measured with the reference kernels; CMSIS-NN kernels also take a scratch buffer from it
    measured = [r["arena_bytes"] + r["cmsis_nn_scratch_bytes"] for r in stage_recs if r["arena_bytes"] is not None]
    if measured:
        arena_total = int(math.ceil((max(measured) * (1 + ARENA_MARGIN) + ARENA_MARGIN_BYTES) / 16.0) * 16)
    else:
        arena_total = int(max(64 << 10, 16 * max(len(b) for b in blobs)))
    manifest: Dict[str, Any] = {
        "format": "nachos-tf staged EENN",
        "format_version": 1,
        "input": {"shape": [int(d) for d in ins.shape], "dtype": "int8", "scale": float(ins.scale),
                  "zero_point": int(ins.zero_point)},
        "num_classes": num_classes,
        "rule": rule,
        "exit_names": [e.name for e in layout[:n_keep]],
        "exits_not_exported": [e.name for e in layout[n_keep:]],
        "exit_macs": exit_macs[:n_keep],
        "stage_macs_cumulative": [int(v) for v in np.cumsum([r["macs"] for r in stage_recs])],
        "quantization": quant,
        "qat_epochs": int(qat_epochs or 0),
        "calibration_samples": int(min(num_samples, len(representative_x))),
        "arena_bytes": arena_total,
        "arena_measured": bool(measured),
        "boundaries": boundaries,
        "ops": ops,
        "c_sources": list(C_SOURCES),
        "cortex_m4": None,
        "stages": stage_recs,
        "versions": _versions(),
    }
    return manifest, blobs


def write_export(out_dir: Union[str, Path], manifest: Dict[str, Any], blobs: Sequence[bytes],
                 cortex_m4: bool = True) -> Dict[str, Any]:
    """Writes stage files, C/C++ sources, README.md and manifest.json of a converted EENN to `out_dir`.

    With `cortex_m4` and arm-none-eabi-g++ installed, the model data and decision code are compiled
    for Cortex-M4 and their sizes recorded under manifest["cortex_m4"].

    Args:
        out_dir: the export folder (created).
        manifest: the manifest `convert_eenn` returned.
        blobs: the stage .tflite bytes `convert_eenn` returned.
        cortex_m4: record the Cortex-M4 size of the model data and decision code.

    Returns:
        The manifest as written.

    Raises:
        ExportError: the Cortex-M4 compile fails.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = manifest["stages"]
    rule = manifest["rule"]
    tables = []
    for k, st in enumerate(stages[:-1]):
        pq = fb.signature_outputs(blobs[k])
        cq = (pq[1].scale, pq[1].zero_point) if st["confidence_output"] is not None else None
        tables.append(exit_params(rule, float(st["threshold"]), (pq[0].scale, pq[0].zero_point), cq)["table"])
    feature_bytes = max([int(np.prod(fb.signature_outputs(b)[-1].shape)) for b in blobs[:-1]] or [1])
    for st, b in zip(stages, blobs):
        (out / st["tflite"]).write_bytes(b)
    symbols = [st["symbol"] for st in stages]
    files: Dict[str, str] = {}
    files.update(model_data_sources(symbols, blobs))
    files.update(decision_sources())
    files.update(runner_sources(manifest, symbols, manifest["ops"], tables, feature_bytes, manifest["num_classes"]))
    files["README.md"] = readme_text(manifest)
    for fn, text in files.items():
        (out / fn).write_text(text)
    manifest = dict(manifest, cortex_m4=cortex_m4_size(out) if cortex_m4 else None)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_eenn(model: keras.Model, out_dir: Union[str, Path], representative_x: np.ndarray, rule: str,
                thresholds: Sequence[float], exit_macs: Optional[Sequence[float]] = None,
                qat_epochs: int = 0, train_xy: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                num_samples: int = 256, name: str = "nachos", cortex_m4: bool = True,
                measure_arena: bool = True, drop_unreachable: bool = True) -> Dict[str, Any]:
    """Staged int8 export of an EENN; writes the folder described in this module and returns the manifest.

    Args:
        model: the trained Keras EENN (outputs named after `nachos_tf.naming`).
        out_dir: the folder to write.
        representative_x: raw training-split inputs for calibration.
        rule: the exit rule.
        thresholds: one float threshold per early exit, as calibrated by nachos_tf.policy (+inf = never exit there).
        exit_macs: staged MACs per exit (default: nachos_tf.macs.profile_macs).
        qat_epochs: > 0 fine-tunes quantisation-aware first (needs `train_xy`).
        train_xy: (x, y) for QAT.
        num_samples: calibration samples.
        name: prefix of the C symbols (sanitised).
        cortex_m4: record the Cortex-M4 size of the model data and decision code (see `write_export`).
        measure_arena: measure each stage's TFLM arena (child processes).
        drop_unreachable: leave out the stages after the first early exit whose threshold is -inf (False keeps
            every stage, e.g. to try other thresholds with `tflm.with_policy` later).

    Returns:
        The manifest (also in out_dir/manifest.json).

    Raises:
        ExportError: see `convert_eenn`.
    """
    manifest, blobs = convert_eenn(model, representative_x, rule, thresholds, exit_macs, qat_epochs, train_xy,
                                   num_samples, name, measure_arena, drop_unreachable)
    return write_export(out_dir, manifest, blobs, cortex_m4=cortex_m4)


def evaluate_int8(model: keras.Model, representative_x: np.ndarray, x: np.ndarray, y: np.ndarray, rule: str,
                  thresholds: Sequence[float], exit_macs: Optional[Sequence[float]] = None,
                  limit: Optional[int] = None, num_samples: int = 256) -> Dict[str, Any]:
    """Int8 figures of a Keras EENN on TFLM without writing files (staged conversion + evaluate_staged).

    Args:
        model: the trained Keras EENN.
        representative_x: raw training-split inputs for PTQ calibration.
        x: raw test inputs.
        y: their labels.
        rule: the exit rule.
        thresholds: one float threshold per early exit.
        exit_macs: staged MACs per exit (default: profile_macs).
        limit: evaluate the first `limit` samples only.
        num_samples: calibration samples.

    Returns:
        `evaluate_staged`'s figures of exactly what `export_eenn` would deploy, plus "arena_bytes_total"
        (the export's one arena).

    Raises:
        ExportError: the model cannot be converted or run.
    """
    manifest, blobs = convert_eenn(model, representative_x, rule, thresholds, exit_macs, num_samples=num_samples)
    res = evaluate_staged(blobs, x, y, limit=limit, manifest=manifest, measure=False)
    res["arena_bytes_total"] = manifest["arena_bytes"]
    return res


def _versions() -> Dict[str, str]:
    vs = {}
    for mod in ("tensorflow", "keras", "tflite_micro", "numpy"):
        try:
            m = __import__(mod)
            vs[mod] = str(getattr(m, "__version__", "?"))
        except Exception:
            pass
    try:
        from importlib.metadata import version

        vs["tflite_micro"] = version("tflite-micro")
    except Exception:
        pass
    return vs

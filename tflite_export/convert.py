"""The one door from `nachos_tf` into `tflite_export`.

The search and the CLI reach the int8 export only through this module (imported lazily, inside their
functions), so `nachos_tf` does not depend on TensorFlow Lite Micro unless a figure from it is asked:

* `int8_sizes`: flash bytes of the staged int8 export and, if asked, the TFLM arena it needs
  (the search's `max_flash` / `max_ram` constraints);
* `int8_report`: test-split figures of the int8 staged export measured on the TFLM micro kernels
  (the final re-training's "int8" record);
* `export_solution`, `evaluate_export`, `manifest_summary`: `nachos-tf export` / `evaluate`;
* `build_firmware`, `firmware_summary`: `nachos-tf firmware` (real TFLM build, host or Cortex-M under QEMU).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

import numpy as np

from .c_export import convert_eenn, evaluate_int8
from .firmware import build_firmware, firmware_summary
from .from_run import evaluate_export, export_solution, manifest_summary, representative_x

if TYPE_CHECKING:
    import keras

__all__ = ["int8_sizes", "int8_report", "export_solution", "evaluate_export", "manifest_summary",
           "build_firmware", "firmware_summary"]

SIZE_RULE = "max_softmax"         # without thresholds, any rule and finite thresholds give every stage
SIZE_SAMPLES = 64                 # calibration images for the size probe


def int8_sizes(model: keras.Model, x_repr: np.ndarray, need_ram: bool, rule: Optional[str] = None,
               thresholds: Optional[Sequence[float]] = None) -> Dict[str, Optional[int]]:
    """Flash and RAM of the int8 staged export of a Keras EENN, without writing files.

    Args:
        model: the trained Keras EENN (outputs named after `nachos_tf.naming`).
        x_repr: raw training-split images to calibrate the quantisation on (the first 64 are used).
        need_ram: measure the TFLM tensor arena too (child processes; slower).
        rule, thresholds: the exit policy the export will carry. The sizes depend on it only through the
            stages it keeps (none after an early exit whose threshold is -inf, see `convert_eenn`); without
            thresholds every stage is counted, an upper bound of the export at any thresholds.

    Returns:
        {"flash_bytes": sum of the stage .tflite sizes, "arena_bytes": the export's arena (largest measured
        stage arena + margin) or None when not asked}.

    Raises:
        ExportError: the model cannot be converted or run on TFLM, or bad thresholds.
    """
    from nachos_tf import naming

    n_early = len(naming.exit_layout(model)) - 1
    thr = [0.5] * n_early if thresholds is None else [float(t) for t in thresholds]
    manifest, blobs = convert_eenn(model, x_repr, rule if thresholds is not None and rule else SIZE_RULE, thr,
                                   num_samples=min(SIZE_SAMPLES, len(x_repr)), measure_arena=need_ram)
    return {"flash_bytes": int(sum(len(b) for b in blobs)),
            "arena_bytes": int(manifest["arena_bytes"]) if need_ram else None}


def int8_report(model: keras.Model, x_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, rule: str,
                thresholds: Sequence[float], exit_macs: Sequence[float]) -> Dict[str, Any]:
    """Test figures of the int8 staged export on the TFLM micro kernels (the code behind `nachos-tf evaluate`).

    Calibrated on the same training images as `nachos-tf export` (`representative_x(x_train)`), so an
    export of the same solution reproduces these figures.

    Args:
        model: the trained Keras EENN.
        x_train: raw training images (the calibration draw is taken from them).
        x_test: raw test images; y_test: their labels.
        rule: the exit rule; thresholds: one float threshold per early exit.
        exit_macs: staged MACs per exit.

    Returns:
        {"accuracy", "exit_rates" (one per exit of `model`), "expected_macs", "n", "arena_bytes" (the export's
        arena), "stage_bytes" (per exported stage: the stages after an exit whose threshold is -inf are not
        exported, see `convert_eenn`), "runtime": "tflite-micro"}.

    Raises:
        ExportError: the model cannot be converted or run on TFLM.
    """
    r = evaluate_int8(model, representative_x(x_train), x_test, y_test, rule, thresholds, exit_macs)
    out = {k: r[k] for k in ("accuracy", "exit_rates", "expected_macs")}
    # the export leaves out the stages after an exit every image stops at: those exits take no image
    out["exit_rates"] = list(out["exit_rates"]) + [0.0] * (len(exit_macs) - len(out["exit_rates"]))
    out.update(n=int(r.get("n", len(y_test))), arena_bytes=r.get("arena_bytes_total"),
               stage_bytes=r.get("stage_bytes"), runtime="tflite-micro")
    return out

"""tflite_export: from a trained EENN to bytes on a microcontroller.

Staged full-int8 TFLite models (one per exit, boundary-consistent quantisation), the device's int8
exit decisions, evaluation on the TensorFlow Lite Micro interpreter, and C/C++ sources for TFLM.
"""
from .c_export import convert_eenn, evaluate_int8, export_eenn, write_export
from .int8 import RULES, exit_decision, threshold_f32, threshold_int
from .qat import float_finetune, qat_finetune
from .quantize import compare_quantization, quantize_input, tflite_predict, to_int8_tflite
from .stages import Stage, check_boundaries, quantize_stages, split_stages
from .tflm import (StagedRunner, evaluate_staged, load_export, measure_arena, validate_manifest, validate_tflite,
                   with_policy)

__all__ = [
    "convert_eenn", "export_eenn", "write_export",
    "compare_quantization", "float_finetune", "qat_finetune", "quantize_input", "tflite_predict", "to_int8_tflite",
    "Stage", "check_boundaries", "quantize_stages", "split_stages",
    "RULES", "StagedRunner", "evaluate_int8", "evaluate_staged", "exit_decision", "load_export", "measure_arena",
    "threshold_f32", "threshold_int", "validate_manifest", "validate_tflite", "with_policy",
]

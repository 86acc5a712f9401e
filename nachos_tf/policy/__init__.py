"""Exit policies of an EENN: exit rules, simulation of early exiting, and threshold calibration.

Pure numpy (no TensorFlow), so the same code scores outputs from Keras, TFLite or a microcontroller.

* ``exit_scores`` turns per-exit outputs into one confidence score per sample and early exit, for the
  rules in ``RULES``. A sample leaves at the first early exit whose score is ``>=`` its threshold,
  else at the final exit.
* ``simulate`` (or ``ExitTable.simulate``, which scores once and then costs microseconds per
  threshold vector) gives accuracy, exit rates and expected MACs, with expected MACs
  ``sum_k rate_k * exit_macs[k]`` where ``exit_macs`` are staged costs (see DESIGN.md).
* ``calibrate`` picks thresholds on validation data: ``method="pareto"`` (ours) computes the
  accuracy / expected-MAC trade-off curve over per-exit thresholds and picks the most accurate
  admissible point; ``method="grid"`` reproduces NACHOS's grid search plus repair step.

The package, one job per module: ``rules`` (RULES, scores, thresholds JSON), ``simulation``
(ExitTable, SimResult, simulate), ``calibration`` (Calibration, calibrate) with its two methods in
``pareto`` and ``grid``, ``crossfit`` (crossfit_calibrate: out-of-fold figures of a calibration) and
``checks`` (input validation).
"""
from __future__ import annotations

from .calibration import METHODS, NACHOS_GRID, Calibration, ParetoCurve, calibrate
from .crossfit import crossfit_calibrate
from .rules import RULES, exit_scores, exported_stages, softmax, thresholds_from_json, thresholds_to_json
from .simulation import ExitTable, SimResult, simulate

__all__ = [
    "RULES", "METHODS", "NACHOS_GRID", "SimResult", "ExitTable", "ParetoCurve", "Calibration",
    "softmax", "exit_scores", "simulate", "calibrate", "crossfit_calibrate", "thresholds_to_json",
    "thresholds_from_json", "exported_stages",
]

"""The output-naming contract of an EENN: which Keras outputs are exits, confidences and cut points.

Every part of nachos-tf (profiler, losses, training, policy, export) finds exits through this module,
so the contract lives in one place:

* exit logits are outputs named ``exit_0``, ``exit_1``, ... in depth order, the final classifier ``final``;
* a learned confidence (NACHOS "binary branch") of early exit k is an output named ``exit_k_conf``;
* the backbone tensor an exit head branches from is the output of an Identity layer ``exit_k_point``
  (the stage boundary used to split the model for staged deployment).

Model outputs are ordered ``exit_0, [exit_0_conf], exit_1, [exit_1_conf], ..., final``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional

FINAL = "final"
_EXIT_RE = re.compile(r"^exit_(\d+)$")
_CONF_RE = re.compile(r"^exit_(\d+)_conf$")


def exit_name(k: int) -> str:
    """Name of the logits output of early exit k."""
    return f"exit_{k}"


def conf_name(k: int) -> str:
    """Name of the sigmoid confidence output of early exit k."""
    return f"exit_{k}_conf"


def point_name(k: int) -> str:
    """Name of the Identity layer marking the backbone tensor early exit k branches from."""
    return f"exit_{k}_point"


@dataclass(frozen=True)
class ExitSpec:
    """One exit: its name, the index of its logits output and of its confidence output (or None)."""

    name: str
    logits_index: int
    conf_index: Optional[int]


def output_names(model) -> List[str]:
    """Names of a functional model's outputs, in output order (the producing layers' names)."""
    return [t._keras_history[0].name for t in model.outputs]


def exit_layout(model) -> List[ExitSpec]:
    """Exits of an EENN in depth order, final last.

    Models that follow the naming contract map exits by name; any other model counts each output
    as one exit, in output order (so the profiler works on any multi-output model).
    """
    names = output_names(model)
    index = {n: i for i, n in enumerate(names)}
    early = sorted((int(m.group(1)), n) for n in names if (m := _EXIT_RE.match(n)))
    if FINAL in index:
        specs = [ExitSpec(n, index[n], index.get(conf_name(k))) for k, n in early]
        specs.append(ExitSpec(FINAL, index[FINAL], None))
        return specs
    return [ExitSpec(n, i, None) for i, n in enumerate(names)]

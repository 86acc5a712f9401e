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
from typing import List, Optional, Sequence

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


def contract_problem(names: Sequence[str]) -> Optional[str]:
    """Why output names do not form a complete ``exit_0 .. exit_{n-1}, [exit_k_conf], final`` set, or None.

    Args:
        names: the model's output names, in output order.
    Returns:
        None when every output is ``exit_k`` (k = 0..n-1, each once), ``exit_k_conf`` of such an exit, or
        ``final`` (exactly once); otherwise one line naming the first output that breaks the contract.
    """
    seen = set()
    exits, confs = [], []
    for n in names:
        if n in seen:
            return f"output name {n!r} appears twice"
        seen.add(n)
        if n == FINAL:
            continue
        if (m := _EXIT_RE.match(n)):
            exits.append(int(m.group(1)))
        elif (m := _CONF_RE.match(n)):
            confs.append((int(m.group(1)), n))
        else:
            return f"output {n!r} is none of exit_k, exit_k_conf, final"
    if FINAL not in seen:
        return "no output is named 'final'"
    if sorted(exits) != list(range(len(exits))):
        return f"early exits {sorted(exits)} are not numbered 0..{len(exits) - 1}"
    for k, n in confs:
        if k not in exits:
            return f"confidence output {n!r} has no exit_{k}"
    return None


def exit_layout(model) -> List[ExitSpec]:
    """Exits of an EENN in depth order, final last; never drops an output.

    Models whose output names form a complete contract set (see :func:`contract_problem`) map exits by
    name, each ``exit_k_conf`` grouped with exit k. Any other model (e.g. outputs ``e0`` and ``final``)
    counts every output as one exit, in model output order, so that no output is ever left out.
    """
    return layout_of_names(output_names(model))


def contract_names(n_early: int, confidence: bool) -> List[str]:
    """Output names, in output order, of an EENN with `n_early` early exits (each with its confidence
    output when `confidence`) and the final exit."""
    names: List[str] = []
    for k in range(n_early):
        names += [exit_name(k)] + ([conf_name(k)] if confidence else [])
    return names + [FINAL]


def layout_of_names(names: Sequence[str]) -> List[ExitSpec]:
    """`exit_layout` of a model whose outputs have these names (in output order)."""
    names = list(names)
    if contract_problem(names) is not None:
        return [ExitSpec(n, i, None) for i, n in enumerate(names)]
    index = {n: i for i, n in enumerate(names)}
    early = sorted((int(m.group(1)), n) for n in names if (m := _EXIT_RE.match(n)))
    specs = [ExitSpec(n, index[n], index.get(conf_name(k))) for k, n in early]
    specs.append(ExitSpec(FINAL, index[FINAL], None))
    return specs

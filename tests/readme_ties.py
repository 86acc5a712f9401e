"""The registry of README figures tied to committed results (the framework of test_readme_figures.py).

How a figure is tied to its JSON: each entry of TIES names a README section, a README text template in which
``{}`` stands for a number, and the values (computed from benchmarks/results/*.json) that the numbers must show.
The readme_ties_*.py modules register the ties of one README area each with `tie`; test_readme_figures.py
imports them all and checks every tie and the coverage of the results tables.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from functools import lru_cache
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
NUM = r"(-?\d[\d,]*(?:\.\d+)?)"

# Results sections (heading prefixes) whose tables must be tied completely.
RESULTS_SECTIONS = (
    "### Regulariser benchmark",
    "## Deployment on a microcontroller",
    "### Float vs PTQ vs QAT",
    "### Checking an export",
    "### Candidate evaluation: speed and fidelity",
    "### `make demo`, measured",
    "## nachos-tf against the alternatives",
)

# Table rows of results sections that no committed JSON holds (exact README line -> why). Reported to the lead.
UNTIED = {
    "| float, Keras | 0.7680 | 0.7725 / 0.2275 | 615,171 |":
        "quick-start deployment figures: printed by examples/deploy_quickstart.py, no JSON committed",
    "| int8 PTQ, TFLM staged | 0.7715 | 0.7745 / 0.2255 | 613,149 |":
        "quick-start deployment figures: printed by examples/deploy_quickstart.py, no JSON committed",
}


@lru_cache(maxsize=None)
def J(name: str):
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def readme_lines() -> tuple:
    return tuple((REPO / "README.md").read_text(encoding="utf-8").splitlines())


def section_lines(prefix: str) -> List[str]:
    """The lines of the README section whose heading starts with `prefix` (up to the next heading of its level)."""
    lines = readme_lines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(prefix)), None)
    assert start is not None, f"README has no section {prefix!r}"
    level = len(prefix) - len(prefix.lstrip("#"))
    out = []
    fenced = False
    for ln in lines[start + 1:]:
        if ln.lstrip().startswith("```"):
            fenced = not fenced                     # a "# comment" in a code block is not a heading
        m = re.match(r"^(#+) ", ln)
        if m and not fenced and len(m.group(1)) <= level:
            break
        out.append(ln)
    return out


def section_text(prefix: str) -> str:
    return " ".join(" ".join(section_lines(prefix)).split())


# --------------------------------------------------------------------------------------------- formatting rules

def matches(shown: str, value: float) -> bool:
    """`shown` (README text of a number) is `value` correctly rounded to the digits shown."""
    s = shown.replace(",", "")
    digits = len(s.split(".", 1)[1]) if "." in s else 0
    return abs(float(s) - float(value)) <= 0.5 * 10 ** -digits * (1 + 1e-9) + 1e-12


def mean_std(values: Sequence[Optional[float]], ddof: int, scale: float = 1.0):
    vals = [v * scale for v in values if v is not None]
    if len(vals) < 2:
        return (vals[0] if vals else None), None
    m = statistics.fmean(vals)
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - ddof))


class Tie(NamedTuple):
    section: str                      # RESULTS_SECTIONS prefix (or any heading prefix)
    template: str                     # README text; "{}" = a number
    values: Callable[[], Sequence[float]]
    source: str                       # the JSON file (for the failure message)


TIES: List[Tie] = []


def tie(section: str, template: str, source: str, values: Callable[[], Sequence[float]]) -> None:
    TIES.append(Tie(section, template, values, source))


def pattern(template: str) -> str:
    parts = template.split("{}")
    return NUM.join(r"\s*".join(re.escape(w) for w in p.split(" ")) if p.strip() else re.escape(p)
                    for p in parts)

"""Human sizes for the command line and reports: '1.5M' MACs, '64k', '256KiB' bytes."""
from __future__ import annotations

import math
import re

from .errors import ConstraintError

_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "kb": 1e3, "mb": 1e6, "gb": 1e9,
           "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "b": 1}
_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> float:
    """Parse a human size: '1.5M' -> 1.5e6, '64k' -> 64000, '256KiB' -> 262144, '1000' -> 1000.

    Suffixes are case-insensitive: k/M/G (and kB/MB/GB) are decimal, KiB/MiB/GiB binary, B is 1.

    Args:
        text: A number with an optional suffix.

    Returns:
        The size as a float.

    Raises:
        ConstraintError: `text` is not a number with a known suffix.
    """
    m = _RE.match(str(text))
    if not m or m.group(2).lower() not in _SUFFIX:
        raise ConstraintError(f"cannot read size {text!r}: use a number with an optional suffix "
                              "k, M, G (x1000) or KiB, MiB (x1024), e.g. 1.5M or 256KiB")
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    return value


def human(n: float) -> str:
    """Compact decimal units for MACs and counts: 950, 12.3k, 1.23M, 4.5G."""
    n = float(n)
    if not math.isfinite(n):
        return str(n)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        # Round to 3 significant digits before choosing the unit: 999,999.6 is "1M", not "1e+03k".
        if abs(float(f"{n:.3g}")) >= div:
            return f"{float(f'{n / div:.3g}'):g}{unit}"
    return f"{n:.0f}" if n == int(n) else f"{n:.3g}"

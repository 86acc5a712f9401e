"""What an admissible EENN must meet: `Constraints` (accuracy floor, expected-MAC budget, optional flash and RAM
bounds), validated when made, and the number check the search settings share (`number`)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ..errors import ConstraintError

__all__ = ["Constraints", "number"]


def number(name: str, v: Any) -> float:
    """`v` as a finite float (the check every numeric setting of a search goes through).

    Args:
        name: the setting's name, for the message.
        v: its value.

    Returns:
        The value as a float.

    Raises:
        ConstraintError: `v` is not a number (booleans included) or not finite.
    """
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ConstraintError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ConstraintError(f"{name} must be finite, got {v}")
    return v


@dataclass(frozen=True)
class Constraints:
    """What an admissible EENN must meet (uNAS-style typed bounds, plus the EENN's expected-MAC budget).

    Attributes:
        min_accuracy: top-1 accuracy of the thresholded EENN on validation, in (0, 1].
        max_macs: expected MACs per image (staged exit costs weighted by exit rates), > 0.
        max_flash: int8 model bytes, measured on the int8 export (optional, a positive whole number).
        max_ram: peak TFLM arena bytes, measured on the int8 export (optional, a positive whole number).

    Raises:
        ConstraintError: a bound is not a finite number or lies outside its range.
    """

    min_accuracy: float
    max_macs: float
    max_flash: Optional[int] = None
    max_ram: Optional[int] = None

    def __post_init__(self) -> None:
        acc = number("min_accuracy", self.min_accuracy)
        if not 0.0 < acc <= 1.0:
            raise ConstraintError(f"min_accuracy must be in (0, 1] (a fraction, e.g. 0.88), got {acc:g}")
        macs = number("max_macs", self.max_macs)
        if macs <= 0:
            raise ConstraintError(f"max_macs must be > 0, got {macs:g}")
        object.__setattr__(self, "min_accuracy", acc)
        object.__setattr__(self, "max_macs", macs)
        for name in ("max_flash", "max_ram"):
            v = getattr(self, name)
            if v is not None:
                v = number(name, v)
                if v < 1 or v != int(v):
                    raise ConstraintError(f"{name} must be a positive whole number of bytes, got {v:g}")
                object.__setattr__(self, name, int(v))

    @property
    def active(self) -> List[str]:
        """Names of the constraints in force, in G order: accuracy, macs, [flash], [ram]."""
        return ["accuracy", "macs"] + [n for n, v in (("flash", self.max_flash), ("ram", self.max_ram)) if v]

    def violations(self, accuracy: float, expected_macs: float, flash: Optional[float] = None,
                   ram: Optional[float] = None) -> Dict[str, Optional[float]]:
        """Normalised constraint values (pymoo convention: <= 0 means met), relative to each bound.

        Args:
            accuracy: the candidate's validation accuracy.
            expected_macs: its expected MACs per image.
            flash: its int8 model bytes (needed when max_flash is set).
            ram: its peak TFLM arena bytes (needed when max_ram is set).

        Returns:
            {"accuracy": (min_acc - acc) / min_acc, "macs": (E[MACs] - max) / max, "flash", "ram": likewise,
            None when that bound is not set}.

        Raises:
            ConstraintError: max_flash / max_ram is set but the matching size is None.
        """
        g: Dict[str, Optional[float]] = {
            "accuracy": (self.min_accuracy - accuracy) / self.min_accuracy,
            "macs": (expected_macs - self.max_macs) / self.max_macs, "flash": None, "ram": None}
        for name, bound, value in (("flash", self.max_flash, flash), ("ram", self.max_ram, ram)):
            if bound:
                if value is None:
                    raise ConstraintError(f"constraint max_{name} is set but the {name} size was not measured")
                g[name] = (float(value) - bound) / bound
        return g

    def meets_accuracy_and_macs(self, accuracy: float, expected_macs: float) -> bool:
        """Whether accuracy and expected MACs meet their bounds (the two constraints that need no int8 conversion).

        Args:
            accuracy: the candidate's validation accuracy.
            expected_macs: its expected MACs per image.

        Returns:
            True when both are met (the same test as `violations` <= 0).
        """
        g = replace(self, max_flash=None, max_ram=None).violations(accuracy, expected_macs)
        return g["accuracy"] <= 0 and g["macs"] <= 0

    def relaxed(self, accuracy_slack: float) -> "Constraints":
        """The same bounds with the accuracy floor lowered (the search-time floor).

        Args:
            accuracy_slack: how much to lower min_accuracy (a fraction; the floor stays >= 1e-6).

        Returns:
            The relaxed Constraints (this one when the slack is 0).
        """
        if not accuracy_slack:
            return self
        return replace(self, min_accuracy=max(1e-6, self.min_accuracy - float(accuracy_slack)))

    def to_dict(self) -> Dict[str, Any]:
        """The bounds as config.json holds them.

        Returns:
            {field name: value} of the four bounds (None for an unset optional one).
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Constraints":
        """The constraints a `to_dict()` describes.

        Args:
            d: a mapping with min_accuracy, max_macs and optionally max_flash, max_ram.

        Returns:
            The Constraints.

        Raises:
            ConstraintError: a bound is missing or invalid.
        """
        return cls(**{k: d.get(k) for k in ("min_accuracy", "max_macs", "max_flash", "max_ram")})

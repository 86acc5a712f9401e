"""Compact unit formatting and size parsing (what the CLI prints and reads for MACs and bytes)."""
import math

import pytest

from nachos_tf.errors import ConstraintError
from nachos_tf.units import human, parse_size


@pytest.mark.parametrize("value, text", [
    (0, "0"), (950, "950"), (999.4, "999"), (999.6, "1k"), (1000, "1k"), (12_345, "12.3k"),
    (999_499, "999k"), (999_500, "1M"), (999_999.6, "1M"), (1_234_000, "1.23M"), (1_500_000, "1.5M"),
    (999_600_000, "1G"), (4.5e9, "4.5G"), (2.5e12, "2500G"), (-1500, "-1.5k"), (0.5, "0.5"),
])
def test_human_rounds_before_choosing_the_unit(value, text):
    # A value just under a unit used to print in scientific notation of the smaller unit ("1e+03k").
    assert human(value) == text
    assert "e+" not in human(value)


@pytest.mark.parametrize("value", [37, 4_096, 123_456, 999_999.6, 7_654_321, 3.3e9])
def test_human_reads_back_within_its_three_significant_digits(value):
    back = parse_size(human(value))
    assert math.isclose(back, value, rel_tol=5e-3), (value, human(value), back)


def test_human_of_non_finite_values_says_so():
    assert human(float("inf")) == "inf" and human(float("nan")) == "nan"


def test_parse_size_rejects_unknown_suffixes():
    with pytest.raises(ConstraintError):
        parse_size("12Q")

"""The one number parser for cells and markers: ASCII decimal or scientific notation only."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.task_numbers import is_number, parse_number

#: What ``float()`` reads as 55 and a site's file must not.
NOT_ASCII = ["5_5", "٥٥", "５５", "۵۵", "५५", "55\u00a0", "\u200955", "1_000", "0x37", "55j"]


@pytest.mark.parametrize("text", NOT_ASCII)
def test_what_float_accepts_beyond_ascii_decimal_is_not_a_number(text: str) -> None:
    assert parse_number(text) is None and not is_number(text)


@pytest.mark.parametrize(("text", "value"), [
    ("55", 55.0), (" 55\t", 55.0), ("-3.5", -3.5), ("+.5", 0.5), ("1.", 1.0), ("1e-3", 1e-3),
    ("2E+2", 200.0), ("1e999", math.inf), ("-inf", -math.inf), ("Infinity", math.inf)])
def test_ascii_decimal_and_scientific_notation_are_numbers(text: str, value: float) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", " ", ".", "e5", "1e", "--1", "1.2.3", "nan nan", "?"])
def test_other_text_is_not_a_number(text: str) -> None:
    assert parse_number(text) is None


def test_nan_spellings_read_as_nan() -> None:
    for text in ("nan", "NaN", "-nan"):
        value = parse_number(text)
        assert value is not None and math.isnan(value)


@given(st.text(max_size=12))
def test_a_number_is_only_ever_ascii_and_agrees_with_float(text: str) -> None:
    value = parse_number(text)
    if value is None:
        return
    assert text.isascii() and "_" not in text
    expected = float(text)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


@given(st.floats(allow_nan=False) | st.integers(min_value=-10**30, max_value=10**30))
def test_every_number_written_by_python_reads_back(number: float) -> None:
    assert parse_number(repr(number)) == float(number)
    assert parse_number(f"{number:e}") == float(f"{number:e}")


@given(st.integers(min_value=0, max_value=10**6),
       st.sampled_from(["٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९"]))
def test_unicode_digits_are_never_numbers(number: int, digits: str) -> None:
    text = "".join(digits[int(d)] for d in str(number))
    assert float(text) == number  # what float() would have read
    assert parse_number(text) is None

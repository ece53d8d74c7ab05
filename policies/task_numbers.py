"""The one way a cell of a site's file, or a marker in a task file, is read as a number.

Python's ``float()`` accepts far more than a decimal number: ``5_5`` (an underscore), ``٥٥``
(Arabic-Indic digits), ``５５`` (full-width digits) and other Unicode digits and spaces are all
55 to it. A site's file is data from another system, so a cell is a number only if it is plain
ASCII decimal or scientific notation (``55``, ``-3.5``, ``.5``, ``1e-3``), with ASCII spaces or
tabs around it; ``nan``, ``inf`` and ``infinity`` (any case, with a sign) are read as the
non-finite numbers they spell, so that a report can say "NaN or infinite" rather than "not a
number". Anything else is not a number.
"""

from __future__ import annotations

import re

#: An ASCII decimal or scientific number, or a spelling of NaN or infinity.
NUMBER = re.compile(
    r"[ \t]*[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)[ \t]*",
    re.ASCII | re.IGNORECASE)


def parse_number(text: str) -> float | None:
    """``text`` as a float (possibly infinite, e.g. ``1e999``, or NaN); None if it is not an
    ASCII decimal number."""
    if NUMBER.fullmatch(text) is None:
        return None
    return float(text.strip(" \t"))


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a number (:func:`parse_number`)."""
    return parse_number(text) is not None

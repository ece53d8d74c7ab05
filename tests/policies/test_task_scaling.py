"""A numeric column's fixed scaling ``gain·(value−center)/(hi−lo)`` must be finite for every
allowed value: a range, center, gain or imputation value that overflows a float is refused by
``consortium task check``, naming the column and the field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from consortium.cli import main as consortium_main
from policies.errors import PolicyError
from policies.task_columns import NumericColumn
from policies.task_loader import parse_task
from tests.cli.invoke import invoke
from tests.policies.task_data import column, heart_data


def _age(**fields: Any) -> dict[str, Any]:
    """The heart task with its ``age`` column's range, center, gain or missing replaced."""
    data = heart_data()
    age = column(data, "age")
    age.pop("center", None)
    age.pop("missing", None)
    age.update(fields)
    return data


@pytest.mark.parametrize(("fields", "expected"), [
    ({"range": [-1e308, 1e308], "gain": 2}, "columns[0] (age): range: [-1e+308, 1e+308] is too "
                                            "wide"),
    ({"range": [-1.7e308, 1.7e308], "center": 0}, "columns[0] (age): range: "),
    ({"range": [1e308, 1.5e308]}, "columns[0] (age): range: the center"),
    ({"range": [0, 1e308], "gain": 1000}, "columns[0] (age): gain: "),
    ({"range": [-1e308, 5e307], "center": 0, "gain": 1000}, "columns[0] (age): gain: "),
    ({"range": [-10**400, 10**400]}, "columns[0] (age): range: -1000"),
    ({"range": [0, 1e-320]}, "columns[0] (age): range: [0, 9.99989e-321] is too narrow"),
])
def test_a_scaling_that_overflows_is_refused_naming_column_and_field(
        fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_task(_age(**fields), "task.yaml")
    message = str(info.value)
    assert message.startswith("task.yaml: ") and expected in message, message
    assert "Traceback" not in message


def test_task_check_refuses_the_issue_s_range(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(_age(range=[-1e308, 1e308], gain=2)), encoding="utf-8")
    got = invoke(consortium_main, "consortium", ["task", "check", str(path)], capsys,
                 monkeypatch)
    assert got.code == 2, got.output
    assert "wide.yaml: columns[0] (age): range:" in got.output and "overflows" in got.output
    assert "Traceback" not in got.output


FLOATS = st.floats(min_value=-1.7e308, max_value=1.7e308, allow_nan=False)


@settings(max_examples=300)
@given(lo=FLOATS, hi=FLOATS, gain=st.floats(min_value=1e-3, max_value=1000),
       at=st.floats(min_value=0, max_value=1), centered=st.booleans())
def test_every_accepted_scaling_is_finite_and_bounded_by_its_gain(
        lo: float, hi: float, gain: float, at: float, centered: bool) -> None:
    assume(lo < hi)
    center = lo + (hi - lo) * at if centered and math.isfinite(hi - lo) else None
    try:
        col = NumericColumn(name="x", type="numeric", unit="", range=(lo, hi), gain=gain,
                            center=center)
    except ValueError:
        return  # refused: nothing to scale
    for value in (lo, hi, lo + (hi - lo) * at, (lo + hi) / 2 if centered else lo):
        value = min(max(value, lo), hi)
        scaled = col.scale(value)
        assert math.isfinite(scaled) and abs(scaled) <= gain * (1 + 1e-9)

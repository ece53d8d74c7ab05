"""The DP mechanism value object: validated once, frozen, the accountant's event."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from site_node.protocol.mechanism import Mechanism


def mech(**over: Any) -> Mechanism:
    base: dict[str, Any] = {"noise_multiplier": 1.5, "sample_rate": 0.25, "steps": 4,
                            "max_grad_norm": 1.0, "accountant": "rdp"}
    return Mechanism(**{**base, **over})


def test_event_is_what_accountants_take() -> None:
    m = mech(max_grad_norm=2)
    assert m.event == (1.5, 0.25, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.steps = 5  # type: ignore[misc]


@pytest.mark.parametrize(("field", "value"), [
    ("noise_multiplier", 0.0), ("noise_multiplier", -1.0), ("noise_multiplier", float("nan")),
    ("noise_multiplier", float("inf")), ("noise_multiplier", True), ("noise_multiplier", "1"),
    ("sample_rate", 1.5), ("sample_rate", 0), ("max_grad_norm", float("inf")),
    ("steps", 0), ("steps", 2.0), ("steps", True), ("accountant", "moments"),
])
def test_mechanism_rejects_bad_parameters(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        mech(**{field: value})

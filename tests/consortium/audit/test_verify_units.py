"""The verifier re-accounts a patient-level receipt at its own (patient) rate, and refuses a
site's receipts of one run that mix privacy units."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consortium.audit.epsilon_checks import check_epsilons, check_units
from consortium.errors import ReceiptInvalid
from site_node.privacy import accountant
from site_node.protocol.receipt import Receipt
from tests.site_node.protocol.test_receipt import RECEIPT


def _patient_receipts() -> list[Receipt]:
    base = replace(RECEIPT, privacy_unit="patient", epsilon_ceiling=100.0,
                   lifetime_epsilon_ceiling=100.0)
    out = []
    for rnd in (1, 2):
        eps = accountant.epsilon([base.mechanism] * rnd, delta=base.delta, accountant="rdp")
        out.append(replace(base, round=rnd, epsilon=eps, lifetime_epsilon=eps))
    return out


def test_a_patient_level_receipt_is_reaccounted_at_its_patient_rate() -> None:
    checks = check_epsilons(_patient_receipts(), consortium_ceiling=100.0)
    assert [c.unit for c in checks] == ["patient", "patient"]
    assert checks[1].independent == pytest.approx(checks[1].claimed, rel=0.01)


def test_receipts_of_one_site_and_run_never_mix_units() -> None:
    first, second = _patient_receipts()
    mixed = [first, replace(second, privacy_unit="record")]
    with pytest.raises(ReceiptInvalid, match=r"privacy unit changed within run r "
                                             r"\(patient and record\)"):
        check_epsilons(mixed, consortium_ceiling=100.0)


def test_a_receipt_must_state_the_unit_of_the_runs_task() -> None:
    receipts = _patient_receipts()
    check_units(receipts, "patient")
    with pytest.raises(ReceiptInvalid, match=r"round 1: its ε is patient-level, but the run's "
                                             r"task is record-level"):
        check_units(receipts, "record")

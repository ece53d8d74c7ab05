"""Fuzzing the receipt parser (bounded): whatever bytes or metrics arrive, the only outcome is a
receipt or a ``ReceiptError`` — never another exception, never a hang."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from site_node.protocol import wire
from site_node.protocol.errors import ReceiptError
from site_node.protocol.receipt import Receipt, SignedReceipt
from tests.consortium.audit_fixture import make_receipt

GENUINE = make_receipt("hungary", 1, "a" * 64).canonical_bytes()
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


def _parse(data: bytes) -> None:
    with contextlib.suppress(ReceiptError):
        Receipt.from_canonical(data)


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    _parse(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(json.loads(GENUINE))), json_values, max_size=25))
def test_receipt_shaped_objects_with_arbitrary_values(obj: dict[str, object]) -> None:
    _parse(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


@FUZZ
@given(st.integers(0, len(GENUINE) - 1), st.binary(min_size=1, max_size=8))
def test_splices_into_a_genuine_receipt(at: int, junk: bytes) -> None:
    _parse(GENUINE[:at] + junk + GENUINE[at:])


@FUZZ
@given(st.dictionaries(st.sampled_from([wire.RECEIPT, wire.RECEIPT_SIGNATURE, wire.SITE,
                                        "other"]),
                       st.text(max_size=80) | st.binary(max_size=80) | st.integers(),
                       max_size=4))
def test_arbitrary_reply_metrics(metrics: dict[str, object]) -> None:
    with contextlib.suppress(ReceiptError):
        SignedReceipt.from_wire(metrics)


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    _parse(deep)

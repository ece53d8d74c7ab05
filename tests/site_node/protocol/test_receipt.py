"""Privacy receipts: canonical encoding, known-answer signatures (version 2, and version 1 as
old stores hold them), tampering, parsing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from site_node.protocol import wire
from site_node.protocol.errors import InvalidReceiptSignature, MalformedReceipt, ReceiptError
from site_node.protocol.keys import fingerprint
from site_node.protocol.mechanism import Mechanism
from site_node.protocol.receipt import (
    MAX_RECEIPT_BYTES,
    RECEIPT_VERSION,
    Receipt,
    SignedReceipt,
    update_sha256,
)

SEED = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
RECEIPT = Receipt(
    run_id="r", round=1, site="cleveland", policy_sha256="a" * 64, site_policy_sha256="",
    task_sha256="c" * 64,
    noise_multiplier=1.1, sample_rate=0.25, steps=4, max_grad_norm=1, accountant="rdp",
    delta=1e-5, epsilon=0.5, lifetime_epsilon=0.5, epsilon_ceiling=3, lifetime_epsilon_ceiling=10,
    num_examples=100, update_sha256="b" * 64, issued_at="2026-01-01T00:00:00+00:00",
)
CANONICAL = (
    '{"accountant":"rdp","delta":1e-05,"epsilon":0.5,"epsilon_ceiling":3.0,'
    '"issued_at":"2026-01-01T00:00:00+00:00","lifetime_epsilon":0.5,'
    '"lifetime_epsilon_ceiling":10.0,"max_grad_norm":1.0,"noise_multiplier":1.1,'
    '"num_examples":100,"policy_sha256":"' + "a" * 64 + '","privacy_unit":"record",'
    '"round":1,"run_id":"r",'
    '"sample_rate":0.25,"site":"cleveland","site_policy_sha256":"","steps":4,'
    '"task_sha256":"' + "c" * 64 + '","update_sha256":"' + "b" * 64 + '","version":3}'
)
SIGNATURE = (
    "c53a3a87dc86ea4a390beed621ff755921eb80b96e903ea29d0e50710a0c2de7"
    "007a0c78480fb571649d5beef8b42497942da3df82953f69d3c7f4cc7524710e"
)
#: A version-2 receipt (before privacy units: record-level), with the signature pinned then.
CANONICAL_V2 = (
    '{"accountant":"rdp","delta":1e-05,"epsilon":0.5,"epsilon_ceiling":3.0,'
    '"issued_at":"2026-01-01T00:00:00+00:00","lifetime_epsilon":0.5,'
    '"lifetime_epsilon_ceiling":10.0,"max_grad_norm":1.0,"noise_multiplier":1.1,'
    '"num_examples":100,"policy_sha256":"' + "a" * 64 + '","round":1,"run_id":"r",'
    '"sample_rate":0.25,"site":"cleveland","site_policy_sha256":"","steps":4,'
    '"task_sha256":"' + "c" * 64 + '","update_sha256":"' + "b" * 64 + '","version":2}'
)
SIGNATURE_V2 = (
    "66e938ceb99b0492af706018360b222bb6dc9bb5a216ecb0dcaf8ac744da6e6b"
    "7f43ea039faff1b44e957bceecff2b2f1cdd0fef95e1e019ef363ed662e26f06"
)
#: A version-1 receipt as stores written before tasks hold it, with the signature pinned then.
CANONICAL_V1 = (
    '{"accountant":"rdp","delta":1e-05,"epsilon":0.5,"epsilon_ceiling":3.0,'
    '"issued_at":"2026-01-01T00:00:00+00:00","lifetime_epsilon":0.5,'
    '"lifetime_epsilon_ceiling":10.0,"max_grad_norm":1.0,"noise_multiplier":1.1,'
    '"num_examples":100,"policy_sha256":"' + "a" * 64 + '","round":1,"run_id":"r",'
    '"sample_rate":0.25,"site":"cleveland","site_policy_sha256":"","steps":4,'
    '"update_sha256":"' + "b" * 64 + '","version":1}'
)
SIGNATURE_V1 = (
    "4df09757138f5462e70be4c88d1ce6253c56842c9c863785a6d65fb30cd9df76"
    "41eeadeb958aa8bc951ec6ac6588b29d3acc51b12945496c25418f7af07e5509"
)
FINGERPRINT = "56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c"


def test_known_answer_encoding_signature_and_fingerprint() -> None:
    signed = RECEIPT.sign(KEY)
    assert signed.data.decode() == CANONICAL
    assert signed.signature.hex() == SIGNATURE
    assert fingerprint(KEY.public_key()) == FINGERPRINT
    signed.verify(KEY.public_key())


def test_version_1_receipts_of_old_stores_still_parse_and_verify() -> None:
    old = SignedReceipt.from_parts(CANONICAL_V1, SIGNATURE_V1)
    old.verify(KEY.public_key())
    assert old.receipt.version == 1 and old.receipt.task_sha256 == ""
    assert old.receipt.canonical_bytes().decode() == CANONICAL_V1
    assert replace(RECEIPT, version=1, task_sha256="").sign(KEY).signature.hex() == SIGNATURE_V1
    with pytest.raises(MalformedReceipt, match="fields differ"):  # v1 never names a task
        Receipt.from_canonical(CANONICAL_V1.replace('"update', '"task_sha256":"x","update'))


def test_version_2_receipts_still_parse_and_verify_as_record_level() -> None:
    old = SignedReceipt.from_parts(CANONICAL_V2, SIGNATURE_V2)
    old.verify(KEY.public_key())
    assert old.receipt.version == 2 and old.receipt.privacy_unit == "record"
    assert old.receipt.mechanism.unit == "record"
    assert old.receipt.canonical_bytes().decode() == CANONICAL_V2
    with pytest.raises(MalformedReceipt, match="fields differ"):  # v2 never names a unit
        Receipt.from_canonical(CANONICAL_V2.replace('"round"', '"privacy_unit":"record","round"'))
    with pytest.raises(ValueError, match="record-level"):
        replace(RECEIPT, version=2, privacy_unit="patient")


def test_a_version_3_receipt_states_its_unit_and_its_mechanism_carries_it() -> None:
    patient = replace(RECEIPT, privacy_unit="patient")
    back = Receipt.from_canonical(patient.canonical_bytes())
    assert back.privacy_unit == "patient" and back.mechanism.unit == "patient"
    with pytest.raises(MalformedReceipt, match="privacy_unit"):
        Receipt.from_canonical(CANONICAL.replace('"privacy_unit":"record"',
                                                 '"privacy_unit":"visit"'))
    with pytest.raises(MalformedReceipt, match="fields differ"):
        Receipt.from_canonical(CANONICAL.replace('"privacy_unit":"record",', ""))


def test_a_version_3_receipt_names_its_task() -> None:
    assert RECEIPT_VERSION == 3
    with pytest.raises(ValueError, match="names its task"):
        replace(RECEIPT, task_sha256="")
    with pytest.raises(MalformedReceipt, match="names its task"):
        Receipt.from_canonical(CANONICAL.replace("c" * 64, ""))
    with pytest.raises(MalformedReceipt, match="fields differ"):
        Receipt.from_canonical(CANONICAL.replace('"task_sha256":"' + "c" * 64 + '",', ""))


def test_integers_given_for_floats_are_stored_as_floats() -> None:
    assert isinstance(RECEIPT.max_grad_norm, float) and isinstance(RECEIPT.epsilon_ceiling, float)
    assert RECEIPT.mechanism == Mechanism(noise_multiplier=1.1, sample_rate=0.25, steps=4,
                                          max_grad_norm=1.0, accountant="rdp")


def test_wire_round_trip_verifies() -> None:
    entries = RECEIPT.sign(KEY).to_wire()
    assert set(entries) == {wire.RECEIPT, wire.RECEIPT_SIGNATURE}
    assert entries[wire.RECEIPT_SIGNATURE] == SIGNATURE
    back = SignedReceipt.from_wire(entries)
    assert back.receipt == RECEIPT
    back.verify(KEY.public_key())


def test_tampered_receipt_byte_is_detected() -> None:
    signed = RECEIPT.sign(KEY)
    forged = SignedReceipt.from_parts(signed.data.replace(b'"epsilon":0.5', b'"epsilon":0.4'),
                                      signed.signature.hex())
    assert forged.receipt.epsilon == 0.4
    with pytest.raises(InvalidReceiptSignature, match=r"cleveland.*round 1"):
        forged.verify(KEY.public_key())


def test_tampered_signature_is_detected() -> None:
    signed = RECEIPT.sign(KEY)
    bad = bytearray(signed.signature)
    bad[0] ^= 1
    with pytest.raises(InvalidReceiptSignature):
        replace(signed, signature=bytes(bad)).verify(KEY.public_key())


def test_another_sites_key_does_not_verify() -> None:
    signed = RECEIPT.sign(KEY)
    other = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    with pytest.raises(InvalidReceiptSignature, match=fingerprint(other)[:16]):
        signed.verify(other)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(CANONICAL) - 1), st.integers(1, 255))
def test_no_single_byte_change_is_accepted(position: int, flip: int) -> None:
    signed = RECEIPT.sign(KEY)
    data = bytearray(signed.data)
    data[position] ^= flip
    with pytest.raises(ReceiptError):
        SignedReceipt.from_parts(bytes(data), signed.signature.hex()).verify(KEY.public_key())


@pytest.mark.parametrize(("data", "match"), [
    (CANONICAL.replace(",", ", "), "canonical"),
    (CANONICAL.replace('"version":3', '"extra":1'), "unsupported receipt version None"),
    (CANONICAL.replace('"steps":4', '"steps":4,"extra":1'), "fields differ"),
    (CANONICAL.replace('"version":3', '"version":4'), "unsupported receipt version 4"),
    (CANONICAL.replace('"version":3', '"version":true'), "unsupported receipt version"),
    (CANONICAL.replace('"round":1', '"round":true'), "round must be int"),
    (CANONICAL.replace('"round":1', '"round":1.0'), "round must be int"),
    (CANONICAL.replace('"delta":1e-05', '"delta":1'), "delta must be float"),
    (CANONICAL.replace('"delta":1e-05', '"delta":NaN'), "float"),
    (CANONICAL.replace('"site":"cleveland"', '"site":7'), "site must be str"),
    ("[1, 2]", "JSON object"),
    ("{", "not a receipt"),
    (CANONICAL[:-1] + " " * MAX_RECEIPT_BYTES + "}", "longer than"),
])
def test_non_canonical_or_incomplete_receipts_are_malformed(data: str, match: str) -> None:
    with pytest.raises(MalformedReceipt, match=match):
        Receipt.from_canonical(data)


def test_a_receipt_with_an_invalid_mechanism_parses_but_states_no_mechanism() -> None:
    bad = Receipt.from_canonical(CANONICAL.replace('"steps":4', '"steps":0'))
    with pytest.raises(ValueError, match="steps"):
        _ = bad.mechanism


@pytest.mark.parametrize(("metrics", "match"), [
    ({wire.RECEIPT: CANONICAL}, "carries no receipt"),
    ({wire.RECEIPT_SIGNATURE: SIGNATURE}, "carries no receipt"),
    ({wire.RECEIPT: CANONICAL, wire.RECEIPT_SIGNATURE: "zz"}, "not hex"),
    ({wire.RECEIPT: CANONICAL, wire.RECEIPT_SIGNATURE: SIGNATURE[:-2]}, "63 bytes"),
    ({wire.RECEIPT: CANONICAL, wire.RECEIPT_SIGNATURE: 5}, "carries no receipt"),
])
def test_wire_entries_that_are_not_a_receipt(metrics: dict[str, object], match: str) -> None:
    with pytest.raises(MalformedReceipt, match=match):
        SignedReceipt.from_wire(metrics)


def test_canonical_encoding_refuses_non_finite_values() -> None:
    with pytest.raises(ValueError):
        replace(RECEIPT, epsilon=float("inf")).canonical_bytes()


def test_update_hash_is_sha256_of_float32_bytes() -> None:
    weights = [np.arange(6, dtype=np.float64).reshape(2, 3), np.array([0.5])]
    expected = hashlib.sha256(
        np.arange(6, dtype=np.float32).tobytes() + np.array([0.5], np.float32).tobytes()
    ).hexdigest()
    assert update_sha256(weights) == expected
    assert expected == "a836b22df93b1492f75ac34a054183378139cbe2700deb64bdb8a3947aefe074"
    # C order, whatever the layout in memory
    assert update_sha256([np.asfortranarray(weights[0]), weights[1]]) == expected


def test_canonical_json_is_plain_json_of_the_fields() -> None:
    assert json.loads(CANONICAL)["site"] == "cleveland"
    assert Receipt.from_canonical(CANONICAL.encode()) == RECEIPT

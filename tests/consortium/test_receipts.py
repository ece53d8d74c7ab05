"""Privacy receipts: canonical encoding, known-answer signature, tampering, key handling."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from consortium import wire
from consortium.keys import (
    KeyFileError,
    fingerprint,
    key_from_seed,
    load_or_create_key,
    load_private_key,
    public_path,
)
from consortium.receipt import (
    InvalidReceiptSignature,
    KeyRing,
    MalformedReceipt,
    Receipt,
    SignedReceipt,
    UnknownSiteKey,
    update_sha256,
)

SEED = bytes(range(32))
RECEIPT = Receipt(
    run_id="r", round=1, site="cleveland", policy_sha256="a" * 64, site_policy_sha256="",
    noise_multiplier=1.1, sample_rate=0.25, steps=4, max_grad_norm=1, accountant="rdp",
    delta=1e-5, epsilon=0.5, lifetime_epsilon=0.5, epsilon_ceiling=3, lifetime_epsilon_ceiling=10,
    num_examples=100, update_sha256="b" * 64, issued_at="2026-01-01T00:00:00+00:00",
)
CANONICAL = (
    '{"accountant":"rdp","delta":1e-05,"epsilon":0.5,"epsilon_ceiling":3.0,'
    '"issued_at":"2026-01-01T00:00:00+00:00","lifetime_epsilon":0.5,'
    '"lifetime_epsilon_ceiling":10.0,"max_grad_norm":1.0,"noise_multiplier":1.1,'
    '"num_examples":100,"policy_sha256":"' + "a" * 64 + '","round":1,"run_id":"r",'
    '"sample_rate":0.25,"site":"cleveland","site_policy_sha256":"","steps":4,'
    '"update_sha256":"' + "b" * 64 + '","version":1}'
)
SIGNATURE = (
    "4df09757138f5462e70be4c88d1ce6253c56842c9c863785a6d65fb30cd9df76"
    "41eeadeb958aa8bc951ec6ac6588b29d3acc51b12945496c25418f7af07e5509"
)
FINGERPRINT = "56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c"


def test_known_answer_encoding_signature_and_fingerprint() -> None:
    key = key_from_seed(SEED)
    signed = RECEIPT.sign(key)
    assert signed.data.decode() == CANONICAL
    assert signed.signature.hex() == SIGNATURE
    assert fingerprint(key.public_key()) == FINGERPRINT
    signed.verify(key.public_key())


def test_wire_round_trip_verifies() -> None:
    key = key_from_seed(SEED)
    entries = RECEIPT.sign(key).to_wire()
    assert set(entries) == {wire.RECEIPT, wire.RECEIPT_SIGNATURE}
    back = SignedReceipt.from_wire(entries)
    assert back.receipt == RECEIPT
    KeyRing({"cleveland": key.public_key()}).verify(back)


def test_tampered_receipt_byte_is_detected() -> None:
    key = key_from_seed(SEED)
    signed = RECEIPT.sign(key)
    forged = SignedReceipt.from_parts(signed.data.replace(b'"epsilon":0.5', b'"epsilon":0.4'),
                                      signed.signature.hex())
    with pytest.raises(InvalidReceiptSignature, match=r"cleveland.*round 1"):
        forged.verify(key.public_key())


def test_tampered_signature_is_detected() -> None:
    key = key_from_seed(SEED)
    signed = RECEIPT.sign(key)
    bad = bytearray(signed.signature)
    bad[0] ^= 1
    with pytest.raises(InvalidReceiptSignature):
        replace(signed, signature=bytes(bad)).verify(key.public_key())


def test_non_canonical_or_incomplete_receipts_are_malformed() -> None:
    with pytest.raises(MalformedReceipt, match="canonical"):
        Receipt.from_canonical(CANONICAL.replace(",", ", "))
    with pytest.raises(MalformedReceipt, match="fields differ"):
        Receipt.from_canonical(CANONICAL.replace('"version":1', '"extra":1'))
    with pytest.raises(MalformedReceipt):
        SignedReceipt.from_wire({wire.RECEIPT: CANONICAL})


def test_unknown_site_and_wrong_key_are_rejected() -> None:
    signed = RECEIPT.sign(key_from_seed(SEED))
    with pytest.raises(UnknownSiteKey, match="cleveland"):
        KeyRing({"hungary": key_from_seed(SEED).public_key()}).verify(signed)
    other = key_from_seed(bytes(32)).public_key()
    with pytest.raises(InvalidReceiptSignature):
        KeyRing({"cleveland": other}).verify(signed)


def test_update_hash_is_sha256_of_float32_bytes() -> None:
    weights = [np.arange(6, dtype=np.float64).reshape(2, 3), np.array([0.5])]
    expected = hashlib.sha256(
        np.arange(6, dtype=np.float32).tobytes() + np.array([0.5], np.float32).tobytes()
    ).hexdigest()
    assert update_sha256(weights) == expected
    assert expected == "a836b22df93b1492f75ac34a054183378139cbe2700deb64bdb8a3947aefe074"


def test_private_key_file_is_0600_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k" / "receipt-key.pem"
    key = load_or_create_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert public_path(path).is_file()
    assert fingerprint(load_or_create_key(path).public_key()) == fingerprint(key.public_key())
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(path)

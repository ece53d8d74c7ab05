"""Signed privacy receipts: what a site attests it spent in one round.

After each round it trained, a site signs a :class:`Receipt` with its Ed25519 key. The receipt
is a frozen value object with one canonical JSON encoding (sorted keys, compact separators,
ASCII, no NaN); the signature covers exactly those bytes. It travels to the consortium in the
round's plaintext fit metrics: the canonical JSON under :data:`wire.RECEIPT`, the hex signature
under :data:`wire.RECEIPT_SIGNATURE`.

Version 2 adds ``task_sha256``, the hash of the task the round trained (``policies/tasks``).
Version-1 receipts (written before tasks existed; no ``task_sha256`` field) still parse and
verify, with ``task_sha256`` empty: their canonical bytes are those of version 1.

Version 3 adds ``privacy_unit``: what the receipt's ε protects, ``record`` or ``patient`` (then
``sample_rate`` is the rate at which patients are sampled, and ε is patient-level). Receipts of
versions 1 and 2 (no such field) are record-level and keep their canonical bytes.

Verification raises (small exception classes, as ``cryptography`` does); it never returns False.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies import canonical
from site_node.protocol import wire
from site_node.protocol.errors import InvalidReceiptSignature, MalformedReceipt
from site_node.protocol.keys import fingerprint
from site_node.protocol.mechanism import UNITS, Mechanism

RECEIPT_VERSION = 3
#: Versions this code reads; the fields a version lacks are left out of its canonical bytes.
SUPPORTED_VERSIONS = (1, 2, 3)
_ADDED_IN = {2: frozenset({"task_sha256"}), 3: frozenset({"privacy_unit"})}


def _absent(version: int) -> frozenset[str]:
    """The fields a receipt of ``version`` does not hold."""
    return frozenset().union(*(names for v, names in _ADDED_IN.items() if v > version))
MAX_RECEIPT_BYTES = 8192


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """One site's attestation for one round.

    ``epsilon`` is the site's cumulative ε in this run after the round and ``lifetime_epsilon``
    over every run in its ledger, both at ``delta`` (the site's own δ); the mechanism fields are
    this round's, so ``epsilon`` can be recomputed from the run's receipts. ``update_sha256``
    is the SHA-256 of the site's unmasked update (its weights as concatenated float32 bytes);
    ``task_sha256`` the hash of the task trained (empty in a version-1 receipt);
    ``privacy_unit`` what ε protects (``record`` in a receipt before version 3).
    """

    version: int = RECEIPT_VERSION
    run_id: str
    round: int
    site: str
    policy_sha256: str
    site_policy_sha256: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str
    delta: float
    epsilon: float
    lifetime_epsilon: float
    epsilon_ceiling: float
    lifetime_epsilon_ceiling: float
    num_examples: int
    update_sha256: str
    issued_at: str
    task_sha256: str = ""
    privacy_unit: str = "record"

    def __post_init__(self) -> None:
        if self.version >= 2 and not self.task_sha256:
            raise ValueError(f"a version-{self.version} receipt names its task (task_sha256 "
                             "is empty)")
        if self.privacy_unit not in UNITS:
            raise ValueError(f"privacy_unit must be one of {UNITS}, got {self.privacy_unit!r}")
        if self.version < 3 and self.privacy_unit != "record":
            raise ValueError(f"a version-{self.version} receipt is record-level")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))

    @property
    def mechanism(self) -> Mechanism:
        """The round's DP mechanism (raises ``ValueError`` if the receipt states an invalid one)."""
        return Mechanism(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                         steps=self.steps, max_grad_norm=self.max_grad_norm,
                         accountant=self.accountant, unit=self.privacy_unit)

    def canonical_bytes(self) -> bytes:
        """The exact bytes a signature covers."""
        data = asdict(self)
        for name in _absent(self.version):
            data.pop(name)
        return canonical.to_bytes(data)

    @classmethod
    def from_canonical(cls, data: bytes | str) -> Receipt:
        """Parse receipt bytes; they must be exactly the canonical encoding.

        Raises
        ------
        MalformedReceipt
            On bad JSON, missing or extra fields, wrong types, or a non-canonical encoding.
        """
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if len(raw) > MAX_RECEIPT_BYTES:
            raise MalformedReceipt(f"not a receipt: longer than {MAX_RECEIPT_BYTES} bytes")
        try:
            obj = json.loads(raw)
            receipt = cls(**_typed(obj))
            canonical = receipt.canonical_bytes()
        except (ValueError, TypeError, RecursionError) as exc:
            raise MalformedReceipt(f"not a receipt: {exc}") from None
        if canonical != raw:
            raise MalformedReceipt("receipt bytes are not in canonical form")
        return receipt

    def sign(self, key: Ed25519PrivateKey) -> SignedReceipt:
        """Sign the canonical bytes."""
        data = self.canonical_bytes()
        return SignedReceipt(receipt=self, data=data, signature=key.sign(data))


def _typed(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise TypeError("a receipt is a JSON object")
    version = obj.get("version")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        raise TypeError(f"unsupported receipt version {version!r} (this code reads "
                        f"{', '.join(map(str, SUPPORTED_VERSIONS))})")
    names = {f.name: f.type for f in fields(Receipt) if f.name not in _absent(version)}
    if set(obj) != set(names):
        raise TypeError(f"fields differ: {sorted(set(obj) ^ set(names))}")
    for name, kind in names.items():
        value = obj[name]
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "str": isinstance(value, str),
              "float": isinstance(value, float)}[str(kind)]
        if not ok:
            raise TypeError(f"{name} must be {kind}, got {value!r}")
    return obj


@dataclass(frozen=True)
class SignedReceipt:
    """A receipt, the exact bytes signed, and the Ed25519 signature."""

    receipt: Receipt
    data: bytes
    signature: bytes

    def verify(self, key: Ed25519PublicKey) -> None:
        """Raise :class:`InvalidReceiptSignature` unless ``key`` signed these bytes."""
        try:
            key.verify(self.signature, self.data)
        except InvalidSignature:
            raise InvalidReceiptSignature(
                f"receipt of site {self.receipt.site!r} run {self.receipt.run_id} round "
                f"{self.receipt.round}: signature does not verify under key "
                f"{fingerprint(key)[:16]}…"
            ) from None

    def to_wire(self) -> dict[str, str]:
        """The fit-metrics entries that carry this receipt."""
        return {wire.RECEIPT: self.data.decode("ascii"),
                wire.RECEIPT_SIGNATURE: self.signature.hex()}

    @classmethod
    def from_wire(cls, metrics: Mapping[str, object]) -> SignedReceipt:
        """Read a receipt from fit metrics; raises :class:`MalformedReceipt`."""
        data, sig = metrics.get(wire.RECEIPT), metrics.get(wire.RECEIPT_SIGNATURE)
        if not isinstance(data, str | bytes) or not isinstance(sig, str):
            raise MalformedReceipt("the reply carries no receipt")
        return cls.from_parts(data, sig)

    @classmethod
    def from_parts(cls, data: str | bytes, signature_hex: str) -> SignedReceipt:
        """Rebuild from stored canonical JSON and hex signature."""
        raw = data.encode() if isinstance(data, str) else bytes(data)
        try:
            sig = bytes.fromhex(signature_hex)
        except ValueError:
            raise MalformedReceipt("receipt signature is not hex") from None
        if len(sig) != 64:
            raise MalformedReceipt(f"receipt signature has {len(sig)} bytes, not 64")
        return cls(receipt=Receipt.from_canonical(raw), data=raw, signature=sig)


def update_sha256(weights: Sequence[np.ndarray]) -> str:
    """SHA-256 of an update: every array as C-order float32 bytes, concatenated in order."""
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return digest.hexdigest()

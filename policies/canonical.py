"""Canonical JSON: the one encoding every hashed or signed document of the platform uses.

Policies, site policies, tasks and effective policies are hashed over it; privacy receipts are
signed over it; each audit-log entry is hashed (and its payload stored) in it. The encoding is
``json.dumps`` with sorted keys, compact separators (``,`` and ``:``), ASCII only (other
characters as ``\\uXXXX`` escapes) and no NaN or infinity, which JSON does not have. Stores,
receipts and signatures written before this module existed hold exactly these bytes, so the
encoding must never change.

This module imports only the standard library and :mod:`policies.errors`, so that the protocol
both sides speak (``site_node.protocol``) may use it.
"""

from __future__ import annotations

import hashlib
import json

from policies.errors import NotCanonicalJSON


def to_json(value: object) -> str:
    """The canonical JSON text of a JSON value (mappings with string keys, lists, strings,
    numbers, booleans, ``None``).

    Raises
    ------
    NotCanonicalJSON
        If the value holds a NaN or infinite float.
    TypeError
        If it holds something JSON cannot encode (a programming error).
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False)
    except ValueError as exc:
        raise NotCanonicalJSON(f"no canonical JSON for this value: {exc}") from None


def to_bytes(value: object) -> bytes:
    """:func:`to_json` as ASCII bytes (what a signature or a hash covers)."""
    return to_json(value).encode("ascii")


def sha256(value: object) -> str:
    """Hex SHA-256 of the value's canonical bytes."""
    return hashlib.sha256(to_bytes(value)).hexdigest()

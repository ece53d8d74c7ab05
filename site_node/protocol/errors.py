"""Errors of the protocol both sides speak: malformed or unverifiable data, bad key files."""

from __future__ import annotations


class ProtocolError(Exception):
    """Data exchanged between a site and the consortium cannot be trusted or parsed."""


class KeyFileError(ProtocolError, ValueError):
    """A key file is missing, unreadable, of the wrong kind, or too widely readable."""


class ReceiptError(ProtocolError):
    """A receipt cannot be trusted."""


class MalformedReceipt(ReceiptError, ValueError):
    """A receipt is not valid canonical JSON of the receipt fields."""


class InvalidReceiptSignature(ReceiptError):
    """A receipt's signature does not verify under the site's enrolled key."""


class InstructionError(ProtocolError, ValueError):
    """An instruction from the consortium lacks a field or has a bad value."""

"""An audit entry's payload, read for verification: unreadable JSON is a broken chain."""

from __future__ import annotations

from typing import Any

from consortium.audit.log import AuditEntry
from consortium.errors import ChainBroken


def payload(e: AuditEntry) -> dict[str, Any]:
    """The entry's payload; raises :class:`ChainBroken` if it is not valid JSON."""
    try:
        return e.payload
    except ValueError as exc:
        raise ChainBroken(f"audit_log entry seq={e.seq} ({e.kind}): payload is not valid "
                          f"JSON: {exc}") from None

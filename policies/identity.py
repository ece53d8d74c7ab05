"""The one rule for site ids, used by every policy, command and file path.

A site id names a hospital in policies, receipts, the audit log and on disk (demo state
directories are named after it), so it must be safe as a path component and unambiguous:
lower-case ASCII letters, digits, ``_`` and ``-``, starting with a letter or digit, at most 63
characters.
"""

from __future__ import annotations

import re

from policies.errors import InvalidSiteId

SITE_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SITE_ID_RULE = (
    "lower-case letters, digits, '_' and '-', starting with a letter or digit, 1-63 chars")


def check_site_id(value: object, *, what: str = "site id") -> str:
    """Return ``value`` if it is a valid site id.

    Raises
    ------
    InvalidSiteId
        Naming ``what``, the value and the rule.
    """
    if not isinstance(value, str) or SITE_ID_PATTERN.fullmatch(value) is None:
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        raise InvalidSiteId(f"{what}: invalid site id {shown!r} ({SITE_ID_RULE})")
    return value

"""The policies package's errors: one root, each naming the file and the field.

Every error is a :class:`ValueError`: a policy or task file holds a wrong value.
"""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy file is missing, unreadable or invalid; the message names file and field."""


class LooseningError(PolicyError):
    """A site policy tries to loosen the consortium policy."""


class InvalidSiteId(PolicyError):
    """A site id breaks the one site id rule (:mod:`policies.identity`)."""


class NotCanonicalJSON(PolicyError):
    """A value has no canonical JSON (a NaN or infinite float): :mod:`policies.canonical`."""

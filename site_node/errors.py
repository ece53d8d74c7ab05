"""The site node's errors: one root, caught by the ``site-node`` command line.

A :class:`ValueError` subclass means a value is wrong (a file, an option, an instruction); the
message names the field, file or site.
"""

from __future__ import annotations


class SiteNodeError(Exception):
    """Something the site node cannot do; the message says what and why."""


class ConfigError(SiteNodeError, ValueError):
    """The node's configuration or an instruction from the consortium is missing or invalid."""


class DataError(SiteNodeError, ValueError):
    """A site's data file is missing, malformed, or does not fit the task."""


class Refusal(SiteNodeError):
    """The site refuses a round before training: nothing was trained, spent or sent."""


class FinalRefusal(Refusal):
    """An admission refusal: final for the run (the site refuses every later round of it)."""


class LedgerError(SiteNodeError):
    """The privacy ledger cannot be opened or written, or an event was recorded twice."""


class SiteHomeError(SiteNodeError):
    """A site home that is missing, incomplete or already exists."""


class NodeStartError(SiteNodeError):
    """The SuperNode could not start or was refused; the message says why."""


class PreflightError(NodeStartError):
    """The SuperLink cannot be reached securely; the message names the problem."""


class FlowerVersionError(SiteNodeError):
    """The installed Flower is not the version this node's Flower patches were written for."""


class TrainingError(SiteNodeError):
    """Local training cannot run (no Opacus per-sample gradient mode works for the model)."""

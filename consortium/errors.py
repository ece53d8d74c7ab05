"""The consortium server's errors: one root, caught by the ``consortium`` command line.

A :class:`ValueError` subclass means a value is wrong (an option, a file, a record); the message
names the field, file or site. Audit verification failures form their own branch
(:class:`AuditVerificationError`): a check that cannot verify raises, it never returns False.
"""

from __future__ import annotations


class ConsortiumError(Exception):
    """Something the consortium cannot do; the message says what and why."""


class PlanError(ConsortiumError, ValueError):
    """A run setting is invalid; the message names the setting."""


class StoreError(ConsortiumError):
    """The run store is missing, unreadable, locked, too new, or not a run store."""


class HomeError(ConsortiumError):
    """A consortium home that is missing, incomplete or already set up."""


class EnrollmentError(ConsortiumError, ValueError):
    """A site that cannot be enrolled or revoked, with the reason."""


class SuperLinkError(ConsortiumError):
    """The SuperLink cannot be started or reached, or refused a request."""


class DeploymentError(ConsortiumError):
    """A run could not be submitted to the SuperLink or did not finish."""


class SimulationError(ConsortiumError):
    """A simulated run did not produce an outcome."""


class AuditLogError(ConsortiumError):
    """The audit log cannot be opened or written."""


class FlowerVersionError(ConsortiumError):
    """The installed Flower is not the version the server's Flower patches were written for."""


class AuditVerificationError(ConsortiumError):
    """The audit trail does not verify; the message names the first broken record."""


class ChainBroken(AuditVerificationError):
    """An entry is missing, reordered, altered or unreadable."""


class SignatureInvalid(AuditVerificationError):
    """An entry or receipt signature does not verify."""


class ReceiptInvalid(AuditVerificationError):
    """A receipt is malformed, unknown, or disagrees with the log or the run."""


class EpsilonMismatch(AuditVerificationError):
    """A claimed ε is not reproduced by the independent accountant."""


class CeilingPassed(AuditVerificationError):
    """A site's ε passed a ceiling."""


class LogTruncated(AuditVerificationError):
    """The audit log does not reach its signed head (entries were cut off its end), or a
    finished run lacks its signed run-stop."""


class HeadMissing(AuditVerificationError):
    """No signed head to check the log's end against: truncation cannot be excluded."""


class RowNotCovered(AuditVerificationError):
    """A run store row (runs, rounds, site_rounds, receipts, checkpoints) is not covered by,
    or differs from, what the signed log records; the message names table, run, round, site
    and column."""


class SecurityEventsFound(AuditVerificationError):
    """The trail is intact but records security events (a rejected reply or receipt, a site
    that trained without a valid receipt): the run's privacy claims are incomplete.

    ``result`` is the otherwise complete verification result.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class UnknownSiteKey(ConsortiumError):
    """A receipt or reply names a site, key or node that has no enrolment valid for it."""


class RunTaken(StoreError):
    """Another process claimed the run between our reading it and our claiming it."""


class RunInterrupted(ConsortiumError):
    """The coordinator stopped the run (Ctrl-C or SIGTERM)."""

"""The audit verdict on a page: verified, or FAILED with the exact reason and every security
event, as ``consortium audit verify --run RUN`` gives it.

The verification is cached per store, run and :func:`dashboard.verdict.store_stamp`: a page
rerun does not verify again, and any write to the store (a new round, a security event, a
tampered row) does.
"""

from __future__ import annotations

import logging

import streamlit as st

from consortium.errors import StoreError
from dashboard.verdict import Verdict, store_stamp, verify_run

log = logging.getLogger(__name__)

VERIFIED_TITLE = "Audit trail verified"
FAILED_TITLE = "AUDIT VERIFICATION FAILED"
UNVERIFIABLE_TITLE = "AUDIT NOT VERIFIED"


@st.cache_data(show_spinner="Verifying the audit trail…", max_entries=32)
def _cached_verdict(path: str, run_id: str, stamp: tuple[int, ...]) -> Verdict:
    del stamp  # part of the cache key only
    return verify_run(path, run_id=run_id)


def load_verdict(path: str, run_id: str) -> Verdict:
    """The verdict on ``run_id``, verified again whenever the store file changed.

    Raises
    ------
    consortium.errors.StoreError
        If the store cannot be read (never cached: the next rerun tries again).
    """
    return _cached_verdict(path, run_id, store_stamp(path))


def clear() -> None:
    """Forget every cached verdict."""
    _cached_verdict.clear()


def show_verdict(path: str, run_id: str) -> Verdict | None:
    """Draw the verdict on ``run_id``; ``None`` when the store could not be verified at all."""
    command = f"`consortium audit verify --run {run_id}`"
    try:
        verdict = load_verdict(path, run_id)
    except StoreError as exc:
        log.warning("audit verification of run %s in %s could not run: %s", run_id, path, exc)
        st.error(f"**{UNVERIFIABLE_TITLE}**: the verification could not read the store: {exc}. "
                 "Nothing on this page is verified.", icon=":material/gpp_maybe:")
        return None
    if verdict.verified:
        st.success(f"**{VERIFIED_TITLE}** ({command} gives the same): {verdict.entries} log "
                   "entries, chain and consortium signatures intact; "
                   f"{len(verdict.recomputed)} signed receipts of this run, each signed by its "
                   "site's enrolled key, every ε reproduced by an independent accountant within "
                   "1%, no ceiling passed, no security event.", icon=":material/verified:")
        st.caption(f"Checked against the consortium key the log enrolled, fingerprint "
                   f"`{verdict.consortium_fingerprint}`: compare it with the one you obtained "
                   "out of band, or pin it with `consortium audit verify --consortium-key`.")
    elif verdict.security_events:
        st.error(f"**{FAILED_TITLE}: {len(verdict.security_events)} security event(s)** "
                 f"({command} gives the same). The trail is otherwise intact; each event:",
                 icon=":material/gpp_bad:")
        st.code("\n".join(f"audit_log entry {e.seq}: {e.reason}"
                          for e in verdict.security_events), language=None, wrap_lines=True)
    else:
        st.error(f"**{FAILED_TITLE}** ({verdict.error_kind}; {command} gives the same). "
                 "The first broken record:", icon=":material/gpp_bad:")
        st.code(str(verdict.reason), language=None, wrap_lines=True)
    if not verdict.verified:
        st.caption("Until the trail verifies, no figure on this page is vouched for by the "
                   "signed record.")
    return verdict

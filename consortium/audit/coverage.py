"""The run store's rows checked against the signed log: nothing shown is unsigned.

The export and the dashboard read the ``runs``, ``rounds``, ``site_rounds``, ``checkpoints`` and
``receipts`` tables; the log holds what the consortium signed. For one run
:func:`check_run_rows` requires that:

- its ``runs`` row equals its signed run-start (engine, mode, policy, task, sites, planned
  rounds, δ and ε ceiling of the signed policy; seed and SecAgg+ settings where recorded; the
  choice of its training settings, none unless signed), and its ``status`` (and stop reason)
  is what the log's last run-stop or run-resume says (``running`` when there is none): a
  finished run without its signed run-stop lost the end of its log (:class:`LogTruncated`);
- every ``rounds`` row has its signed round entry and every round entry its row, with the same
  figures (:mod:`consortium.audit.figures`), its ``site_rounds`` the same sites and figures, and
  each site's privacy columns those of its verified receipt;
- every checkpoint hashes to its ``sha256``, which is the one signed, and every signed checkpoint
  is there.

:func:`check_orphans` requires a signed run-start for every run id any table names. Each mismatch
raises :class:`RowNotCovered` naming the table, run, round, site and column.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from consortium.audit.figures import CHECKPOINT_SHA256, RECORD, SITES, same, value
from consortium.audit.log import AuditEntry
from consortium.audit.payload import payload
from consortium.audit.trail import ROUND, ROUND_FAILED, RUN_RESUME, RUN_STOP
from consortium.errors import LogTruncated, RowNotCovered, StoreError
from consortium.store.records import RUN_RUNNING, RoundRecord, RunRecord, SiteRoundRecord
from consortium.store.run_store import RunStore
from site_node.protocol.receipt import Receipt

#: The run-start fields a ``runs`` row must equal (those recorded since the start entry had them).
_RUN_FIELDS = ("engine", "mode", "policy_sha256", "policy_json", "task_sha256", "task_json",
               "rounds_planned", "seed", "secagg_json", "example_site_policies",
               "data_fingerprints", "choice_json")
_ALWAYS = ("engine", "mode", "policy_sha256", "policy_json", "rounds_planned",
           "data_fingerprints", "choice_json")
#: The site_rounds columns a site's signed receipt states.
_PRIVACY = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "max_grad_norm",
            "accountant")
_ROUND_FIELDS = tuple(f.name for f in fields(RoundRecord) if f.name != "sites")
_SITE_FIELDS = tuple(f.name for f in fields(SiteRoundRecord) if f.name != "site")
_DATA_TABLES = ("runs", "rounds", "site_rounds", "checkpoints", "receipts")


def _differs(table: str, where: str, column: str, stored: object, signed: object) -> RowNotCovered:
    return RowNotCovered(f"{table} row of {where}: column {column} is {value(stored)!r}, but the "
                         f"signed log says {value(signed)!r}")


def _check_run_row(run: RunRecord, start: AuditEntry, policy: Mapping[str, Any]) -> None:
    signed = payload(start)
    where = f"run {run.run_id}"
    for name in _RUN_FIELDS:
        if (name in signed or name in _ALWAYS) and not same(signed.get(name),
                                                               getattr(run, name)):
            raise _differs("runs", where, name, getattr(run, name), signed.get(name))
    if list(run.sites) != signed.get("sites"):
        raise _differs("runs", where, "sites_json", list(run.sites), signed.get("sites"))
    for name in ("delta", "epsilon_ceiling"):
        if not same(policy.get(name), getattr(run, name)):
            raise _differs("runs", where, name, getattr(run, name), policy.get(name))


def _check_status(run: RunRecord, run_entries: list[AuditEntry]) -> None:
    last = next((e for e in reversed(run_entries) if e.kind in (RUN_STOP, RUN_RESUME)), None)
    signed_status: str
    if last is None or last.kind == RUN_RESUME:
        signed_status, signed_reason = RUN_RUNNING, None
    else:
        p = payload(last)
        signed_status, signed_reason = str(p.get("status")), p.get("reason")
    status = getattr(run.status, "value", run.status)
    if status != RUN_RUNNING and signed_status == RUN_RUNNING:
        raise LogTruncated(f"runs row of run {run.run_id}: status {status!r}, but the log holds "
                           "no signed run-stop for it after its last start or resume: the end "
                           "of the log was cut off, or the status was forged")
    if status != signed_status:
        raise _differs("runs", f"run {run.run_id}", "status", status, signed_status)
    if signed_reason is not None and run.stop_reason != signed_reason:
        raise _differs("runs", f"run {run.run_id}", "stop_reason", run.stop_reason,
                       signed_reason)


def _round_entries(run_id: str, run_entries: list[AuditEntry]) -> dict[int, AuditEntry]:
    out: dict[int, AuditEntry] = {}
    for e in run_entries:
        if e.kind in (ROUND, ROUND_FAILED):
            rnd = payload(e).get("round")
            if not isinstance(rnd, int):
                raise RowNotCovered(f"audit_log entry seq={e.seq} ({e.kind}) of run {run_id} "
                                    "names no round")
            out[rnd] = e
    return out


def _check_site(run_id: str, rnd: int, site: SiteRoundRecord, signed: object,
                receipt: Receipt | None) -> None:
    where = f"run {run_id} round {rnd} site {site.site}"
    if not isinstance(signed, dict):
        raise RowNotCovered(f"site_rounds row of {where}: the signed round names no such site")
    for column in _SITE_FIELDS:
        if not same(signed.get(column), getattr(site, column)):
            raise _differs("site_rounds", where, column, getattr(site, column),
                           signed.get(column))
    if receipt is None:
        if any(getattr(site, c) is not None for c in _PRIVACY):
            raise RowNotCovered(f"site_rounds row of {where}: privacy figures but no verified "
                                "receipt of the site for this round")
        return
    for column in _PRIVACY:
        if not same(getattr(receipt, column), getattr(site, column)):
            raise _differs("site_rounds", where, column, getattr(site, column),
                           getattr(receipt, column))


def _check_round(run_id: str, row: RoundRecord, entry: AuditEntry,
                 receipts: Mapping[tuple[int, str], Receipt]) -> None:
    where = f"run {run_id} round {row.round}"
    p = payload(entry)
    record, sites = p.get(RECORD), p.get(SITES)
    if not isinstance(record, dict) or not isinstance(sites, dict):
        raise RowNotCovered(f"rounds row of {where}: its round entry seq={entry.seq} carries no "
                            "signed figures (written before round figures were signed), so "
                            "the row cannot be verified")
    for column in _ROUND_FIELDS:
        v = getattr(row, column)
        if not same(record.get(column), v):
            raise _differs("rounds", where, column, v, record.get(column))
    names = {s.site for s in row.sites}
    if names != set(sites):
        raise RowNotCovered(f"site_rounds of {where}: sites {sorted(names)}, but the signed "
                            f"round records {sorted(sites)}")
    for site in row.sites:
        _check_site(run_id, row.round, site, sites[site.site], receipts.get((row.round,
                                                                              site.site)))


def _check_checkpoints(store: RunStore, run_id: str, signed: Mapping[int, object]) -> None:
    seen = set()
    for rnd, model, sha in store.checkpoints(run_id):
        where = f"run {run_id} round {rnd}"
        if hashlib.sha256(model).hexdigest() != sha:
            raise RowNotCovered(f"checkpoints row of {where}: column model does not hash to its "
                                f"sha256 {sha[:16]}… (the model was swapped)")
        if rnd not in signed or signed[rnd] != sha:
            raise _differs("checkpoints", where, "sha256", sha, signed.get(rnd))
        seen.add(rnd)
    missing = sorted(r for r, sha in signed.items() if sha is not None and r not in seen)
    if missing:
        raise RowNotCovered(f"checkpoints of run {run_id}: the signed rounds {missing} have a "
                            "checkpoint, but the table holds none for them")


def check_run_rows(store: RunStore, start: AuditEntry, policy: Mapping[str, Any],
                   run_entries: list[AuditEntry], receipts: list[Receipt]) -> None:
    """Check every row of one run against its signed entries (raises at the first mismatch)."""
    run_id = str(start.run_id)
    try:
        run = store.get_run(run_id)
        rows = store.rounds(run_id)
    except StoreError as exc:
        raise RowNotCovered(f"runs/rounds rows of run {run_id}: {exc}") from None
    _check_run_row(run, start, policy)
    _check_status(run, run_entries)
    entries = _round_entries(run_id, run_entries)
    by_key = {(r.round, r.site): r for r in receipts}
    for row in rows:
        if row.round not in entries:
            raise RowNotCovered(f"rounds row of run {run_id} round {row.round}: no signed round "
                                "entry covers it")
        _check_round(run_id, row, entries[row.round], by_key)
    unrecorded = sorted(set(entries) - {r.round for r in rows})
    if unrecorded:
        raise RowNotCovered(f"rounds of run {run_id}: the log signs round(s) {unrecorded}, but "
                            "the table holds no row for them (deleted)")
    try:
        _check_checkpoints(store, run_id, {rnd: payload(e).get(CHECKPOINT_SHA256)
                                           for rnd, e in entries.items()})
    except StoreError as exc:
        raise RowNotCovered(f"checkpoints rows of run {run_id}: {exc}") from None


def check_orphans(store: RunStore, started: set[str]) -> None:
    """Every run id a data table names has a signed run-start, and every signed run a row."""
    for table in _DATA_TABLES:
        rows = store.db.query(f"SELECT DISTINCT run_id FROM {table}")
        orphans = sorted(str(r["run_id"]) for r in rows if r["run_id"] not in started)
        if orphans:
            raise RowNotCovered(f"{table} rows of run(s) {', '.join(orphans)}: no signed "
                                "run-start covers them")
    listed = {str(r["run_id"]) for r in store.db.query("SELECT run_id FROM runs")}
    missing = sorted(started - listed)
    if missing:
        raise RowNotCovered(f"runs: the log signs run(s) {', '.join(missing)}, but the table "
                            "holds no row for them (deleted)")


"""The local demonstration's server side: it provisions and enrols the sites' keys itself.

This is the only path on which the consortium creates or enrols a site's key, and it is only
taken when a run is explicitly in demonstration mode (``consortium run``, or ``flwr run`` with
``demo = true``). Each enrolment, and the run itself, is marked ``local-demo`` in the signed
audit log and in the auditor's report: in this mode the receipts prove only what one machine
playing every hospital attests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from consortium.audit import registry
from consortium.audit.log import AuditLog
from consortium.audit.registry import KeyRegistry
from consortium.errors import PlanError
from consortium.home import open_home
from consortium.run.data_fingerprint import check_other_runs, check_unchanged, data_fingerprints
from consortium.run.plan import RunPlan
from consortium.store.records import MODE_DEMO
from consortium.store.run_store import RunStore
from site_node.data import DataRefused, load_site_data
from site_node.demo import demo_settings, provision
from site_node.device import AUTO
from site_node.home import HOME_ENV as SITE_HOME_ENV
from site_node.home import SiteHome, default_site_home, demo_site_home
from site_node.protocol.errors import KeyFileError
from site_node.protocol.keys import fingerprint, load_public_key_file
from site_node.settings import NodeSettings

log = logging.getLogger(__name__)


def enrol_demo_sites(audit_log: AuditLog, sites: Sequence[str], run_id: str) -> None:
    """Provision every demonstration site's home (keys included) and enrol its receipt key."""
    for site in sites:
        home = provision(site)
        registry.enrol(audit_log, site, load_public_key_file(home.receipt_pub), mode=MODE_DEMO,
                       run_id=run_id)
        log.info("local demonstration: enrolled the receipt key of site %s (%s)", site,
                 home.root)


def check_demo_keys(audit_log: AuditLog, sites: Sequence[str], run_id: str) -> None:
    """Before a demonstration run is resumed: every site's receipt key in the current site home
    must be the key enrolled for it. Nothing is provisioned or enrolled (a resume with another
    site home would otherwise rotate every site's key and train under other ledgers).

    Raises
    ------
    PlanError
        Naming the site, its current home and both keys, if a site's key is missing or is not
        the enrolled one.
    """
    keys = KeyRegistry.from_entries(audit_log.entries())
    for site in sites:
        home = SiteHome(demo_site_home(site), site)
        enrolled = keys.active(site)
        try:
            mine: str | None = fingerprint(load_public_key_file(home.receipt_pub))
        except KeyFileError:
            mine = None
        if enrolled is not None and mine == enrolled.fingerprint:
            continue
        have = "has no receipt key" if mine is None else f"holds receipt key {mine[:16]}…"
        want = ("no key is enrolled for it" if enrolled is None else
                f"the key enrolled for it is {enrolled.fingerprint[:16]}…")
        raise PlanError(
            f"run {run_id}: site {site}'s home {home.root} (under the site homes "
            f"{default_site_home()}) {have}, but {want}: resume with the site homes the run "
            f"started with (${SITE_HOME_ENV}); a resume never provisions or rotates a site's "
            "key; nothing was trained")


def check_store(plan: RunPlan) -> None:
    """Open the run store and its audit log as the run will, before anything is trained.

    Raises
    ------
    StoreError
        If the store is unreadable or was written by a newer version.
    AuditLogError
        If the store's audit log is signed by another consortium key than this home's.
    """
    with RunStore(plan.store_path) as store:
        AuditLog(store.db, key=open_home().signing_key())


def demo_sites(plan: RunPlan, data: Mapping[str, Path], *, device: str = AUTO
               ) -> list[NodeSettings]:
    """The node settings of every member site, each with its data, checked against the task.

    Raises
    ------
    PlanError
        If a member site has no data, its data do not fit the task (with the whole report), or
        it has too few training rows for the policy's sampling rate; nothing has run yet.
    """
    q = float(plan.loaded.policy.dp.sample_rate)
    sites = []
    for site in plan.loaded.policy.sites:
        if site not in data:
            raise PlanError(f"member site {site} has no data (give --data {site}=PATH)")
        settings = demo_settings(site, data_path=data[site], device=device,
                                 example_policy=plan.example_site_policies)
        try:
            loaded = load_site_data(plan.task, data[site])
        except DataRefused as exc:
            lines = "\n  ".join(exc.report.lines())
            raise PlanError(f"site {site}: its data ({data[site]}) do not fit task "
                            f"{plan.task.name}; nothing was trained:\n  {lines}") from None
        if q * loaded.num_train < 1:
            raise PlanError(f"site {site}: {loaded.num_train} training example(s) at sample rate "
                            f"{q:g} give an expected batch of {q * loaded.num_train:.2f} < 1 (too "
                            "few rows for the sampling rate); nothing was trained")
        sites.append(settings)
    return sites


def prepare_sites(plan: RunPlan, data: Mapping[str, Path], *, resume: bool = False,
                  device: str = AUTO) -> tuple[RunPlan, list[NodeSettings]]:
    """Before anything runs, the sites of a local run and its plan with their data fingerprints.

    Every member's data is checked against the task and fingerprinted: no two sites may have
    the same data, nor data an earlier run of the store trained as another site's. A new run's
    plan gets the fingerprints; a resumed run's data must be the data it recorded, and on resume
    of a demonstration each site's key must be the one enrolled. Then the store and its audit
    log are checked (:func:`check_store`).

    Raises
    ------
    PlanError
        If a site's data do not fit, are another site's, or changed; or a site's key is not the
        enrolled one.
    """
    sites = demo_sites(plan, data, device=device)
    prints = data_fingerprints({s: data[s] for s in plan.loaded.policy.sites})
    if resume:
        check_unchanged(plan.run_id, plan.data_fingerprints, prints)
        if plan.demo:
            with RunStore(plan.store_path) as store:
                check_demo_keys(AuditLog(store.db), plan.loaded.policy.sites, plan.run_id)
    else:
        if plan.store_path.is_file():
            with RunStore(plan.store_path, readonly=True) as store:
                check_other_runs(store.list_runs(), prints, data)
        plan = replace(plan, data_fingerprints=prints)
    check_store(plan)
    return plan, sites

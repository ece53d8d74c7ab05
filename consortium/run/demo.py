"""The local demonstration's server side: it provisions and enrols the sites' keys itself.

This is the only path on which the consortium creates or enrols a site's key, and it is only
taken when a run is explicitly in demonstration mode (``consortium run``, or ``flwr run`` with
``demo = true``). Each enrolment, and the run itself, is marked ``local-demo`` in the signed
audit log and in the auditor's report: in this mode the receipts prove only what one machine
playing every hospital attests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from consortium.audit import registry
from consortium.audit.log import AuditLog
from consortium.home import open_home
from consortium.run.plan import RunPlan
from consortium.store.records import MODE_DEMO
from consortium.store.run_store import RunStore
from site_node.data import load_site
from site_node.demo import demo_settings, provision
from site_node.protocol.keys import load_public_key_file
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


def demo_sites(plan: RunPlan) -> list[NodeSettings]:
    """The node settings of every member site, each with data the site can load.

    Raises
    ------
    DataError
        Naming the first member site that has no usable data (nothing has run yet).
    """
    sites = []
    for site in plan.loaded.policy.sites:
        settings = demo_settings(site, example_policy=plan.example_site_policies)
        load_site(site, settings.data_path)  # refuses a site without data before the run
        sites.append(settings)
    return sites

"""The deployed mode end to end: real SuperLink and SuperNode processes on 127.0.0.1.

One SuperLink with TLS and node authentication and four SuperNodes (one per hospital) run two
rounds of DP-SGD under SecAgg+; the run store must hold two completed rounds of four sites with
ε > 0. The same deployment shows that an unenrolled node, a plaintext node and a revoked site
are refused. Every process is stopped by the fixture's finalizer, also when a test fails.
"""

from __future__ import annotations

import http.client
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from consortium import certificates, enrollment, superlink  # noqa: E402
from consortium.audit_log import AuditLog  # noqa: E402
from consortium.audit_verifier import verify_store  # noqa: E402
from consortium.local_deployment import LocalDeployment  # noqa: E402
from consortium.records import ROUND_OK  # noqa: E402
from consortium.store import RunStore  # noqa: E402
from site_node.home import init_site_home  # noqa: E402
from site_node.supernode import NodeStartError, start  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    """A SuperLink and four admitted SuperNodes; all stopped at the end, pass or fail."""
    dep = LocalDeployment(tmp_path_factory.mktemp("deploy"))
    try:
        dep.serve()
        dep.enroll_all()
        dep.start_all()
        yield dep
    finally:
        dep.close()


def test_two_rounds_with_dp_and_secagg(deployed: LocalDeployment) -> None:
    started = time.monotonic()
    log = deployed.run(rounds=2)
    elapsed = time.monotonic() - started
    assert "Secure aggregation completed" in log
    with RunStore(deployed.home.store, readonly=True) as store:
        run_id = store.latest_run_id()
        rounds = store.rounds(run_id)
    assert [r.round for r in rounds] == [1, 2]
    assert all(r.status == ROUND_OK for r in rounds)
    for rnd in rounds:
        assert sorted(s.site for s in rnd.sites) == sorted(deployed.sites)
        assert all(s.epsilon is not None and s.epsilon > 0 for s in rnd.sites)
    print(f"\ndeployed run: 2 rounds x 4 sites in {elapsed:.1f} s")


def test_receipts_verify_under_the_enrolled_keys(deployed: LocalDeployment) -> None:
    with RunStore(deployed.home.store, readonly=True) as store:
        run = store.get_run(store.latest_run_id())
    assert run.engine == "deployment"
    verify_store(deployed.home.store, run_id=run.run_id)  # raises on any broken record
    with AuditLog(deployed.home.store, readonly=True) as audit:
        receipts = audit.receipts(run.run_id)
    assert len(receipts) == 2 * len(deployed.sites)


def test_unenrolled_node_is_refused(deployed: LocalDeployment, tmp_path: Path) -> None:
    stranger = init_site_home(tmp_path / "stranger", "stranger")
    with pytest.raises(NodeStartError, match="not enrolled"):
        start(stranger, deployed.settings(max_retries=1), timeout_s=60)


def test_plaintext_is_refused(deployed: LocalDeployment) -> None:
    host, port = "127.0.0.1", deployed.home.port
    conn = http.client.HTTPConnection(host, port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", "/")
        conn.getresponse()
    conn.close()
    site = deployed.site_homes["cleveland"]
    with pytest.raises(NodeStartError, match="refused the connection"):
        start(site, deployed.settings(insecure=True, ca_cert=None, max_retries=1), timeout_s=60)


def test_wrong_ca_is_refused_before_starting(deployed: LocalDeployment, tmp_path: Path) -> None:
    _, other_ca = certificates.create_ca("not the consortium")
    certificates.write_certificate(tmp_path / "other.crt", other_ca)
    site = deployed.site_homes["hungary"]
    with pytest.raises(NodeStartError, match="wrong CA"):
        start(site, deployed.settings(ca_cert=tmp_path / "other.crt"))


def test_revoked_site_cannot_rejoin(deployed: LocalDeployment) -> None:
    node = deployed.nodes["switzerland"]
    enrollment.revoke(deployed.home, "switzerland")
    status = {str(n["node-id"]): n["status"] for n in superlink.list_nodes(deployed.home)}
    assert status[str(node.node_id)] == "unregistered"
    deployed.stop_node("switzerland")
    with pytest.raises(NodeStartError, match="revoked"):
        deployed.start_node("switzerland", max_retries=1)
    members = enrollment.load_members(deployed.home)
    assert members["switzerland"].status == enrollment.REVOKED

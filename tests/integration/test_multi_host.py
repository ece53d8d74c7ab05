"""The deployed mode across hosts: the SuperLink and each hospital in a network namespace.

Each machine of a real consortium is a network namespace here (:mod:`tests.integration.netns`):
the SuperLink's host and one host per hospital, each with its own loopback and one 10.x address
on a bridge, and nothing else. The consortium is set up, served, joined and run only through
the two commands people type, each run inside its host with ``ip netns exec``:

- ``consortium init --ip LINK --bind LINK``: the SuperLink's certificate names that address and
  nothing else (no ``localhost``), and the SuperLink binds it, not 0.0.0.0;
- ``consortium serve``, ``enroll`` and ``submit`` run on the SuperLink's host (the consortium
  home, with the CA and the run store, lives there; the Control API shares the Fleet port, and
  answers that host only: a hospital that dials it is refused);
- ``site-node start --superlink LINK:PORT`` in each hospital: the site's own ports (the
  SuperNode's runtime API) stay on its loopback.

The consortium runs the heart-visits example, whose privacy unit is the patient, so the same
deployment also shows patient-level DP end to end: every site's signed receipt and ledger event
must say its ε protects a patient, and ``audit verify`` must re-account every ε with the patient
sampling rate. Two rounds of DP-SGD under SecAgg+ must complete, ``consortium audit verify``
must pass, and
the hosts must be isolated as hospitals are: a hospital reaches the SuperLink's port, nobody
reaches a hospital (sites only dial out). Every process and namespace is removed by the
fixture's finalizer, pass or fail. Skipped only where namespaces cannot be made (not root, no
``ip``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from consortium.audit.log import AuditLog
from consortium.home import open_home
from consortium.store.database import Database
from consortium.store.records import ROUND_OK, RUN_COMPLETED
from consortium.store.run_store import RunStore
from policies.example import load_example
from policies.task_loader import load_task
from site_node.deployment.tls import load_certificate
from site_node.home import load_site_home
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger
from tests.integration import netns

pytestmark = pytest.mark.slow

LINK = "link"
PORT = 9093
SITE_PORT = 9094  # each hospital's SuperNode runtime API (loopback)
LOOPBACK = ("127.0.0.1", "::1")
EXAMPLE = load_example("heart-visits")  # patient-level DP (the task's privacy unit)
SITES = list(EXAMPLE.sites)  # the example's policy asks for all four (min_sites 4)
SITE_NODE = str(Path(sys.executable).parent / "site-node")


@dataclass
class Consortium:
    """The hosts, the consortium home on the SuperLink's host and each hospital's site home."""

    net: netns.Network
    home: Path
    site_homes: dict[str, Path]
    seconds_up: float = 0.0

    @property
    def link(self) -> str:
        """The SuperLink's address."""
        return self.net.hosts[LINK]

    def run(self, host: str | None, *args: str, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command on ``host`` (None: the test's own namespace, for offline steps)."""
        argv = list(args) if host is None else self.net.exec(host, args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "COLUMNS": "200", **(env or {})}, check=False)

    def must(self, host: str | None, *args: str, timeout: float = 300) -> str:
        """Like :meth:`run`; fails the test with the command's output if it fails."""
        done = self.run(host, *args, timeout=timeout)
        assert done.returncode == 0, f"{args[:3]} on {host}: {done.stdout}{done.stderr}"
        return done.stdout

    def consortium(self, *args: str) -> str:
        """A coordinator command, on the SuperLink's host."""
        return self.must(LINK, sys.executable, "-m", "consortium", *args,
                         "--home", str(self.home))


def _connect_script(targets: list[tuple[str, int]]) -> str:
    return (
        "import json, socket\n"
        f"targets = {targets!r}\n"
        "out = []\n"
        "for host, port in targets:\n"
        "    s = socket.socket(); s.settimeout(3)\n"
        "    out.append(s.connect_ex((host, port)) == 0); s.close()\n"
        "print(json.dumps(out))\n"
    )


def reachable(cons: Consortium, host: str, targets: list[tuple[str, int]]) -> list[bool]:
    """Whether a TCP connection from ``host`` to each target succeeds."""
    out = cons.must(host, sys.executable, "-c", _connect_script(targets), timeout=60)
    result: list[bool] = json.loads(out)
    return result


def _set_up(cons: Consortium) -> None:
    home = str(cons.home)
    cons.must(None, sys.executable, "-m", "consortium", "init", "--home", home,
              "--ip", cons.link, "--bind", cons.link, "--port", str(PORT))
    coordinator = open_home(cons.home)
    shutil.copyfile(EXAMPLE.policy, coordinator.policy)  # the coordinator's reviewed files
    shutil.copyfile(EXAMPLE.task, coordinator.task)
    cons.consortium("serve", "--detach")
    for site, site_home in cons.site_homes.items():
        cons.must(None, SITE_NODE, "init", "--home", str(site_home), "--site-id", site)
        keys = load_site_home(site_home)
        cons.consortium("enroll", site, "--node-key", str(keys.node_pub),
                        "--receipt-key", str(keys.receipt_pub))
    for site, site_home in cons.site_homes.items():
        cons.must(site, SITE_NODE, "start", "--home", str(site_home),
                  "--superlink", f"{cons.link}:{PORT}", "--ca-cert", str(coordinator.ca_cert),
                  "--data", str(EXAMPLE.data[site]), "--task", str(coordinator.task),
                  "--port", str(SITE_PORT), "--detach")


def _tear_down(cons: Consortium) -> None:
    def stop(site: str, site_home: Path) -> None:
        cons.run(site, SITE_NODE, "stop", "--home", str(site_home), "--grace", "5")

    with ThreadPoolExecutor(max_workers=len(cons.site_homes) or 1) as pool:  # hosts stop at once
        list(pool.map(lambda item: stop(*item),
                      [(s, h) for s, h in cons.site_homes.items() if s in cons.net.namespaces]))
    if LINK in cons.net.namespaces:
        cons.run(LINK, sys.executable, "-m", "consortium", "stop", "--home", str(cons.home),
                 "--grace", "5")
    cons.net.destroy()  # ends whatever is left inside the hosts


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    """A SuperLink host and four hospital hosts with every node admitted; all removed at the
    end, pass or fail."""
    why = netns.unavailable()
    if why is not None:
        pytest.skip(f"network namespaces cannot be made here: {why}")
    root = tmp_path_factory.mktemp("hosts")
    cons = Consortium(netns.Network(), root / "consortium",
                      {s: root / "sites" / s for s in SITES})
    try:
        cons.net = netns.Network.create([LINK, *SITES])
        started = time.monotonic()
        _set_up(cons)
        cons.seconds_up = time.monotonic() - started
        yield cons
    finally:
        _tear_down(cons)


@pytest.fixture(scope="module")
def submitted(hosts: Consortium) -> tuple[str, float]:
    """``consortium submit --rounds 2`` on the SuperLink's host: its output and duration."""
    started = time.monotonic()
    out = hosts.consortium("submit", "--rounds", "2")
    return out, time.monotonic() - started


def test_certificate_names_the_superlink_address_only(hosts: Consortium) -> None:
    cert = load_certificate(open_home(hosts.home).server_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(hosts.link)]
    assert san.get_values_for_type(x509.DNSName) == []  # no localhost


def test_superlink_binds_its_own_address(hosts: Consortium) -> None:
    listening = hosts.net.listening(LINK)
    assert (hosts.link, PORT) in listening
    public = [a for a in listening if a[0] not in LOOPBACK]
    assert public == [(hosts.link, PORT)], listening  # no 0.0.0.0, no other public port


def test_hospitals_listen_on_loopback_only(hosts: Consortium) -> None:
    for site in SITES:
        listening = hosts.net.listening(site)
        assert ("127.0.0.1", SITE_PORT) in listening, (site, listening)
        assert all(a in LOOPBACK for a, _ in listening), (site, listening)


def test_two_rounds_with_dp_and_secagg_across_hosts(
    hosts: Consortium, submitted: tuple[str, float]
) -> None:
    out, seconds = submitted
    assert f"round 2 {ROUND_OK}" in out, out
    store_path = open_home(hosts.home).store
    with RunStore(store_path, readonly=True) as store:
        run = store.get_run(store.latest_run_id())
        rounds = store.rounds(run.run_id)
    assert run.status == RUN_COMPLETED
    assert [r.round for r in rounds] == [1, 2]
    for rnd in rounds:
        assert rnd.status == ROUND_OK, rnd.failure_reason
        assert sorted(s.site for s in rnd.sites) == sorted(SITES)
        assert all(s.trained and s.epsilon is not None and s.epsilon > 0 for s in rnd.sites)
    _patient_level(hosts, store_path, run.run_id)
    verified = hosts.run(None, sys.executable, "-m", "consortium", "audit", "verify",
                         "--store", str(store_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verified" in verified.stdout
    print(f"\nacross hosts: set-up {hosts.seconds_up:.1f} s, "
          f"2 rounds x {len(SITES)} sites {seconds:.1f} s")


def _patient_level(hosts: Consortium, store_path: Path, run_id: str) -> None:
    """Every receipt and every ledger event says its ε protects a patient."""
    assert load_task(open_home(hosts.home).task).task.privacy_unit.unit == "patient"
    with closing(Database(store_path, readonly=True)) as db:
        receipts = AuditLog(db).receipts(run_id)
    assert len(receipts) == 2 * len(SITES)
    assert {json.loads(r.receipt_json)["privacy_unit"] for r in receipts} == {"patient"}
    for site, home in hosts.site_homes.items():
        state = load_site_home(home).state_dir
        with SiteLedger(state / LEDGER_FILE, readonly=True) as ledger:
            assert {e.mechanism.unit for e in ledger.events()} == {"patient"}, site


def test_hospitals_reach_only_the_superlink(hosts: Consortium) -> None:
    for site in SITES:
        others = [hosts.net.hosts[o] for o in SITES if o != site]
        targets = [(hosts.link, PORT), *[(addr, SITE_PORT) for addr in others]]
        assert reachable(hosts, site, targets) == [True] + [False] * len(others), site


def test_superlink_reaches_no_hospital(hosts: Consortium) -> None:
    ports = sorted({port for site in SITES for _, port in hosts.net.listening(site)})
    targets = [(hosts.net.hosts[s], p) for s in SITES for p in ports]
    assert not any(reachable(hosts, LINK, targets)), targets


def test_superlink_is_not_reached_on_another_address(hosts: Consortium) -> None:
    """Bound to its own address: the same port on the host's loopback is closed."""
    assert reachable(hosts, LINK, [("127.0.0.1", PORT), (hosts.link, PORT)]) == [False, True]


def test_a_hospital_is_refused_the_control_api_on_the_fleet_port(
        hosts: Consortium, tmp_path: Path) -> None:
    """Flower 1.42 serves the Control API on the Fleet port and asks no account of its caller;
    the consortium's SuperLink answers Control (and Runtime) requests from its own host only
    (consortium/deployment/api_guard.py). A hospital that trusts the CA and dials the port
    is refused with Flower's own CLI, while the coordinator's commands on the SuperLink's host
    (serve, enroll, submit above) went through, and the SuperLink's log names the caller."""
    flwr_home = tmp_path / "flwr"
    flwr_home.mkdir()
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "c"\n[superlink.c]\naddress = "{hosts.link}:{PORT}"\n'
        f'root-certificates = "{open_home(hosts.home).ca_cert}"\n', encoding="utf-8")
    flwr = str(Path(sys.executable).parent / "flwr")
    done = hosts.run(SITES[0], flwr, "supernode", "ls", "c", "--format", "json", timeout=60,
                     env={"FLWR_HOME": str(flwr_home)})
    reply = json.loads(done.stdout[done.stdout.find("{"):])
    assert reply.get("success") is False and "nodes" not in reply, done.stdout + done.stderr
    assert "403 Forbidden" in str(reply.get("error-message")), reply
    log = (open_home(hosts.home).log_dir / "superlink.log").read_text(encoding="utf-8")
    assert "/v1/control/" in log and "Control and Runtime APIs are for this host only" in log

"""Test hosts made of Linux network namespaces: one per machine, joined by a bridge.

:class:`Network` makes a namespace per host, each with its own loopback and one ``eth0`` (a
veth pair) with its own 10.x address, and a bridge in a namespace of its own that joins them,
as a switch joins machines on a LAN. The root namespace gets no address on that LAN, so a test
that wants to reach a host must do it from inside a host (:meth:`Network.exec`). Names carry
the test process's id so that runs side by side do not meet. :meth:`Network.destroy` ends every
process still inside the namespaces (only processes this test started live there) and deletes
them; it is safe to call on a half-built network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

SUBNET = "10.77.0"


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"hcprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Network:
    """Hosts on one LAN, each a network namespace with one address."""

    hosts: dict[str, str] = field(default_factory=dict)  # host -> address
    namespaces: dict[str, str] = field(default_factory=dict)  # host -> namespace
    tag: str = field(default_factory=lambda: f"hc{os.getpid()}")

    @property
    def switch(self) -> str:
        """The namespace that holds the bridge."""
        return f"{self.tag}-sw"

    @classmethod
    def create(cls, hosts: Sequence[str]) -> Network:
        """A LAN with ``hosts`` (addresses ``SUBNET.1``, ``.2``, ... in that order)."""
        net = cls()
        try:
            _ip("netns", "add", net.switch)
            _ip("-n", net.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", net.switch, "link", "set", "br0", "up")
            for i, host in enumerate(hosts, start=1):
                net._add_host(host, i)
        except BaseException:
            net.destroy()
            raise
        return net

    def _add_host(self, host: str, index: int) -> None:
        ns, port = f"{self.tag}-{host}", f"p{index}"
        _ip("netns", "add", ns)
        self.namespaces[host] = ns
        _ip("link", "add", f"{self.tag}e{index}", "netns", ns, "type", "veth",
            "peer", "name", port, "netns", self.switch)
        _ip("-n", ns, "link", "set", f"{self.tag}e{index}", "name", "eth0")
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        address = f"{SUBNET}.{index}"
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self.hosts[host] = address

    def exec(self, host: str, args: Sequence[str]) -> list[str]:
        """``args`` as a command line that runs inside ``host``."""
        return ["ip", "netns", "exec", self.namespaces[host], *args]

    def pids(self, host: str) -> list[int]:
        """Processes running inside ``host``."""
        done = subprocess.run(["ip", "netns", "pids", self.namespaces[host]],
                              capture_output=True, text=True, check=False)
        return [int(p) for p in done.stdout.split()]

    def listening(self, host: str) -> list[tuple[str, int]]:
        """The TCP sockets listening inside ``host``, as (address, port)."""
        done = subprocess.run(self.exec(host, ["ss", "-Hltn"]), capture_output=True, text=True,
                              check=True)
        found = []
        for line in done.stdout.splitlines():
            local = line.split()[3]
            address, _, port = local.rpartition(":")
            found.append((address.strip("[]"), int(port)))
        return found

    def destroy(self) -> None:
        """End every process inside the hosts, then delete every namespace."""
        for host in self.namespaces:
            for pid in self.pids(host):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ns in [*self.namespaces.values(), self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.namespaces.clear()
        self.hosts.clear()

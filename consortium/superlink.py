"""The consortium's SuperLink: starting it with TLS and node authentication, and talking to it.

The SuperLink serves one port (Fleet, Control and Runtime APIs over HTTPS). Node keys are
registered through its Control API with Flower's own CLI (``flwr supernode register``), using
the connection that :mod:`consortium.home` wrote to ``FLWR_HOME/config.toml``; the SuperLink must
be running for that. Its state lives in ``superlink.db`` so registrations survive restarts.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

from consortium import certificates, processes
from consortium.home import ConsortiumHome

log = logging.getLogger(__name__)

INSECURE_WARNING = (
    "!!! --insecure: the SuperLink will accept PLAINTEXT connections WITHOUT node authentication."
    " Model updates, metrics and privacy figures travel unencrypted and any process can join."
    " Never use this outside a throwaway test on one machine. !!!"
)


class SuperLinkError(Exception):
    """The SuperLink cannot be started or reached, or refused a request."""


def server_env(home: ConsortiumHome) -> dict[str, str]:
    """Environment of the SuperLink and the ServerApp it starts.

    ``FLWR_HOME`` keeps Flower's files in the consortium home; ``HOSPITAL_CONSORTIUM_HOME`` makes
    the ServerApp sign the audit log with the home's ``consortium-key.pem`` (see docs/audit.md).
    """
    return processes.tool_env(
        {"FLWR_HOME": str(home.flwr_home), "HOSPITAL_CONSORTIUM_HOME": str(home.root)}
    )


def command(home: ConsortiumHome, insecure: bool = False) -> list[str]:
    """The ``flower-superlink`` command line for ``home``."""
    args = [
        processes.tool("flower-superlink"),
        "--host",
        home.bind_host,
        "--port",
        str(home.port),
        "--database",
        str(home.database),
        "--disable-runtime-dependency-installation",
    ]
    if insecure:
        return [*args, "--insecure"]
    return [
        *args,
        "--ssl-ca-certfile",
        str(home.ca_cert),
        "--ssl-certfile",
        str(home.server_cert),
        "--ssl-keyfile",
        str(home.server_key),
        "--enable-supernode-auth",
    ]


def preflight(home: ConsortiumHome, insecure: bool = False) -> None:
    """Check the certificates and that the port is free before starting the SuperLink.

    Raises
    ------
    SuperLinkError
        Naming the problem (expired or mismatched certificate, port in use).
    """
    if not insecure:
        try:
            certificates.check_server_chain(home.ca_cert, home.server_cert, home.server_key)
        except certificates.CertificateProblem as err:
            raise SuperLinkError(f"cannot serve with this certificate: {err}") from err
    if processes.port_open(home.bind_host, home.port, 0.5):
        raise SuperLinkError(
            f"{home.bind_host}:{home.port} is already in use (is a SuperLink already running?)"
        )


def start(
    home: ConsortiumHome, insecure: bool = False, timeout_s: float = 60.0
) -> subprocess.Popen[bytes]:
    """Start the SuperLink in the background (log ``logs/superlink.log``); wait until it listens."""
    preflight(home, insecure)
    if insecure:
        log.warning(INSECURE_WARNING)
    log_file = home.log_dir / "superlink.log"
    proc = processes.spawn(command(home, insecure), log_file, env=server_env(home))
    if not processes.wait_for_port(home.bind_host, home.port, timeout_s, proc):
        processes.stop(proc)
        raise SuperLinkError(
            f"the SuperLink did not start listening on {home.bind_host}:{home.port}; "
            f"see {home.log_dir / 'superlink.log'}"
        )
    return proc


def run_foreground(home: ConsortiumHome, insecure: bool = False) -> int:
    """Run the SuperLink in the foreground until it exits or is interrupted; its exit code."""
    preflight(home, insecure)
    if insecure:
        log.warning(INSECURE_WARNING)
    proc = subprocess.Popen(command(home, insecure), env=server_env(home))
    return processes.wait_foreground(proc)


def flwr_cli(
    home: ConsortiumHome, *args: str, connection: str | None = None, timeout_s: float = 60.0
) -> dict[str, object]:
    """Run ``flwr ARGS CONNECTION --format json`` (default: the consortium's connection)."""
    env = processes.tool_env({"FLWR_HOME": str(home.flwr_home)})
    argv = [processes.tool("flwr"), *args, connection or home.federation, "--format", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout_s)
    try:
        reply: dict[str, object] = json.loads(done.stdout[done.stdout.find("{") :])
    except ValueError as err:
        raise SuperLinkError(f"`flwr {args[0]} {args[1]}` failed: {done.stderr.strip()}") from err
    if not reply.get("success"):
        message = str(reply.get("error-message", "unknown error"))
        if "unavailable" in message.lower():
            message = (
                f"the SuperLink at {home.address} is not reachable; start it with "
                "`consortium serve` (registration goes through its Control API)"
            )
        raise SuperLinkError(message)
    return reply


def register_node(home: ConsortiumHome, public_key: Path, name: str) -> int:
    """Register a node's public key with the SuperLink; returns the node id."""
    reply = flwr_cli(home, "supernode", "register", str(public_key), "--name", name)
    return int(str(reply["node-id"]))


def unregister_node(home: ConsortiumHome, node_id: int) -> None:
    """Unregister a node: its key can no longer connect (an online node is disconnected)."""
    flwr_cli(home, "supernode", "unregister", str(node_id))


def list_nodes(home: ConsortiumHome) -> list[dict[str, object]]:
    """The SuperLink's view of the nodes (id, status, online since ...)."""
    nodes = flwr_cli(home, "supernode", "ls")["nodes"]
    return list(nodes) if isinstance(nodes, list) else []

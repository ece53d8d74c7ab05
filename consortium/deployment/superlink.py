"""The consortium's SuperLink: starting it with TLS and node authentication, and talking to it.

The SuperLink serves one port (Fleet, Control and Runtime APIs over HTTPS); it runs as
:mod:`consortium.deployment.guarded_superlink`, so the Control and Runtime APIs answer this host
only (:mod:`consortium.deployment.api_guard`). Node keys are
registered through its Control API with Flower's own CLI (``flwr supernode register``), using
the connection that :mod:`consortium.deployment.setup` wrote to ``FLWR_HOME/config.toml``;
the SuperLink must
be running for that. Its state lives in ``superlink.db`` so registrations survive restarts.

``consortium serve --detach`` records the SuperLink it leaves running in ``superlink.pid``
(process id, creation time, and its ``--database`` path as the command-line mark); ``consortium
stop`` stops only a process that still matches that record (see
:mod:`site_node.deployment.stopping`). :func:`service_unit` is the systemd unit of
``consortium serve``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from consortium.deployment import certificates
from consortium.deployment.setup import Deployment
from consortium.errors import SuperLinkError
from consortium.home import HOME_ENV
from site_node.deployment import processes, stopping, units

log = logging.getLogger(__name__)

INSECURE_WARNING = (
    "!!! --insecure: the SuperLink will accept PLAINTEXT connections WITHOUT node authentication."
    " Model updates, metrics and privacy figures travel unencrypted and any process can join."
    " Never use this outside a throwaway test on one machine. !!!"
)
PID_FILE = "superlink.pid"
#: Seconds between SuperExec's asks for a submitted run's ServerApp (Flower's default: 1).
SUPEREXEC_POLL_S = 0.5
#: The module that runs Flower's SuperLink with :mod:`consortium.deployment.api_guard`.
GUARDED_MODULE = "consortium.deployment.guarded_superlink"


def server_env(dep: Deployment) -> dict[str, str]:
    """Environment of the SuperLink and the ServerApp it starts.

    ``FLWR_HOME`` keeps Flower's files in the consortium home; ``HOSPITAL_CONSORTIUM_HOME`` makes
    the ServerApp sign the audit log with the home's ``consortium-key.pem`` (see docs/audit.md).
    """
    # Flower's SuperExec asks for new tasks (a submitted run's ServerApp) every second by
    # default; every SUPEREXEC_POLL_S here (each ask is a request the SuperLink serves all
    # run long, so a shorter wait only costs CPU beside the rounds).
    return processes.tool_env(
        {"FLWR_HOME": str(dep.home.flwr_home), HOME_ENV: str(dep.home.root),
         "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(SUPEREXEC_POLL_S)}
    )


def command(dep: Deployment, insecure: bool = False) -> list[str]:
    """The SuperLink's command line for ``dep``: Flower's ``flower-superlink`` with its Control
    and Runtime APIs for this host only (:mod:`consortium.deployment.guarded_superlink`)."""
    args = [
        sys.executable,
        "-m",
        GUARDED_MODULE,
        "--host",
        dep.bind_host,
        "--port",
        str(dep.port),
        "--database",
        str(dep.home.database),
        "--disable-runtime-dependency-installation",
    ]
    if insecure:
        return [*args, "--insecure"]
    return [
        *args,
        "--ssl-ca-certfile",
        str(dep.home.ca_cert),
        "--ssl-certfile",
        str(dep.home.server_cert),
        "--ssl-keyfile",
        str(dep.home.server_key),
        "--enable-supernode-auth",
    ]


def preflight(dep: Deployment, insecure: bool = False) -> None:
    """Check the certificates and that the port is free before starting the SuperLink.

    Raises
    ------
    SuperLinkError
        Naming the problem (expired or mismatched certificate, port in use).
    """
    if not insecure:
        try:
            certificates.check_server_chain(dep.home.ca_cert, dep.home.server_cert,
                                            dep.home.server_key)
        except certificates.CertificateProblem as err:
            raise SuperLinkError(f"cannot serve with this certificate: {err}") from err
    if processes.port_open(dep.bind_host, dep.port, 0.5):
        raise SuperLinkError(
            f"{dep.bind_host}:{dep.port} is already in use (is a SuperLink already running?)"
        )


def start(
    dep: Deployment, insecure: bool = False, timeout_s: float = 60.0
) -> subprocess.Popen[bytes]:
    """Start the SuperLink in the background (log ``logs/superlink.log``); wait until it listens."""
    preflight(dep, insecure)
    if insecure:
        log.warning(INSECURE_WARNING)
    log_file = dep.home.log_dir / "superlink.log"
    proc = processes.spawn(command(dep, insecure), log_file, env=server_env(dep))
    if not processes.wait_for_port(dep.bind_host, dep.port, timeout_s, proc):
        processes.stop(proc)
        raise SuperLinkError(
            f"the SuperLink did not start listening on {dep.bind_host}:{dep.port}; "
            f"see {dep.home.log_dir / 'superlink.log'}"
        )
    return proc


def run_foreground(dep: Deployment, insecure: bool = False) -> int:
    """Run the SuperLink in the foreground until it exits or is interrupted; its exit code."""
    preflight(dep, insecure)
    if insecure:
        log.warning(INSECURE_WARNING)
    proc = subprocess.Popen(command(dep, insecure), env=server_env(dep))
    return processes.wait_foreground(proc)


def pid_file(dep: Deployment) -> Path:
    """Where ``consortium serve --detach`` records the SuperLink it left running."""
    return dep.home.root / PID_FILE


def _mark(dep: Deployment) -> str:
    return str(dep.home.database)


def start_detached(dep: Deployment, insecure: bool = False) -> int:
    """Start the SuperLink in the background, record it in ``superlink.pid``; its pid."""
    proc = start(dep, insecure)
    rec = stopping.record(proc.pid, mark=_mark(dep))
    tmp = pid_file(dep).with_suffix(".tmp")
    tmp.write_text(json.dumps(rec.as_dict()) + "\n", encoding="utf-8")
    os.replace(tmp, pid_file(dep))
    log.info("SuperLink detached as pid %d (%s)", proc.pid, pid_file(dep))
    return proc.pid


@dataclass(frozen=True)
class StopReport:
    """What :func:`stop_detached` did: what it stopped (None: nothing ran), and why a record
    was not acted on."""

    stopped: stopping.Stopped | None
    stale: str | None


def _read_record(dep: Deployment) -> stopping.ProcessRecord | None:
    try:
        data = json.loads(pid_file(dep).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SuperLinkError(f"{pid_file(dep)} is unreadable ({exc}); check for a SuperLink "
                             "yourself (nothing was signalled)") from None
    rec = stopping.from_mapping(data) if isinstance(data, dict) else None
    if rec is None:
        raise SuperLinkError(f"{pid_file(dep)} holds no process id; nothing was signalled")
    return stopping.ProcessRecord(pid=rec.pid, created=rec.created, mark=_mark(dep))


def stop_detached(dep: Deployment, *, grace_s: float = 10.0) -> StopReport:
    """Stop the SuperLink ``superlink.pid`` records (and its ServerApps), if it is still that
    process; the record is removed once nothing it names runs."""
    rec = _read_record(dep)
    if rec is None:
        return StopReport(stopped=None, stale=None)
    reason = stopping.why_not(rec)
    proc = stopping.find(rec) if reason is None else None
    if proc is None:
        pid_file(dep).unlink(missing_ok=True)
        return StopReport(stopped=None, stale=reason or f"pid {rec.pid} has exited")
    stopped = stopping.stop_tree([proc], names={proc.pid: "SuperLink"}, grace_s=grace_s)
    pid_file(dep).unlink(missing_ok=True)
    return StopReport(stopped=stopped, stale=None)


def service_unit(dep: Deployment, *, user: str) -> units.Unit:
    """The systemd unit that runs ``consortium serve`` for ``dep`` (TLS and node auth)."""
    command = (str(units.console_script("consortium")), "serve", "--home", str(dep.home.root))
    return units.Unit(description=f"Hospital consortium SuperLink ({dep.home.root})",
                      command=command, user=user, working_directory=dep.home.root,
                      environment={HOME_ENV: str(dep.home.root)})


def flwr_cli(
    dep: Deployment, *args: str, connection: str | None = None, timeout_s: float = 60.0
) -> dict[str, object]:
    """Run ``flwr ARGS CONNECTION --format json`` (default: the consortium's connection)."""
    env = processes.tool_env({"FLWR_HOME": str(dep.home.flwr_home)})
    argv = [processes.tool("flwr"), *args, connection or dep.federation, "--format", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout_s)
    try:
        reply: dict[str, object] = json.loads(done.stdout[done.stdout.find("{") :])
    except ValueError as err:
        raise SuperLinkError(f"`flwr {args[0]} {args[1]}` failed: {done.stderr.strip()}") from err
    if not reply.get("success"):
        message = str(reply.get("error-message", "unknown error"))
        if "unavailable" in message.lower():
            message = (
                f"the SuperLink at {dep.address} is not reachable; start it with "
                "`consortium serve` (registration goes through its Control API)"
            )
        raise SuperLinkError(message)
    return reply


def register_node(dep: Deployment, public_key: Path, name: str) -> int:
    """Register a node's public key with the SuperLink; returns the node id."""
    reply = flwr_cli(dep, "supernode", "register", str(public_key), "--name", name)
    return int(str(reply["node-id"]))


def unregister_node(dep: Deployment, node_id: int) -> None:
    """Unregister a node: its key can no longer connect (an online node is disconnected)."""
    flwr_cli(dep, "supernode", "unregister", str(node_id))


def list_nodes(dep: Deployment) -> list[dict[str, object]]:
    """The SuperLink's view of the nodes (id, status, online since ...)."""
    nodes = flwr_cli(dep, "supernode", "ls")["nodes"]
    return list(nodes) if isinstance(nodes, list) else []

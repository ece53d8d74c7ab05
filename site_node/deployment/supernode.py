"""The site's SuperNode: started with TLS and node authentication, watched until it is admitted.

The site id, data path, task file, state directory (and the node's own settings: device,
physical batch cap, features folder) go into the SuperNode's own node config
(``--node-config``); Flower hands them to the ClientApp on this machine and never sends them to
the SuperLink. Before starting, the data are validated against the task the site admin agreed
to (the node then refuses instructions for any other task), and
:mod:`site_node.deployment.preflight` checks the CA and the SuperLink's certificate; after
starting, the SuperNode's output is watched until it reports its node id (admitted) or exits,
and a refusal is translated into words.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from policies.errors import PolicyError
from policies.task_loader import load_task
from site_node.data import DataRefused, load_site_data
from site_node.deployment import detached, launcher, preflight, processes
from site_node.device import AUTO, describe, resolve_device
from site_node.errors import NodeStartError, PreflightError
from site_node.home import SiteHome
from site_node.settings import NodeSettings as SiteSettings
from site_node.settings import features_folder

log = logging.getLogger(__name__)

ADMITTED_MARK = "SuperNode ID:"
# Flower's answer when the SuperLink does not activate a key: not enrolled, revoked, or still
# online there because an earlier process of this node ended without deactivating it (killed,
# crashed, host lost). The SuperLink marks such a node offline after HEARTBEAT_PATIENCE missed
# heartbeats; a node admitted before waits that long, retrying, before it gives up.
NOT_ACTIVATED = "[code: 2004]"
REJOIN_RETRY_S = 5.0
_REFUSALS = (
    (
        NOT_ACTIVATED,
        "the SuperLink refused this node's key: it is not enrolled, or it was revoked. Send "
        "node.pub and receipt-key.pub.pem to the coordinator (`consortium enroll`). (A node "
        "whose earlier process ended without signing off is also refused until the SuperLink "
        "stops counting it online, about a minute after its last heartbeat.)",
    ),
    ("[code: 2001]", "the SuperLink requires node authentication and no key was given"),
    ("Exit Code: 303", "node authentication needs TLS: give --ca-cert, not --insecure"),
    ("CERTIFICATE_VERIFY_FAILED", "the SuperLink's certificate does not verify against the CA"),
)
# Flower's exit code when the first connection to the SuperLink fails; the line after
# CONNECTION_FAILED is the transport's own words, which vary with timing and load
# ("Server disconnected without sending a response", "Connection reset by peer", ...).
CONNECTION_EXIT = "Exit Code: 305"
CONNECTION_FAILED = "Failed to initialize the connection to the SuperLink."
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class NodeSettings:
    """How to start one site's SuperNode."""

    superlink: str
    ca_cert: Path | None
    data_path: Path
    task_path: Path
    runtime_port: int = 9094
    insecure: bool = False
    warm: bool = True
    max_retries: int | None = None
    device: str = AUTO
    max_physical_batch: int | None = None
    #: Where the task's pretrained backbone file is looked up (None: beside the data).
    features_dir: Path | None = None


@dataclass
class RunningNode:
    """A started SuperNode and, in warm mode, its ClientApp launcher."""

    supernode: subprocess.Popen[bytes]
    launcher: subprocess.Popen[bytes] | None = None
    node_id: int = field(default=0)

    @property
    def pid(self) -> int:
        """The SuperNode's process id."""
        return self.supernode.pid

    def wait(self) -> int:
        """Wait for the SuperNode to exit; its exit code."""
        return self.supernode.wait()

    def stop(self) -> None:
        """Stop the SuperNode, the launcher and all their helpers."""
        processes.stop(self.supernode)
        if self.launcher is not None:
            processes.stop(self.launcher)


def node_config(home: SiteHome, data_path: Path, task_path: Path, *, device: str = AUTO,
                max_physical_batch: int | None = None, features_dir: Path | None = None) -> str:
    """The ``--node-config`` string: site id, data path, task file, state directory, the
    training device and the features folder (all local)."""
    values = SiteSettings(site=home.site_id, data_path=Path(data_path).resolve(),
                          state_dir=home.state_dir, task_path=Path(task_path).resolve(),
                          device=device, max_physical_batch=max_physical_batch,
                          features_dir=None if features_dir is None
                          else Path(features_dir).expanduser().resolve()).node_config()
    for key, value in values.items():
        if "'" in value or '"' in value:
            raise NodeStartError(f"{key} must not contain quotes: {value!r}")
    return " ".join(f"{k}='{v}'" for k, v in values.items())


def command(home: SiteHome, settings: NodeSettings) -> list[str]:
    """The SuperNode's command line: Flower's ``flower-supernode`` with a paced loop
    (:func:`site_node.flower_compat.run_supernode`); ``--no-warm`` runs Flower's own as is."""
    start = ([sys.executable, "-m", "site_node.deployment.paced_supernode"] if settings.warm
             else [processes.tool("flower-supernode")])
    args = [
        *start,
        "--superlink",
        settings.superlink,
        "--port",
        str(settings.runtime_port),
        "--node-config",
        node_config(home, settings.data_path, settings.task_path, device=settings.device,
                    max_physical_batch=settings.max_physical_batch,
                    features_dir=settings.features_dir),
    ]
    if settings.warm:
        args += ["--isolation", "process"]
    if settings.max_retries is not None:
        args += ["--max-retries", str(settings.max_retries)]
    if settings.insecure:
        return [*args, "--insecure"]
    return [
        *args,
        "--root-certificates",
        str(settings.ca_cert),
        "--auth-supernode-private-key",
        str(home.node_key),
    ]


def explain(output: str, *, insecure: bool = False) -> str:
    """Translate a SuperNode's output into the reason it stopped.

    ``insecure`` says the node was started with ``--insecure``: a connection the SuperLink
    drops is then most likely a plaintext node meeting a TLS SuperLink, and the reason says so.
    """
    output = _ANSI.sub("", output)
    for mark, reason in _REFUSALS:
        if mark in output:
            return reason
    lines = output.strip().splitlines()
    if CONNECTION_EXIT in output:
        reason = f"the SuperLink refused the connection ({_line_after(lines, CONNECTION_FAILED)})"
        if insecure:
            reason += "; a SuperLink that requires TLS refuses --insecure nodes: give --ca-cert"
        return reason
    errors = [i for i, line in enumerate(lines) if "ERROR" in line]
    shown = lines[errors[-1]:errors[-1] + 5] if errors else lines[-5:]
    return "the SuperNode stopped; its output:\n" + "\n".join(shown)


def _line_after(lines: list[str], mark: str) -> str:
    """The line that follows the last ``mark`` (the detail Flower prints there)."""
    found = [i for i, line in enumerate(lines) if line.strip() == mark]
    if found and found[-1] + 1 < len(lines) and lines[found[-1] + 1].strip():
        return lines[found[-1] + 1].strip().rstrip(".")
    return "no detail given"


def training_device(settings: NodeSettings) -> str:
    """What the node trains on, as ``site-node status`` shows it (``auto`` resolved)."""
    shown = describe(resolve_device(settings.device, field="--device"))
    if settings.max_physical_batch is not None:
        shown += f", physical batches of at most {settings.max_physical_batch}"
    return shown if settings.device == AUTO else f"{shown} (asked: {settings.device})"


def features_line(settings: NodeSettings) -> str | None:
    """Where the node looks up the task's backbone file, as ``site-node status`` shows it (None:
    beside the data, the default)."""
    if settings.features_dir is None:
        return None
    return str(Path(settings.features_dir).expanduser().resolve())


def check(home: SiteHome, settings: NodeSettings) -> None:
    """Everything that can be checked before starting (raises NodeStartError; a device this
    machine does not have, or a features folder that is not a folder, raises ConfigError)."""
    resolve_device(settings.device, field="--device")
    if not Path(settings.data_path).exists():
        raise NodeStartError(f"data file or folder not found: {settings.data_path}")
    features_dir = (None if settings.features_dir is None
                    else features_folder(settings.features_dir, field="--features-dir"))
    try:
        loaded = load_task(settings.task_path)
    except PolicyError as err:
        raise NodeStartError(f"the task file cannot be used: {err}") from None
    try:
        load_site_data(loaded, Path(settings.data_path), features_dir=features_dir)
    except DataRefused as err:
        lines = "\n  ".join(err.report.lines())
        raise NodeStartError(f"the data do not fit task {loaded.name} "
                             f"({settings.data_path}):\n  {lines}") from None
    if settings.insecure:
        log.warning("--insecure: the SuperNode connects in PLAINTEXT without authentication")
        return
    if settings.ca_cert is None:
        raise NodeStartError("give --ca-cert (the consortium's CA certificate)")
    try:
        preflight.probe_superlink(settings.superlink, settings.ca_cert)
    except PreflightError:
        raise


def _wait_admitted(
    proc: subprocess.Popen[bytes], log_file: Path, offset: int, timeout_s: float
) -> int | None:
    """Watch the log from ``offset``; node id once admitted, None if the process exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log_file.read_bytes()[offset:].decode(errors="replace")
        if ADMITTED_MARK in text:
            return int(text.split(ADMITTED_MARK, 1)[1].split()[0])
        if proc.poll() is not None:
            return None
        time.sleep(0.2)
    raise NodeStartError(f"no answer from the SuperLink in {timeout_s:.0f} s; see {log_file}")


def _start_launcher(home: SiteHome, settings: NodeSettings, parent: int) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "site_node.deployment.launcher",
        "--runtime-api-address", f"127.0.0.1:{settings.runtime_port}",
        "--parent-pid", str(parent),
    ]
    # Flower's SuperExec asks for new tasks every second by default; the launcher's executor
    # paces the asks itself (soon after a task, rarely when idle), so SuperExec's own wait is
    # the least it accepts.
    env = processes.tool_env({"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(launcher.TASK_POLL_S),
                              "FLWR_HOME": str(home.flwr_home)})
    return processes.spawn(args, home.root / "launcher.log", env=env)


def rejoin_wait_s() -> float:
    """How long the SuperLink may still count a node online after its last heartbeat."""
    from flwr.common.constant import HEARTBEAT_DEFAULT_INTERVAL, HEARTBEAT_PATIENCE

    return float(HEARTBEAT_PATIENCE * HEARTBEAT_DEFAULT_INTERVAL + 10)


def start(home: SiteHome, settings: NodeSettings, timeout_s: float = 60.0) -> RunningNode:
    """Start the SuperNode in the background and wait until the SuperLink admits it.

    A node this home saw admitted before is retried for up to :func:`rejoin_wait_s` while the
    SuperLink still counts its earlier, unclean process online.

    Raises
    ------
    NodeStartError
        With the reason, if a check fails or the SuperLink refuses the node.
    """
    check(home, settings)
    admitted_before = home.read_status().get("node_id") is not None
    deadline = time.monotonic() + rejoin_wait_s()
    while True:
        try:
            return _start_once(home, settings, timeout_s)
        except _Refused as refused:
            still_online = admitted_before and NOT_ACTIVATED in refused.output
            if not still_online or time.monotonic() + REJOIN_RETRY_S > deadline:
                home.write_status(state="refused", reason=refused.reason)
                raise NodeStartError(refused.reason) from None
            log.warning("the SuperLink still counts this node online (an earlier process ended "
                        "without signing off); trying again in %.0f s", REJOIN_RETRY_S)
            time.sleep(REJOIN_RETRY_S)


class _Refused(Exception):
    """The SuperNode exited before the SuperLink admitted it."""

    def __init__(self, output: str, reason: str) -> None:
        super().__init__(reason)
        self.output = output
        self.reason = reason


def _start_once(home: SiteHome, settings: NodeSettings, timeout_s: float) -> RunningNode:
    offset = home.log_file.stat().st_size if home.log_file.exists() else 0
    env = processes.tool_env({"FLWR_HOME": str(home.flwr_home)})
    proc = processes.spawn(command(home, settings), home.log_file, env=env)
    node = RunningNode(proc)
    home.write_status(state="starting", superlink=settings.superlink,
                      device=training_device(settings), features_dir=features_line(settings),
                      **detached.node_fields(home, proc.pid))
    try:
        node_id = _wait_admitted(proc, home.log_file, offset, timeout_s)
        if node_id is None:
            output = home.log_file.read_bytes()[offset:].decode(errors="replace")
            raise _Refused(output, explain(output, insecure=settings.insecure))
        if settings.warm:
            node.launcher = _start_launcher(home, settings, proc.pid)
    except BaseException:
        node.stop()
        raise
    node.node_id = node_id
    launcher_pid = node.launcher.pid if node.launcher else None
    home.write_status(state="connected", node_id=node_id, reason=None,
                      **detached.launcher_fields(launcher_pid, node_pid=proc.pid))
    log.info("SuperNode admitted by %s as node %d", settings.superlink, node_id)
    return node

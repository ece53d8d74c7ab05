"""systemd unit files for the site's node and the consortium's SuperLink.

:func:`unit_file` writes a ``[Unit]``/``[Service]``/``[Install]`` file that runs a command in
the foreground (systemd does the detaching), restarts it on failure, sends its output to the
journal, runs as the given user and finds its home through ``Environment=``. Only paths go into
the file, never a key or a password: the keys stay in the home, readable by that user only.
:func:`console_script` finds the absolute path of an installed command (``site-node``,
``consortium``); ExecStart needs one.
"""

from __future__ import annotations

import getpass
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from site_node.device import AUTO
from site_node.errors import ConfigError
from site_node.home import HOME_ENV, SiteHome

if TYPE_CHECKING:  # the node's settings module loads the data stack; a unit needs none of it
    from site_node.deployment.supernode import NodeSettings

#: Seconds systemd waits before restarting a failed service, and for it to stop.
RESTART_SEC = 10
STOP_TIMEOUT_SEC = 30
_SPECIAL = set(' \t"\'\\;$%')


@dataclass(frozen=True)
class Unit:
    """One service: what it runs, as whom, with which environment."""

    description: str
    command: tuple[str, ...]
    user: str
    working_directory: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    after: tuple[str, ...] = ("network-online.target",)


def console_script(name: str) -> Path:
    """The absolute path of the console script ``name`` installed beside this interpreter (or on
    PATH).

    Raises
    ------
    ConfigError
        If it is not installed: a unit's ExecStart needs an absolute path.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside.absolute()
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"the `{name}` command is not installed here (not beside "
                          f"{sys.executable}, not on PATH); install the package first")
    return Path(found).absolute()


def current_user() -> str:
    """The user running this command (the default ``User=``)."""
    return getpass.getuser()


def quote(arg: str) -> str:
    """One ExecStart argument, quoted and escaped as systemd reads it (``%`` and ``$``
    doubled, so systemd never expands them)."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if not escaped or _SPECIAL & set(arg):
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def _environment(values: Mapping[str, str]) -> list[str]:
    return [f"Environment={quote(f'{k}={v}')}" for k, v in sorted(values.items())]


def unit_file(unit: Unit) -> str:
    """The text of ``unit`` as a systemd service file."""
    after = " ".join(unit.after)
    lines = [
        "[Unit]",
        f"Description={unit.description}",
        f"Wants={after}",
        f"After={after}",
        "",
        "[Service]",
        "Type=simple",
        f"User={unit.user}",
        f"WorkingDirectory={str(unit.working_directory).replace('%', '%%')}",
        *_environment(unit.environment),
        "ExecStart=" + " ".join(quote(a) for a in unit.command),
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT_SEC}",
        "StandardOutput=journal",
        "StandardError=journal",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def write_unit(text: str, output: Path | None) -> Path | None:
    """Write ``text`` to ``output`` (refusing to overwrite a file); None: nothing written."""
    if output is None:
        return None
    try:
        with open(output, "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise ConfigError(f"{output} already exists; remove it or choose another --output") \
            from None
    except OSError as exc:
        raise ConfigError(f"cannot write the unit file {output}: {exc.strerror}") from None
    return output


def node_unit(home: SiteHome, settings: NodeSettings, *, user: str) -> Unit:
    """The unit that runs ``site-node start`` for ``home`` with ``settings`` (foreground; the
    SuperNode's own output stays in the home's ``supernode.log``).

    Raises
    ------
    ConfigError
        For ``--insecure`` settings: a service never runs without TLS and node authentication.
    """
    if settings.insecure or settings.ca_cert is None:
        raise ConfigError("a unit runs the node with TLS and node authentication: give --ca-cert "
                          "(no unit is written for --insecure)")
    command = [
        str(console_script("site-node")), "start",
        "--home", str(home.root),
        "--superlink", settings.superlink,
        "--ca-cert", str(Path(settings.ca_cert).expanduser().resolve()),
        "--data", str(Path(settings.data_path).expanduser().resolve()),
        "--task", str(Path(settings.task_path).expanduser().resolve()),
        "--port", str(settings.runtime_port),
    ]
    if not settings.warm:
        command.append("--no-warm")
    if settings.device != AUTO:
        command += ["--device", settings.device]
    if settings.max_physical_batch is not None:
        command += ["--max-physical-batch", str(settings.max_physical_batch)]
    if settings.features_dir is not None:
        command += ["--features-dir", str(Path(settings.features_dir).expanduser().resolve())]
    return Unit(description=f"Hospital consortium site node {home.site_id}",
                command=tuple(command), user=user, working_directory=home.root,
                environment={HOME_ENV: str(home.root)})

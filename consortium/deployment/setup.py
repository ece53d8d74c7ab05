"""Setting up the consortium home for deployment: CA, SuperLink certificate, settings.

``consortium init`` adds to the consortium home (the one of :mod:`consortium.home`, which may
already hold simulated runs and the consortium key) everything the SuperLink and the sites need:
a private CA, the SuperLink's certificate for the names and addresses sites dial, the network
settings (``consortium.toml``), a copy of the consortium policy and of the task to review (the
heart-disease example's; replace them for another task), and the Flower CLI's connection
(``flwr/config.toml``).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass

import tomli_w

from consortium.deployment import certificates
from consortium.errors import HomeError
from consortium.home import ConsortiumHome
from policies.example import DEFAULT_EXAMPLE, load_example
from policies.loader import default_policy_path

log = logging.getLogger(__name__)

DEFAULT_PORT = 9093
DEFAULT_FEDERATION = "consortium"


@dataclass(frozen=True)
class Deployment:
    """A consortium home set up for deployment, with its network settings."""

    home: ConsortiumHome
    bind_host: str
    port: int
    address: str
    federation: str


def _write_tls(home: ConsortiumHome, hosts: Sequence[str], ips: Sequence[str]) -> None:
    home.ca_cert.parent.mkdir(mode=0o700, exist_ok=True)
    ca_key, ca_cert = certificates.create_ca(f"{home.root.name} consortium CA")
    server_key, server_cert = certificates.issue_server_certificate(ca_key, ca_cert, hosts, ips)
    certificates.write_private_key(home.ca_key, ca_key)
    certificates.write_certificate(home.ca_cert, ca_cert)
    certificates.write_private_key(home.server_key, server_key)
    certificates.write_certificate(home.server_cert, server_cert)


def write_flower_connection(dep: Deployment) -> None:
    """Write ``FLWR_HOME/config.toml`` with one TLS connection named after the federation."""
    dep.home.flwr_home.mkdir(mode=0o700, exist_ok=True)
    config = {"superlink": {"default": dep.federation, dep.federation: {
        "address": dep.address, "root-certificates": str(dep.home.ca_cert)}}}
    (dep.home.flwr_home / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")


def init_deployment(home: ConsortiumHome, hosts: Sequence[str] = ("localhost",),
                    ips: Sequence[str] = ("127.0.0.1",), *, port: int = DEFAULT_PORT,
                    bind_host: str = "127.0.0.1",
                    federation: str = DEFAULT_FEDERATION) -> Deployment:
    """Set up ``home`` for deployment; refuse a home that is already set up.

    Raises
    ------
    HomeError
        If the home already holds deployment settings or TLS material.
    """
    if home.config.exists() or home.ca_cert.parent.exists():
        raise HomeError(f"{home.root} is already set up for deployment ({home.config}); "
                        "refusing to overwrite its CA and keys")
    if not hosts and not ips:
        raise HomeError("the SuperLink certificate needs at least one --host or --ip")
    home.ensure()
    home.signing_key()
    dial = hosts[0] if hosts else ips[0]
    dep = Deployment(home, bind_host, port, f"{dial}:{port}", federation)
    _write_tls(home, hosts, ips)
    if not home.policy.exists():
        shutil.copyfile(default_policy_path(), home.policy)
    if not home.task.exists():
        shutil.copyfile(load_example(DEFAULT_EXAMPLE).task, home.task)
    home.log_dir.mkdir(mode=0o700, exist_ok=True)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    settings = {
        "consortium": {"created-at": created, "federation": federation},
        "superlink": {"bind-host": bind_host, "port": port, "address": dep.address},
        "tls": {"hosts": list(hosts), "ips": list(ips)},
    }
    home.config.write_text(tomli_w.dumps(settings), encoding="utf-8")
    write_flower_connection(dep)
    log.info("set up %s for deployment (SuperLink address %s)", home.root, dep.address)
    return dep


def load_deployment(home: ConsortiumHome) -> Deployment:
    """Read the deployment settings of a home set up by :func:`init_deployment`."""
    try:
        data = tomllib.loads(home.config.read_text(encoding="utf-8"))
        link = data["superlink"]
        return Deployment(home, str(link["bind-host"]), int(link["port"]), str(link["address"]),
                          str(data["consortium"]["federation"]))
    except FileNotFoundError:
        raise HomeError(f"{home.root} is not set up for deployment (no {home.config.name}); run "
                        "`consortium init`") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HomeError(f"{home.config} is unreadable or invalid: {exc}") from None

"""The consortium home: the coordinator's directory of keys, certificates, policy and config.

Layout (private files 0600, the directory 0700)::

    HOME/
      consortium.toml        network settings every later command reads
      policy.yaml            the consortium policy (copy of policies/consortium.yaml)
      tls/ca.crt ca.key      the consortium's private CA
      tls/superlink.crt .key the SuperLink's TLS certificate (SANs: --host/--ip)
      consortium-key.pem     the consortium's Ed25519 signing key (audit log), and its
      consortium-key.pub.pem   public half (names as in consortium/keys.py on the audit branch)
      sites.json             enrolled sites (see consortium.enrollment)
      flwr/config.toml       FLWR_HOME for the Flower CLI: one SuperLink connection
      superlink.db           the SuperLink's state (node registrations survive restarts)
      runs.sqlite            the run store
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from consortium import certificates

log = logging.getLogger(__name__)

CONFIG_NAME = "consortium.toml"
DEFAULT_PORT = 9093
DEFAULT_FEDERATION = "consortium"
POLICY_SOURCE = Path(__file__).resolve().parents[1] / "policies" / "consortium.yaml"


class HomeError(Exception):
    """A consortium home that is missing, incomplete or already exists."""


@dataclass(frozen=True)
class ConsortiumHome:
    """Paths and settings of one consortium home."""

    root: Path
    bind_host: str
    port: int
    address: str
    federation: str

    @property
    def ca_cert(self) -> Path:
        """The CA certificate sites need (``--ca-cert``)."""
        return self.root / "tls" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA private key."""
        return self.root / "tls" / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The SuperLink's certificate."""
        return self.root / "tls" / "superlink.crt"

    @property
    def server_key(self) -> Path:
        """The SuperLink's private key."""
        return self.root / "tls" / "superlink.key"

    @property
    def signing_key(self) -> Path:
        """The consortium's Ed25519 signing key."""
        return self.root / "consortium-key.pem"

    @property
    def policy(self) -> Path:
        """The consortium policy."""
        return self.root / "policy.yaml"

    @property
    def sites_file(self) -> Path:
        """The membership register."""
        return self.root / "sites.json"

    @property
    def flwr_home(self) -> Path:
        """FLWR_HOME for Flower CLI calls made on the consortium's behalf."""
        return self.root / "flwr"

    @property
    def database(self) -> Path:
        """The SuperLink's state database."""
        return self.root / "superlink.db"

    @property
    def store(self) -> Path:
        """The run store of deployed runs."""
        return self.root / "runs.sqlite"

    @property
    def log_dir(self) -> Path:
        """Logs of processes the coordinator starts."""
        return self.root / "logs"


def _toml_value(value: object) -> str:
    # JSON string and number syntax is valid TOML for the plain values written here.
    return json.dumps(value)


def _write_toml(path: Path, tables: dict[str, dict[str, object]]) -> None:
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def write_flower_connection(home: ConsortiumHome) -> Path:
    """Write ``FLWR_HOME/config.toml`` with one TLS connection named after the federation."""
    home.flwr_home.mkdir(mode=0o700, exist_ok=True)
    path = home.flwr_home / "config.toml"
    _write_toml(
        path,
        {
            "superlink": {"default": home.federation},
            f"superlink.{home.federation}": {
                "address": home.address,
                "root-certificates": str(home.ca_cert),
            },
        },
    )
    return path


def _write_tls(root: Path, hosts: Sequence[str], ips: Sequence[str]) -> None:
    tls = root / "tls"
    tls.mkdir(mode=0o700)
    ca_key, ca_cert = certificates.create_ca(f"{root.name} consortium CA")
    server_key, server_cert = certificates.issue_server_certificate(ca_key, ca_cert, hosts, ips)
    certificates.write_private_key(tls / "ca.key", ca_key)
    certificates.write_certificate(tls / "ca.crt", ca_cert)
    certificates.write_private_key(tls / "superlink.key", server_key)
    certificates.write_certificate(tls / "superlink.crt", server_cert)


def _write_signing_key(root: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    certificates.write_secret(
        root / "consortium-key.pem",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    (root / "consortium-key.pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def init_home(
    root: Path,
    hosts: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    port: int = DEFAULT_PORT,
    bind_host: str = "127.0.0.1",
    federation: str = DEFAULT_FEDERATION,
) -> ConsortiumHome:
    """Create a new consortium home; refuse if ``root`` exists and is not empty."""
    root = Path(root).expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        raise HomeError(f"{root} already exists and is not empty; refusing to overwrite it")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    dial = hosts[0] if hosts else ips[0]
    home = ConsortiumHome(root, bind_host, port, f"{dial}:{port}", federation)
    _write_tls(root, hosts, ips)
    _write_signing_key(root)
    shutil.copyfile(POLICY_SOURCE, home.policy)
    home.sites_file.write_text("{}\n", encoding="utf-8")
    home.log_dir.mkdir(mode=0o700)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _write_toml(
        root / CONFIG_NAME,
        {
            "consortium": {"created-at": created, "federation": federation},
            "superlink": {"bind-host": bind_host, "port": port, "address": home.address},
            "tls": {"hosts": list(hosts), "ips": list(ips)},
        },
    )
    write_flower_connection(home)
    log.info("created consortium home %s (SuperLink address %s)", root, home.address)
    return home


def load_home(root: Path) -> ConsortiumHome:
    """Read a consortium home created by :func:`init_home`."""
    root = Path(root).expanduser().resolve()
    config = root / CONFIG_NAME
    if not config.is_file():
        raise HomeError(
            f"{root} is not a consortium home (no {CONFIG_NAME}); run `consortium init`"
        )
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    link = data["superlink"]
    return ConsortiumHome(
        root=root,
        bind_host=link["bind-host"],
        port=int(link["port"]),
        address=link["address"],
        federation=data["consortium"]["federation"],
    )


def default_home() -> Path:
    """``$CONSORTIUM_HOME`` or ``~/.hospital-consortium/consortium``."""
    env = os.environ.get("CONSORTIUM_HOME")
    return Path(env) if env else Path.home() / ".hospital-consortium" / "consortium"

"""The consortium home: the coordinator's one directory, and where it is.

``$HOSPITAL_CONSORTIUM_HOME`` (default ``~/.hospital-consortium``) is the one place every
coordinator command looks; :func:`consortium_home` is its one resolution. It holds the run store
and the consortium's signing key for every run, simulated or deployed, and (after
``consortium init``) the deployment's TLS material and Flower connection.

Layout (the directory 0700, private files 0600)::

    HOME/
      runs.sqlite              the run store, with the audit log and the site key registry
      runs-audit-head.json     the audit log's signed head (its last entry), written after
                               every commit: `audit verify` detects a log cut off its end
      consortium-key.pem       the consortium's Ed25519 key: it signs the audit log
      consortium-key.pub.pem     (its public half: give it to auditors out of band)
      consortium.toml          deployment settings (``consortium init``)
      policy.yaml              the deployment's consortium policy (a copy to review and edit)
      task.yaml                the deployment's task (a copy to review, edit, and send the sites)
      tls/ca.crt ca.key        the consortium's private CA
      tls/superlink.crt .key   the SuperLink's TLS certificate
      flwr/config.toml         FLWR_HOME for the Flower CLI: one SuperLink connection
      superlink.db             the SuperLink's state (node registrations survive restarts)
      superlink.pid            the SuperLink `serve --detach` left running (`consortium stop`)
      logs/                    logs of the processes the coordinator starts
      app/                     the Flower app as last submitted
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from site_node.protocol import keys

HOME_ENV = "HOSPITAL_CONSORTIUM_HOME"


def consortium_home() -> Path:
    """The consortium home: ``$HOSPITAL_CONSORTIUM_HOME`` or ``~/.hospital-consortium``."""
    return Path(os.environ.get(HOME_ENV) or "~/.hospital-consortium").expanduser().resolve()


def default_store_path() -> Path:
    """The run store in the consortium home."""
    return consortium_home() / "runs.sqlite"


@dataclass(frozen=True)
class ConsortiumHome:
    """Paths of one consortium home."""

    root: Path

    @property
    def store(self) -> Path:
        """The run store."""
        return self.root / "runs.sqlite"

    @property
    def signing_key_file(self) -> Path:
        """The consortium's Ed25519 signing key."""
        return self.root / "consortium-key.pem"

    @property
    def config(self) -> Path:
        """Deployment settings."""
        return self.root / "consortium.toml"

    @property
    def policy(self) -> Path:
        """The deployment's consortium policy."""
        return self.root / "policy.yaml"

    @property
    def task(self) -> Path:
        """The deployment's task file (what the sites train; they check their data against it)."""
        return self.root / "task.yaml"

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
    def flwr_home(self) -> Path:
        """FLWR_HOME for Flower CLI calls made on the consortium's behalf."""
        return self.root / "flwr"

    @property
    def database(self) -> Path:
        """The SuperLink's state database."""
        return self.root / "superlink.db"

    @property
    def log_dir(self) -> Path:
        """Logs of processes the coordinator starts."""
        return self.root / "logs"

    def ensure(self) -> ConsortiumHome:
        """Create the home directory (0700) if needed; returns self."""
        keys.private_dir(self.root)
        os.chmod(self.root, 0o700)
        return self

    def signing_key(self) -> Ed25519PrivateKey:
        """The consortium's signing key, created (0600) on first use."""
        self.ensure()
        if not self.signing_key_file.exists():
            with contextlib.suppress(FileExistsError):  # another process created it first
                keys.generate_signing_key(self.signing_key_file)
        return keys.load_signing_key(self.signing_key_file)


def open_home(root: Path | str | None = None) -> ConsortiumHome:
    """The consortium home at ``root`` (default: :func:`consortium_home`)."""
    return ConsortiumHome(Path(root).expanduser().resolve() if root else consortium_home())

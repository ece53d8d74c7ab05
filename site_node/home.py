"""The site home: a hospital node's keys, identity and local state.

Layout (the directory 0700, private keys 0600)::

    HOME/
      site.toml                  site id and creation time
      node.key  node.pub         node authentication key (ECDSA P-384, OpenSSH)
      state/                     the node's local state (``state-dir``: ledger, receipt key)
      state/receipt-key.pem      receipt-signing key (Ed25519, PEM; where the site's ClientApp
      state/receipt-key.pub.pem    looks for it, see docs/audit.md)
      flwr/                      FLWR_HOME of the node's Flower processes (installed app bundles)
      supernode.log              output of the running SuperNode
      status.json                what `site-node start` last saw (for `site-node status`)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from site_node import keys


class SiteHomeError(Exception):
    """A site home that is missing or already exists."""


@dataclass(frozen=True)
class SiteHome:
    """Paths of one site home."""

    root: Path
    site_id: str

    @property
    def node_key(self) -> Path:
        """Node authentication private key."""
        return self.root / "node.key"

    @property
    def node_pub(self) -> Path:
        """Node authentication public key (send to the coordinator)."""
        return self.root / "node.pub"

    @property
    def receipt_key(self) -> Path:
        """Receipt-signing private key."""
        return self.state_dir / "receipt-key.pem"

    @property
    def receipt_pub(self) -> Path:
        """Receipt-signing public key (send to the coordinator)."""
        return self.state_dir / "receipt-key.pub.pem"

    @property
    def state_dir(self) -> Path:
        """Local state (never leaves the site)."""
        return self.root / "state"

    @property
    def flwr_home(self) -> Path:
        """FLWR_HOME of the node's Flower processes (the app bundles it installs)."""
        return self.root / "flwr"

    @property
    def log_file(self) -> Path:
        """The SuperNode's output."""
        return self.root / "supernode.log"

    @property
    def status_file(self) -> Path:
        """Last known connection state."""
        return self.root / "status.json"

    def fingerprints(self) -> dict[str, str]:
        """SHA-256 fingerprints of both public keys (to read out to the coordinator)."""
        return {
            "node": keys.node_key_fingerprint(keys.load_node_public_key(self.node_pub)),
            "receipt": keys.receipt_key_fingerprint(keys.load_receipt_public_key(self.receipt_pub)),
        }

    def write_status(self, **fields: object) -> None:
        """Merge ``fields`` into ``status.json``."""
        current = self.read_status()
        current.update(fields, updated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.status_file)

    def read_status(self) -> dict[str, object]:
        """``status.json`` (empty if the node never started)."""
        if not self.status_file.is_file():
            return {}
        data: dict[str, object] = json.loads(self.status_file.read_text(encoding="utf-8"))
        return data


def default_site_home() -> Path:
    """``$SITE_NODE_HOME`` or ``~/.hospital-consortium/site``."""
    env = os.environ.get("SITE_NODE_HOME")
    return Path(env) if env else Path.home() / ".hospital-consortium" / "site"


def init_site_home(root: Path, site_id: str) -> SiteHome:
    """Create a site home with fresh key pairs; refuse to overwrite existing keys."""
    root = Path(root).expanduser().resolve()
    if (root / "site.toml").exists() or (root / "node.key").exists():
        raise SiteHomeError(f"{root} already holds a site identity; refusing to overwrite its keys")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    home = SiteHome(root, site_id)
    home.state_dir.mkdir(mode=0o700, exist_ok=True)
    keys.generate_node_key(home.node_key, home.node_pub, comment=f"site-node:{site_id}")
    keys.generate_receipt_key(home.receipt_key, home.receipt_pub)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (root / "site.toml").write_text(
        f"[site]\nsite-id = {json.dumps(site_id)}\ncreated-at = {json.dumps(created)}\n",
        encoding="utf-8",
    )
    return home


def load_site_home(root: Path) -> SiteHome:
    """Read a site home created by :func:`init_site_home`."""
    root = Path(root).expanduser().resolve()
    config = root / "site.toml"
    if not config.is_file():
        raise SiteHomeError(f"{root} is not a site home (no site.toml); run `site-node init`")
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    return SiteHome(root, str(data["site"]["site-id"]))

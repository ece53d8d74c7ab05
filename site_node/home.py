"""The site home: a hospital node's keys, identity and local state, and where it lives.

``$SITE_NODE_HOME`` (default ``~/.hospital-consortium/site``) is the one place a site admin's
commands look; :func:`default_site_home` is its one resolution. The local demonstration
(``consortium run`` on one machine) plays each hospital with a site home of its own under
``<site home>/demo/<site>``.

Layout (directories 0700, private keys 0600)::

    HOME/
      site.toml                  site id and creation time
      node.key  node.pub         node authentication key (ECDSA P-384, OpenSSH)
      state/                     the node's local state: never leaves the site
      state/receipt-key.pem      receipt-signing key (Ed25519) and its public half
      state/receipt-key.pub.pem
      state/ledger.sqlite        the privacy ledger (every DP event, every refusal)
      state/policy.yaml          the site's own policy (optional; it may only tighten)
      flwr/                      FLWR_HOME of the node's Flower processes
      supernode.log              output of the running SuperNode
      status.json                what `site-node start` last saw (for `site-node status`)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from policies.identity import check_site_id
from site_node.errors import SiteHomeError
from site_node.protocol import keys

HOME_ENV = "SITE_NODE_HOME"
SITE_POLICY_FILE = "policy.yaml"
RECEIPT_KEY_FILE = "receipt-key.pem"


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
    def state_dir(self) -> Path:
        """Local state (never leaves the site)."""
        return self.root / "state"

    @property
    def receipt_key(self) -> Path:
        """Receipt-signing private key."""
        return self.state_dir / RECEIPT_KEY_FILE

    @property
    def receipt_pub(self) -> Path:
        """Receipt-signing public key (send to the coordinator)."""
        return keys.public_path(self.receipt_key)

    @property
    def policy(self) -> Path:
        """The site's own policy file (optional)."""
        return self.state_dir / SITE_POLICY_FILE

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
            "receipt": keys.fingerprint(keys.load_public_key_file(self.receipt_pub)),
        }

    def write_status(self, **fields: object) -> None:
        """Merge ``fields`` into ``status.json`` (atomically)."""
        current = self.read_status()
        current.update(fields, updated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.status_file)

    def read_status(self) -> dict[str, object]:
        """``status.json`` (empty if the node never started or the file is unreadable)."""
        try:
            data = json.loads(self.status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def default_site_home() -> Path:
    """``$SITE_NODE_HOME`` or ``~/.hospital-consortium/site``."""
    env = os.environ.get(HOME_ENV)
    return Path(env or "~/.hospital-consortium/site").expanduser().resolve()


def demo_site_home(site: str) -> Path:
    """Where the local demonstration keeps the home of the site it plays."""
    return default_site_home() / "demo" / check_site_id(site)


def _identity(site_id: str) -> bytes:
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return tomli_w.dumps({"site": {"site-id": site_id, "created-at": created}}).encode()


def _private_root(root: Path, site_id: str) -> SiteHome:
    keys.private_dir(root)
    os.chmod(root, 0o700)
    home = SiteHome(root, site_id)
    home.state_dir.mkdir(mode=0o700, exist_ok=True)
    return home


def init_site_home(root: Path, site_id: str) -> SiteHome:
    """Create a site home with fresh key pairs; refuse to overwrite existing keys.

    Raises
    ------
    policies.errors.InvalidSiteId
        For a site id that breaks the one site id rule.
    SiteHomeError
        If ``root`` already holds a site identity.
    """
    check_site_id(site_id)
    root = Path(root).expanduser().resolve()
    if (root / "site.toml").exists() or (root / "node.key").exists():
        raise SiteHomeError(f"{root} already holds a site identity; refusing to overwrite its keys")
    home = _private_root(root, site_id)
    try:
        keys.generate_node_key(home.node_key, home.node_pub, comment=f"site-node:{site_id}")
        keys.generate_signing_key(home.receipt_key)
        keys.write_public(root / "site.toml", _identity(site_id))
    except FileExistsError as exc:
        raise SiteHomeError(f"{root} already holds a site identity ({exc.filename} appeared "
                            "meanwhile); refusing to overwrite its keys") from None
    return home


def load_site_home(root: Path) -> SiteHome:
    """Read a site home created by :func:`init_site_home`."""
    root = Path(root).expanduser().resolve()
    config = root / "site.toml"
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
        site = check_site_id(data["site"]["site-id"], what=f"{config}: site.site-id")
    except FileNotFoundError:
        raise SiteHomeError(f"{root} is not a site home (no site.toml); run `site-node init`") \
            from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SiteHomeError(f"{config} is unreadable or invalid: {exc}") from None
    return SiteHome(root, site)


def ensure_site_home(root: Path, site_id: str) -> SiteHome:
    """The site home at ``root`` for ``site_id``, created first if there is none.

    Create-or-load, safe when several processes do it at once (two demonstration runs started
    together): each key is created whole by one of them and loaded by the others
    (:func:`site_node.protocol.keys.ensure_signing_key`), and ``site.toml`` is written last, once.
    """
    root = Path(root).expanduser().resolve()
    if not (root / "site.toml").exists():
        check_site_id(site_id)
        home = _private_root(root, site_id)
        keys.ensure_node_key(home.node_key, home.node_pub, comment=f"site-node:{site_id}")
        keys.ensure_signing_key(home.receipt_key)
        with contextlib.suppress(FileExistsError):  # another process wrote it first
            keys.write_secret(root / "site.toml", _identity(site_id))
    home = load_site_home(root)
    if home.site_id != site_id:
        raise SiteHomeError(f"{home.root} belongs to site {home.site_id!r}, not {site_id!r}")
    return home

"""Values a site node derives from public inputs only, kept on disk between ClientApp processes.

Deployed, every message runs in a process of its own (:mod:`site_node.deployment.launcher`), so
whatever a process caches in memory is computed again every round: Opacus' RDP curve of one
DP-SGD step for a (σ, q) (about 0.5 s of CPU) and the per-sample gradient mode chosen by timing
trials (about 1 s). Both depend only on public settings (σ, q, model shape, batch size, device,
library versions), never on data, so the node keeps them in a JSON file per kind under its own
state directory (``<state_dir>/cache``), written atomically.

A value read back is the value computed before, bit for bit (JSON writes Python floats exactly),
and callers check its shape before using it. Nothing is cached until :func:`configure` names a
folder (the ClientApp does, with its node's state directory); a folder that cannot be read or
written only means the value is computed again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_DIR: Path | None = None


def configure(directory: Path | None) -> None:
    """Keep values under ``directory`` from now on in this process (None: keep none)."""
    global _DIR
    _DIR = None if directory is None else Path(directory)


def folder() -> Path | None:
    """Where values are kept now (None: nowhere)."""
    return _DIR


def _file(kind: str) -> Path | None:
    return None if _DIR is None else _DIR / f"{kind}.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def get(kind: str, key: str) -> Any | None:
    """The value kept for ``key`` of ``kind``, or None."""
    path = _file(kind)
    return None if path is None else _read(path).get(key)


def put(kind: str, key: str, value: Any) -> None:
    """Keep ``value`` (JSON-serialisable) for ``key`` of ``kind`` (best effort)."""
    path = _file(kind)
    if path is None:
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = _read(path)
        data[key] = value
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # private like the rest of the home
            fh.write(json.dumps(data, sort_keys=True))
        partial.replace(path)
    except OSError as exc:
        log.debug("could not keep %s in %s: %s", kind, path, exc)

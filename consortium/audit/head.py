"""The signed head of an audit log, kept outside the run store: what truncation cannot hide.

The log's chain proves that no entry was changed, inserted or removed *before* its last entry,
but cutting entries off the end leaves a shorter chain that is just as valid. So after every
transaction that appended to the log commits, the consortium writes the log's head beside the
store (:func:`head_path`; in a consortium home ``runs-audit-head.json``): which log (the hash of
its first entry), its last sequence number and that entry's hash, signed with the consortium key
and written atomically (temporary file, fsync, ``os.replace``). The log only ever grows, so a log
that does not reach its head with the same hash lost its end (:func:`check_head`); entries after
the head are allowed (a crash between the commit and the head's write leaves the log ahead).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consortium.errors import ChainBroken, HeadMissing, LogTruncated, SignatureInvalid
from policies import canonical

if TYPE_CHECKING:  # the log writes heads: no import of it at run time
    from consortium.audit.log import AuditEntry

#: Wire keys of the head file.
KIND, HEAD_KIND, SIGNATURE = "kind", "audit-head", "signature"
HEAD_SUFFIX = "-audit-head.json"


@dataclass(frozen=True)
class AuditHead:
    """The signed head of one audit log."""

    store: str
    genesis: str
    seq: int
    entry_hash: str
    written_at: str
    signature: str = ""

    def body(self) -> dict[str, Any]:
        """What the signature covers (everything but the signature, with the kind)."""
        body = asdict(self)
        del body[SIGNATURE]
        return {KIND: HEAD_KIND, **body}

    def digest(self) -> bytes:
        """SHA-256 of the canonical body: the bytes the consortium key signs."""
        text = canonical.to_json(self.body())
        return hashlib.sha256(text.encode("ascii")).digest()


def head_path(store: Path | str) -> Path:
    """Where the head of the log in ``store`` is kept (``runs.sqlite`` ->
    ``runs-audit-head.json`` beside it)."""
    store = Path(store).expanduser().resolve()
    return store.with_name(store.stem + HEAD_SUFFIX)


def write_head(path: Path, key: Ed25519PrivateKey, *, store: Path, genesis: str, seq: int,
               entry_hash: str) -> AuditHead:
    """Sign and atomically (re)write the head file (0600)."""
    head = AuditHead(store=str(store), genesis=genesis, seq=seq, entry_hash=entry_hash,
                     written_at=datetime.now(UTC).isoformat())
    signed = AuditHead(**{**asdict(head), SIGNATURE: key.sign(head.digest()).hex()})
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(json.dumps({**signed.body(), SIGNATURE: signed.signature}, indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return signed


def read_head(path: Path) -> AuditHead:
    """Read a head file; raises :class:`HeadMissing` if absent, :class:`ChainBroken` if
    unreadable."""
    try:
        data = json.loads(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        raise HeadMissing(f"no signed audit head at {path}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise ChainBroken(f"audit head {path}: unreadable: {exc}") from None
    try:
        if not isinstance(data, dict) or data.pop(KIND, None) != HEAD_KIND:
            raise ValueError("not an audit head file")
        head = AuditHead(**data)
        if not (isinstance(head.seq, int) and all(isinstance(v, str) for v in (
                head.store, head.genesis, head.entry_hash, head.written_at, head.signature))):
            raise ValueError("a field has the wrong type")
    except (TypeError, ValueError) as exc:
        raise ChainBroken(f"audit head {path}: malformed: {exc}") from None
    return head


def check_head(head: AuditHead, path: Path, entries: list[AuditEntry],
               key: Ed25519PublicKey) -> int:
    """Check that the (already chain-verified) ``entries`` reach the signed head; returns how
    many entries follow it.

    Raises
    ------
    SignatureInvalid
        If the head is not signed by the consortium key.
    ChainBroken
        If the head belongs to another log, or the log differs from it at its sequence number.
    LogTruncated
        If the log is shorter than its head.
    """
    try:
        key.verify(bytes.fromhex(head.signature), head.digest())
    except (InvalidSignature, ValueError):
        raise SignatureInvalid(f"audit head {path}: the consortium signature does not "
                               "verify") from None
    if not entries or entries[0].entry_hash != head.genesis:
        raise ChainBroken(f"audit head {path} belongs to another audit log (first entry "
                          f"{head.genesis[:16]}…, this log's "
                          f"{entries[0].entry_hash[:16] if entries else 'none'}…)")
    if head.seq > len(entries):
        raise LogTruncated(
            f"the audit log ends at seq={len(entries)}, but its signed head {path} (written "
            f"{head.written_at}) records seq={head.seq}: {head.seq - len(entries)} entries "
            "were cut off its end")
    if head.seq < 1 or entries[head.seq - 1].entry_hash != head.entry_hash:
        raise ChainBroken(f"audit_log entry seq={head.seq} is not the entry its signed head "
                          f"{path} records: the log was rewritten from there")
    return len(entries) - head.seq

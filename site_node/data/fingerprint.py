"""The fingerprint of a site's training data: SHA-256 over exactly what the site reads.

A data file: SHA-256 of its bytes. An image folder: SHA-256 over every file under it, in the
order of their relative paths (POSIX, sorted), each framed by its path and size before its
bytes, so that renaming or moving an image changes the fingerprint as much as editing it; names
starting with ``.`` are skipped at any depth (the site's image reader skips them too). Files are
read in chunks of :data:`CHUNK` bytes: memory stays bounded whatever the data's size.

The site records the fingerprint of the data a run trained on with the run's first trained
round (:mod:`site_node.privacy.data_record`) and refuses a later round of the same run on other
data; the consortium may use the same function for the data it hands to simulated sites.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from site_node.errors import DataError

CHUNK = 1 << 20

_CACHE: dict[tuple[str, tuple[int, int, int]], str] = {}


def _feed(digest: hashlib._Hash, path: Path) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)


def _files(root: Path) -> list[tuple[str, Path]]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                path = Path(folder) / name
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def data_fingerprint(path: Path | str) -> str:
    """SHA-256 (hex) of the data file, or of the image folder, at ``path``.

    Raises
    ------
    DataError
        Naming the path, if it is neither a readable file nor a readable folder.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            digest.update(b"site-data-folder\0")
            for rel, file in _files(path):
                name = rel.encode("utf-8", "surrogateescape")
                digest.update(len(name).to_bytes(8, "big") + name)
                digest.update(file.stat().st_size.to_bytes(8, "big"))
                _feed(digest, file)
        else:
            _feed(digest, path)
    except OSError as exc:
        raise DataError(f"cannot fingerprint the site's data {path}: "
                        f"{exc.strerror or exc}") from None
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[int, int, int]:
    """Changes whenever the file, or any file under the folder, changes (size, time, count)."""
    if not path.is_dir():
        st = path.stat()
        return st.st_mtime_ns, 1, st.st_size
    latest, count, size = 0, 0, 0
    for _, file in _files(path):
        st = file.stat()
        latest, count, size = max(latest, st.st_mtime_ns), count + 1, size + st.st_size
    return latest, count, size


def cached_fingerprint(path: Path | str) -> str:
    """:func:`data_fingerprint`, computed once per process while the data are unchanged."""
    resolved = Path(path).expanduser().resolve()
    try:
        key = (str(resolved), _stamp(resolved))
    except OSError:
        return data_fingerprint(resolved)  # raises, naming the path
    if key not in _CACHE:
        _CACHE.clear()  # one site, one data path: keep only the latest
        _CACHE[key] = data_fingerprint(resolved)
    return _CACHE[key]

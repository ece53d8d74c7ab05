"""The fingerprint of a site's data: SHA-256 of a file's bytes; of a folder's sorted relative
paths, sizes and bytes; read in bounded chunks; kept per process while the data are unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from site_node.data import fingerprint as fp
from site_node.errors import DataError


def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for rel, data in {"a/1.png": b"one", "a/2.png": b"two", "b/3.png": b"three"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_a_file_is_the_sha256_of_its_bytes_read_in_chunks(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(10_000)
    (tmp_path / "d.csv").write_bytes(data)
    monkeypatch.setattr(fp, "CHUNK", 333)  # many chunks: the result is the same
    assert fp.data_fingerprint(tmp_path / "d.csv") == hashlib.sha256(data).hexdigest()


def test_a_folder_changes_with_any_content_name_or_file_but_not_hidden_files(tmp_path: Path
                                                                             ) -> None:
    root = folder(tmp_path)
    first = fp.data_fingerprint(root)
    assert fp.data_fingerprint(root) == first
    (root / "a" / ".DS_Store").write_bytes(b"finder")
    (root / ".git").mkdir()
    (root / ".git" / "x").write_bytes(b"y")
    assert fp.data_fingerprint(root) == first
    (root / "a" / "2.png").rename(root / "b" / "2.png")  # an image moved to another class
    moved = fp.data_fingerprint(root)
    assert moved != first
    (root / "b" / "2.png").write_bytes(b"tw0")
    assert fp.data_fingerprint(root) not in (first, moved)
    (root / "b" / "4.png").write_bytes(b"")
    assert len({fp.data_fingerprint(root), first, moved}) == 3


def test_paths_and_bytes_cannot_be_shifted_into_each_other(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "a").mkdir(parents=True)
    (two / "a").mkdir(parents=True)
    (one / "a" / "b").write_bytes(b"cd")
    (two / "a" / "bc").write_bytes(b"d")
    assert fp.data_fingerprint(one) != fp.data_fingerprint(two)


def test_missing_data_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        fp.data_fingerprint(tmp_path / "nope")
    with pytest.raises(DataError, match="nope"):
        fp.cached_fingerprint(tmp_path / "nope")


def test_the_cached_fingerprint_follows_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b\n1,2\n")
    first = fp.cached_fingerprint(path)
    assert fp.cached_fingerprint(path) == first
    path.write_bytes(b"a,b\n1,3\n4,5\n")
    assert fp.cached_fingerprint(path) == hashlib.sha256(path.read_bytes()).hexdigest() != first

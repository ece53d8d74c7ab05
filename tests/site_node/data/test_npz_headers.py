"""An ``.npz`` is checked from its arrays' ``.npy`` headers before any array is read: a header
that declares more than the file holds, or more than the size limit, is refused naming the file,
the array and the declared shape, at no cost; so are unknown, duplicate and unheadered members."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npy

from site_node.data import DataRefused, load_site_data, npz
from site_node.data import report as rules
from tests.site_node.data.images import image_task, npz_file

LABELS = np.array([i % 3 for i in range(24)], dtype=np.uint8)


@pytest.fixture
def never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading any array fails the test (every refusal here must come from the headers)."""
    def read_array(*_: object, **__: object) -> np.ndarray:
        raise AssertionError("an array was read before its header was checked")
    monkeypatch.setattr(npy, "read_array", read_array)


def _header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes], claimed: dict[str, int] | None = None) -> Path:
    """A zip of raw members; ``claimed`` overwrites a member's uncompressed size in the central
    directory (what a crafted file may say), its bytes unchanged."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    raw = bytearray(path.read_bytes())
    for name, size in (claimed or {}).items():
        at = raw.index(b"PK\x01\x02")
        while raw[at + 46: at + 46 + len(name)] != name.encode():
            at = raw.index(b"PK\x01\x02", at + 4)
        struct.pack_into("<I", raw, at + 24, size)
    path.write_bytes(bytes(raw))
    return path


def _refused(tmp_path: Path, path: Path) -> DataRefused:
    with pytest.raises(DataRefused) as info:
        load_site_data(image_task(tmp_path), path)
    return info.value


def _problems(refusal: DataRefused) -> list[tuple[str, str, str]]:
    return [(p.where, p.rule, p.detail) for p in refusal.report.problems]


@pytest.mark.usefixtures("never_read")
def test_a_header_declaring_more_than_the_file_holds_is_refused_unread(tmp_path: Path) -> None:
    """The issue's ``(10**12, 8, 8)``: a traceback (58 TiB asked of numpy) before."""
    path = _zip(tmp_path / "site.npz", {
        "train_images.npy": _header((10**12, 4, 4)) + b"\0" * 100,
        "train_labels.npy": _npy(LABELS)})
    refusal = _refused(tmp_path, path)
    ((where, rule, detail),) = _problems(refusal)
    assert (where, rule) == ("array train_images", rules.UNREADABLE)
    assert "shape (1000000000000, 4, 4) uint8" in detail and "holds 100 bytes" in detail
    assert str(refusal).startswith("site.npz: ")


@pytest.mark.usefixtures("never_read")
def test_a_declared_size_above_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """The issue's 3 GiB array (here: a zip that says it holds one); before, it was read."""
    images = (3 * 2**30 // 16, 4, 4)
    header = _header(images)
    path = _zip(tmp_path / "site.npz", {"train_images.npy": header + b"\0" * 64,
                                        "train_labels.npy": _npy(LABELS)},
                claimed={"train_images.npy": len(header) + 3 * 2**30})
    problems = _problems(_refused(tmp_path, path))
    (detail,) = [d for w, r, d in problems if (w, r) == ("array train_images", rules.TOO_LARGE)]
    assert f"shape {images} uint8" in detail and f"{npz.MAX_NPZ_BYTES:,}" in detail


@pytest.mark.usefixtures("never_read")
def test_an_honest_file_above_the_limit_is_refused_unread(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npz, "MAX_NPZ_BYTES", 300)
    path = npz_file(tmp_path / "site.npz", 24, test=False)
    ((where, rule, detail),) = _problems(_refused(tmp_path, path))
    assert (where, rule) == ("array train_images", rules.TOO_LARGE)
    assert "shape (24, 4, 4) uint8 (384 bytes)" in detail and "408 bytes" in detail


@pytest.mark.usefixtures("never_read")
@pytest.mark.parametrize(("members", "expected"), [
    ({"train_images": b"x"}, ("array train_images", rules.WRONG_TYPE)),
    ({"notes.txt": b"x"}, ("array notes.txt", rules.WRONG_TYPE)),
    ({"train_images.npy": b"\x93NUMPY\x01\x00" + b"\xff" * 10}, ("array train_images",
                                                                 rules.UNREADABLE)),
    ({"train_images.npy": b"not an npy"}, ("array train_images", rules.UNREADABLE)),
    ({"train_images.npy": _header((24, 4, 4)) + b"\0" * 10},
     ("array train_images", rules.UNREADABLE)),
    ({"train_images.npy": _header((24, 4, 4), "<f8") + b"\0" * 24 * 16 * 8},
     ("array train_images", rules.WRONG_TYPE)),
    ({"train_images.npy": _header((24, 9, 4)) + b"\0" * 24 * 36},
     ("array train_images", rules.IMAGE_SIZE)),
    ({"train_images.npy": _header((23, 4, 4)) + b"\0" * 23 * 16},
     ("array train_labels", rules.WRONG_TYPE)),
])
def test_bad_members_are_refused_from_their_headers(tmp_path: Path, members: dict[str, bytes],
                                                     expected: tuple[str, str]) -> None:
    content = {"train_labels.npy": _npy(LABELS)} | members
    if "train_images.npy" not in content:
        content["train_images.npy"] = _npy(np.zeros((24, 4, 4), np.uint8))
    problems = _problems(_refused(tmp_path, _zip(tmp_path / "site.npz", content)))
    assert expected in [p[:2] for p in problems], problems


def test_a_member_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "site.npz"
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        for name, data in (("train_images.npy", _npy(np.zeros((24, 4, 4), np.uint8))),
                           ("train_labels.npy", _npy(LABELS)),
                           ("train_labels.npy", _npy(LABELS))):
            zf.writestr(name, data)
    assert ("array train_labels", rules.DUPLICATE_COLUMN) in [
        p[:2] for p in _problems(_refused(tmp_path, path))]


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_compressed_and_fortran_order_files_load(tmp_path: Path, save: Any) -> None:
    images = np.asfortranarray(np.random.default_rng(0).integers(0, 255, (24, 4, 4), np.uint8))
    path = tmp_path / "site.npz"
    save(path, train_images=images, train_labels=LABELS.astype(np.int64)[:, None])
    data = load_site_data(image_task(tmp_path), path)
    assert data.num_train + data.num_test == 24
    both = np.concatenate([data.x_train, data.x_test])
    assert sorted(both.reshape(24, -1).sum(axis=1).tolist()) == pytest.approx(sorted(
        (images.reshape(24, -1).astype(np.float32) / 255).sum(axis=1).tolist()), rel=1e-5)

"""An image is checked from its header before it is decoded: its format against its suffix, its
mode and its size against the task. A 12000×12000 PNG (561 MB decoded, and a raw Pillow warning
before) and a TIFF named ``.png`` are refused without decoding anything or printing a warning."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from site_node.data import DataRefused, load_site_data
from site_node.data import report as rules
from tests.site_node.data.images import class_folders, image_task


@pytest.fixture
def never_decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every image Pillow decodes (by file name)."""
    decoded: list[str] = []
    load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        decoded.append(Path(getattr(self.fp, "name", "?")).name)
        return load(self)
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return decoded


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A grayscale PNG that declares ``width``×``height`` and holds a few bytes of pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0"))
            + _chunk(b"IEND", b""))


def _refused(tmp_path: Path, root: Path) -> list[tuple[str, str, str, tuple[str, ...]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataRefused) as info:
            load_site_data(image_task(tmp_path), root)
    assert [str(w.message) for w in caught] == []  # nothing printed, a refusal only
    return [(p.where, p.rule, p.detail, p.at) for p in info.value.report.problems]


@pytest.mark.parametrize(("side", "pixels"), [(12000, "144,000,000"), (20000, "400,000,000")])
def test_a_huge_png_is_refused_from_its_header(tmp_path: Path, never_decoded: list[str],
                                               side: int, pixels: str) -> None:
    root = class_folders(tmp_path / "scans")
    (root / "clear" / "huge.png").write_bytes(png_header(side, side))
    ((where, rule, detail, at),) = _refused(tmp_path, root)
    assert (where, rule, at) == ("class folder clear", rules.IMAGE_SIZE, ("clear/huge.png",))
    assert pixels in detail and "decompression-bomb" in detail and "4×4" in detail
    assert "huge.png" not in never_decoded


def test_a_large_png_below_pillows_limit_is_refused_undecoded(
        tmp_path: Path, never_decoded: list[str]) -> None:
    root = class_folders(tmp_path / "scans")
    (root / "nodules" / "big.png").write_bytes(png_header(5000, 4000))
    assert _refused(tmp_path, root) == [("class folder nodules", rules.IMAGE_SIZE,
                                         "4000×5000; the task wants 4×4 8-bit grayscale",
                                         ("nodules/big.png",))]
    assert "big.png" not in never_decoded


@pytest.mark.parametrize(("fmt", "name", "detail"), [
    ("TIFF", "scan.png", "a TIFF file, not PNG or JPEG"),
    ("BMP", "scan.jpg", "a BMP file, not PNG or JPEG"),
    ("JPEG", "scan.png", "a JPEG file named .png"),
    ("PNG", "scan.jpeg", "a PNG file named .jpeg"),
])
def test_the_format_must_be_the_suffix_s_and_is_checked_before_decoding(
        tmp_path: Path, never_decoded: list[str], fmt: str, name: str, detail: str) -> None:
    root = class_folders(tmp_path / "scans")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "effusion" / name, format=fmt)
    assert _refused(tmp_path, root) == [("class folder effusion", rules.NOT_AN_IMAGE, detail,
                                         (f"effusion/{name}",))]
    assert name not in never_decoded


def test_the_wrong_mode_is_refused_before_decoding(tmp_path: Path,
                                                   never_decoded: list[str]) -> None:
    root = class_folders(tmp_path / "scans")
    Image.new("RGB", (4, 4)).save(root / "clear" / "colour.png")
    assert [p[1] for p in _refused(tmp_path, root)] == [rules.IMAGE_CHANNELS]
    assert "colour.png" not in never_decoded


def test_images_that_fit_are_decoded(tmp_path: Path, never_decoded: list[str]) -> None:
    root = class_folders(tmp_path / "scans", per_class=4)
    data = load_site_data(image_task(tmp_path), root)
    assert data.num_train + data.num_test == 12
    assert len([name for name in never_decoded if name.endswith(".png")]) == 12

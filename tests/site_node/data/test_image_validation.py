"""Every kind of bad image data is refused with a report naming the folder or array, the rule
and the first offending files: a folder per class (PNG/JPEG) and MedMNIST-format npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from site_node.data import DataRefused, load_site_data
from site_node.data import report as rules
from tests.site_node.data.images import class_folders, image_task, npz_file


def refused(tmp_path: Path, path: Path, **task_kw: int) -> list[tuple[str, str, tuple[str, ...]]]:
    with pytest.raises(DataRefused) as info:
        load_site_data(image_task(tmp_path, **task_kw), path)
    return [(p.where, p.rule, p.at) for p in info.value.report.problems]


# -- a folder per class ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_class_folders_load_with_the_fixed_pixel_scaling(tmp_path: Path, fmt: str) -> None:
    root = class_folders(tmp_path / "scans", fmt=fmt)
    (root / ".DS_Store").write_bytes(b"ignored")  # hidden files are skipped
    data = load_site_data(image_task(tmp_path), root)
    assert data.x_train.shape[1:] == (1, 4, 4) and data.x_train.dtype == np.float32
    assert data.num_train + data.num_test == 24 and set(data.y_test.tolist()) == {0, 1, 2}
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert data.summary.format == "image folders"
    assert data.summary.classes["nodule"]["train"] + data.summary.classes["nodule"]["test"] == 8


def test_rgb_folders_for_a_three_channel_task(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "scans", channels=3)
    data = load_site_data(image_task(tmp_path, channels=3), root)
    assert data.x_train.shape[1:] == (3, 4, 4)


def test_an_unreadable_image_is_refused(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "scans")
    (root / "clear" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert ("class folder clear", rules.UNREADABLE, ("clear/broken.png",)) in refused(
        tmp_path, root)


def test_a_file_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "scans")
    (root / "nodules" / "notes.txt").write_text("x", encoding="utf-8")
    Image.new("L", (4, 4)).save(root / "clear" / "scan.gif")
    (root / "effusion" / "fake.png").write_bytes(_gif_bytes(tmp_path))
    problems = refused(tmp_path, root)
    assert ("class folder nodules", rules.NOT_AN_IMAGE, ("nodules/notes.txt",)) in problems
    assert ("class folder clear", rules.NOT_AN_IMAGE, ("clear/scan.gif",)) in problems
    assert any(p[:2] == ("class folder effusion", rules.NOT_AN_IMAGE) for p in problems)


def _gif_bytes(tmp_path: Path) -> bytes:
    Image.new("L", (4, 4)).save(tmp_path / "x.gif")
    return (tmp_path / "x.gif").read_bytes()


def test_the_wrong_image_size_is_refused(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "scans")
    Image.new("L", (5, 4)).save(root / "clear" / "wide.png")
    problems = refused(tmp_path, root)
    assert problems == [("class folder clear", rules.IMAGE_SIZE, ("clear/wide.png",))]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16"])
def test_the_wrong_channels_or_bit_depth_are_refused(tmp_path: Path, mode: str) -> None:
    root = class_folders(tmp_path / "scans")
    Image.new(mode, (4, 4)).save(root / "nodules" / "odd.png")
    assert refused(tmp_path, root) == [
        ("class folder nodules", rules.IMAGE_CHANNELS, ("nodules/odd.png",))]


def test_an_unknown_class_folder_and_stray_files_are_refused(tmp_path: Path) -> None:
    root = class_folders(tmp_path / "scans")
    (root / "fracture").mkdir()
    (root / "readme.txt").write_text("x", encoding="utf-8")
    problems = refused(tmp_path, root)
    assert ("folder fracture", rules.UNKNOWN_CLASS, ()) in problems
    assert ("folder scans", rules.NOT_AN_IMAGE, ("readme.txt",)) in problems


def test_folder_class_counts_and_rows(tmp_path: Path) -> None:
    one = class_folders(tmp_path / "one", classes=(1,))
    assert refused(tmp_path, one)[0][:2] == ("label", rules.SINGLE_CLASS)
    two = class_folders(tmp_path / "two", classes=(0, 2))
    load_site_data(image_task(tmp_path), two)
    assert refused(tmp_path, two, min_classes=3)[0][:2] == ("label", rules.CLASS_COUNT)
    tiny = class_folders(tmp_path / "tiny", per_class=1, classes=(0,))
    assert refused(tmp_path, tiny)[0][:2] == ("data", rules.TOO_FEW_ROWS)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert refused(tmp_path, empty)[0][:2] == ("data", rules.TOO_FEW_ROWS)


# -- MedMNIST npz -----------------------------------------------------------------------------

def test_an_npz_with_its_own_split_is_used_as_split(tmp_path: Path) -> None:
    data = load_site_data(image_task(tmp_path), npz_file(tmp_path / "site.npz", 24))
    assert (data.num_train, data.num_test) == (24, 8)
    assert data.summary.split == "the file's own train/test split"
    without = load_site_data(image_task(tmp_path), npz_file(tmp_path / "b.npz", 24, test=False))
    assert without.num_train + without.num_test == 24 and "task's" in without.summary.split


def test_an_npz_with_rgb_images_and_a_val_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = npz_file(tmp_path / "rgb.npz", 12, channels=3,
                    val_images=rng.integers(0, 255, (3, 4, 4, 3), dtype=np.uint8),
                    val_labels=np.array([[0], [1], [2]], dtype=np.uint8))
    data = load_site_data(image_task(tmp_path, channels=3), path)
    assert data.x_train.shape == (12, 3, 4, 4)


@pytest.mark.parametrize(("arrays", "where", "rule"), [
    ({"train_images": np.zeros((24, 4, 4), np.float64)}, "array train_images", rules.WRONG_TYPE),
    ({"train_images": np.zeros((24, 5, 4), np.uint8)}, "array train_images", rules.IMAGE_SIZE),
    ({"train_images": np.zeros((24, 4, 4, 3), np.uint8)}, "array train_images",
     rules.IMAGE_CHANNELS),
    ({"train_images": np.zeros((24, 16), np.uint8)}, "array train_images",
     rules.IMAGE_CHANNELS),
    ({"train_labels": np.full((24, 1), 7, np.uint8)}, "array train_labels",
     rules.UNKNOWN_CLASS),
    ({"train_labels": np.zeros((24, 1), np.float32)}, "array train_labels", rules.WRONG_TYPE),
    ({"train_labels": np.zeros((23,), np.int64)}, "array train_labels", rules.WRONG_TYPE),
    ({"extra": np.zeros(2)}, "array extra", rules.WRONG_TYPE),
])
def test_bad_npz_arrays_are_refused(tmp_path: Path, arrays: dict[str, np.ndarray], where: str,
                                    rule: str) -> None:
    problems = refused(tmp_path, npz_file(tmp_path / "site.npz", 24, **arrays))
    assert (where, rule) in [p[:2] for p in problems], problems


def test_an_unknown_npz_label_names_its_index(tmp_path: Path) -> None:
    labels = np.array([[i % 3] for i in range(24)], dtype=np.uint8)
    labels[5] = 4
    problems = refused(tmp_path, npz_file(tmp_path / "s.npz", 24, train_labels=labels))
    assert problems == [("array train_labels", rules.UNKNOWN_CLASS, ("train_labels[5]",))]


def test_a_half_split_and_a_missing_train_split_are_refused(tmp_path: Path) -> None:
    half = tmp_path / "half.npz"
    np.savez(half, train_images=np.zeros((6, 4, 4), np.uint8),
             train_labels=np.array([0, 1, 2] * 2), test_images=np.zeros((2, 4, 4), np.uint8))
    assert ("array test_labels", rules.MISSING_COLUMN) in [p[:2] for p in refused(tmp_path,
                                                                                   half)]
    none = tmp_path / "none.npz"
    np.savez(none, images=np.zeros((6, 4, 4), np.uint8))
    got = [p[:2] for p in refused(tmp_path, none)]
    assert ("array train_images", rules.MISSING_COLUMN) in got
    assert ("array images", rules.WRONG_TYPE) in got


def test_an_npz_is_read_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npz"
    objects = np.empty(24, dtype=object)
    objects[:] = [{"x": i} for i in range(24)]
    np.savez(path, train_images=objects, train_labels=np.zeros(24, np.int64))
    assert refused(tmp_path, path)[0][1] == rules.UNREADABLE


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", b"\x00" * 64])
def test_an_unreadable_npz_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "site.npz"
    path.write_bytes(content)
    assert refused(tmp_path, path)[0][:2] == ("file site.npz", rules.UNREADABLE)


def test_npz_class_counts(tmp_path: Path) -> None:
    single = npz_file(tmp_path / "one.npz", 12, classes=(2,))
    assert refused(tmp_path, single)[0][:2] == ("label", rules.SINGLE_CLASS)
    two = npz_file(tmp_path / "two.npz", 12, classes=(0, 1))
    assert refused(tmp_path, two, min_classes=3)[0][:2] == ("label", rules.CLASS_COUNT)


def test_an_image_task_refuses_a_table(tmp_path: Path) -> None:
    table = tmp_path / "site.csv"
    table.write_text("a\n1\n", encoding="utf-8")
    assert refused(tmp_path, table)[0][1] == rules.UNREADABLE

"""Patient ids of images: from the file name, an index file or an npz array; grouped, split by
patient, capped, refused with the file or array named; and a patient-level round on images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from policies.errors import PolicyError
from policies.task_loader import LoadedTask, load_task
from site_node.data import DataRefused, SiteData, load_site_data
from site_node.model import build_model, get_weights
from site_node.training import TrainPlan, train_dp
from tests.site_node.data.images import FOLDERS, class_folders, image_task, npz_file

PATTERN = "privacy_unit: {unit: patient, patient_file_pattern: '^(?P<patient>[a-z]+)-'}\n"


def _task(tmp_path: Path, unit_yaml: str, **kwargs: object) -> LoadedTask:
    image_task(tmp_path)  # writes the base task file
    path = tmp_path / "tiny-scans.yaml"
    path.write_text(path.read_text(encoding="utf-8") + unit_yaml, encoding="utf-8")
    return load_task(path)


def _owner(k: int, i: int) -> str:
    """Image i of class k belongs to patient ``p<k>q<i // 2>`` (two images each)."""
    return f"p{k}q{i // 2}"


def _named_folders(root: Path, per_class: int = 8) -> Path:
    """Class folders whose files are named ``<patient>-<i>.png``."""
    class_folders(root, per_class)
    for k, folder in enumerate(FOLDERS):
        for i in range(per_class):
            (root / folder / f"{i}.png").rename(
                root / folder / f"{_owner(k, i)}-{i}.png")
    return root


def _same_patient_pairs(data: SiteData) -> None:
    """Every training patient holds its whole group of two (the split is by patient)."""
    assert data.patients_train is not None
    counts = np.bincount(data.patients_train)
    assert set(counts.tolist()) == {2}
    assert data.summary.patients is not None
    assert data.summary.patients.patients == len(counts)


def test_a_file_name_pattern_groups_each_patients_images(tmp_path: Path) -> None:
    loaded = _task(tmp_path, PATTERN.replace("[a-z]+", "[a-z0-9]+"))
    data = load_site_data(loaded, _named_folders(tmp_path / "site"))
    _same_patient_pairs(data)
    assert data.num_train + data.num_test == 24
    assert data.summary.split.endswith("by patient")


def test_a_file_the_pattern_does_not_name_is_refused_naming_it(tmp_path: Path) -> None:
    loaded = _task(tmp_path, PATTERN)
    root = class_folders(tmp_path / "site", 4)  # files 0.png …: no patient in the name
    with pytest.raises(DataRefused, match=r"patient_file_pattern.*clear/0\.png"):
        load_site_data(loaded, root)


def _index(root: Path, rows: list[tuple[str, str]], name: str = "patients.csv") -> None:
    lines = ["image,patient_ref"] + [f"{a},{b}" for a, b in rows]
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


INDEX = ("privacy_unit: {unit: patient, patient_index: {file: patients.csv, "
         "patient_column: patient_ref}, max_records_per_patient: CAP}\n")


def _indexed(tmp_path: Path, cap: int = 8) -> tuple[LoadedTask, Path, list[tuple[str, str]]]:
    loaded = _task(tmp_path, INDEX.replace("CAP", str(cap)))
    root = class_folders(tmp_path / "site", 8)
    rows = [(f"{folder}/{i}.png", _owner(k, i)) for k, folder in enumerate(FOLDERS)
            for i in range(8)]
    return loaded, root, rows


def test_an_index_file_groups_images_by_path_or_unique_name(tmp_path: Path) -> None:
    loaded, root, rows = _indexed(tmp_path)
    _index(root, [*rows, ("elsewhere/9.png", "p-other")])  # an extra row is ignored
    data = load_site_data(loaded, root)
    _same_patient_pairs(data)
    shutil.rmtree(root / "effusion")
    (root / "clear" / "0.png").rename(root / "clear" / "solo.png")
    _index(root, [(r[0].replace("clear/0.png", "solo.png"), r[1]) for r in rows[:16]])
    assert load_site_data(loaded, root).patients_train is not None


def test_the_cap_drops_a_patients_later_images_and_says_so(tmp_path: Path) -> None:
    loaded, root, rows = _indexed(tmp_path, cap=1)
    _index(root, rows)
    data = load_site_data(loaded, root)
    assert data.patients_train is not None
    assert np.bincount(data.patients_train).max() == 1
    stats = data.summary.patients
    assert stats is not None and stats.max_records_before_cap == 2 and stats.dropped_by_cap > 0


@pytest.mark.parametrize(("edit", "match"), [
    (lambda rows: rows[1:], r"does not list.*clear/0\.png"),
    (lambda rows: [*rows, rows[0]], r"listed twice.*clear/0\.png"),
    (lambda rows: [(rows[0][0], ""), *rows[1:]], r"without its patient id.*clear/0\.png"),
])
def test_an_index_that_misses_repeats_or_blanks_an_image_is_refused(
        tmp_path: Path, edit: object, match: str) -> None:
    loaded, root, rows = _indexed(tmp_path)
    _index(root, edit(rows))  # type: ignore[operator]
    with pytest.raises(DataRefused, match=match):
        load_site_data(loaded, root)


def test_a_missing_index_or_column_is_refused_naming_it(tmp_path: Path) -> None:
    loaded, root, _rows = _indexed(tmp_path)
    with pytest.raises(DataRefused, match=r"index file patients\.csv.*no such file"):
        load_site_data(loaded, root)
    (root / "patients.csv").write_text("image,patient\nclear/0.png,a\n", encoding="utf-8")
    with pytest.raises(DataRefused, match=r"patients\.csv column patient_ref.*missing column"):
        load_site_data(loaded, root)


def test_a_bare_name_two_images_share_must_name_its_class_folder(tmp_path: Path) -> None:
    loaded, root, rows = _indexed(tmp_path)
    _index(root, [(r[0].split("/")[1], r[1]) for r in rows])  # 0.png is in every folder
    with pytest.raises(DataRefused, match="does not list"):
        load_site_data(loaded, root)


@pytest.mark.parametrize(("unit", "match"), [
    ("{unit: patient, patient_index: {file: ../x.csv}}", "patient_index.file"),
    ("{unit: patient, patient_index: {file: p.csv, image_column: a, patient_column: a}}",
     "the same column"),
    ("{unit: patient, patient_index: {file: p.csv}, patient_array: ids}", "name one patient"),
])
def test_the_task_refuses_an_index_it_cannot_read(tmp_path: Path, unit: str, match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        _task(tmp_path, f"privacy_unit: {unit}\n")


NPZ_UNIT = "privacy_unit: {unit: patient, patient_array: pid}\n"


def test_an_npz_array_groups_images_with_the_task_split(tmp_path: Path) -> None:
    loaded = _task(tmp_path, NPZ_UNIT)
    ids = np.array([f"pt{i // 2}" for i in range(24)])
    data = load_site_data(loaded, npz_file(tmp_path / "s.npz", test=False, train_pid=ids))
    _same_patient_pairs(data)


def test_an_npz_with_its_own_split_keeps_it_and_counts_patients(tmp_path: Path) -> None:
    loaded = _task(tmp_path, NPZ_UNIT)
    ids = np.arange(24) // 3
    data = load_site_data(loaded, npz_file(tmp_path / "s.npz", train_pid=ids,
                                           test_pid=np.arange(8) + 100))
    assert data.num_train == 24 and data.num_test == 8
    assert data.patients_train is not None and data.num_patients == 8


@pytest.mark.parametrize(("arrays", "match"), [
    ({}, r"array train_pid.*missing column"),
    ({"train_pid": np.arange(5)}, r"train_pid.*5 patient ids for 24 images"),
    ({"train_pid": np.ones(24)}, r"train_pid.*integers or text"),
    ({"train_pid": np.array([b"a"] * 24)}, r"train_pid.*integers or text"),
    ({"train_pid": np.arange(24), "train_other": np.arange(24)}, r"train_other.*array name"),
])
def test_an_npz_whose_patient_array_does_not_fit_is_refused(tmp_path: Path, arrays: dict[
        str, np.ndarray], match: str) -> None:
    loaded = _task(tmp_path, NPZ_UNIT)
    with pytest.raises(DataRefused, match=match):
        load_site_data(loaded, npz_file(tmp_path / "s.npz", **arrays))


def test_an_npz_task_refuses_folders_named_by_array_and_vice_versa(tmp_path: Path) -> None:
    loaded = _task(tmp_path, NPZ_UNIT)
    with pytest.raises(DataRefused, match="patient_array is an npz file's"):
        load_site_data(loaded, class_folders(tmp_path / "site", 4))
    (tmp_path / "b").mkdir()
    other = _task(tmp_path / "b", PATTERN)
    with pytest.raises(DataRefused, match=r"names its patients with privacy_unit\.patient_array"):
        load_site_data(other, npz_file(tmp_path / "s.npz"))


def test_a_patient_level_round_on_images_samples_patients(tmp_path: Path) -> None:
    loaded = _task(tmp_path, PATTERN.replace("[a-z]+", "[a-z0-9]+"))
    data = load_site_data(loaded, _named_folders(tmp_path / "site"))
    model = build_model(loaded.task)
    plan = TrainPlan(noise_multiplier=1.0, sample_rate=0.5, max_grad_norm=1.0, steps=3,
                     learning_rate=0.1, accountant="rdp", delta=1e-5, unit="patient")
    result = train_dp(get_weights(model), data, plan, loaded.task)
    assert result.mechanism.unit == "patient"
    assert any(not np.array_equal(a, b) for a, b in zip(result.weights, get_weights(model),
                                                        strict=True))

"""The task schema: what a task file may declare, and every contradiction it refuses with one
line naming the file and the field (the column too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policies.errors import PolicyError
from policies.task import CNNModel, ImageTask, TabularTask
from policies.task_loader import parse_task
from tests.policies.task_data import column, digits_data, heart_data

Edit = Callable[[dict[str, Any]], None]


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(PolicyError) as info:
        parse_task(data, "task.yaml")
    return str(info.value)


def test_the_shipped_tasks_are_valid() -> None:
    heart = parse_task(heart_data(), "heart").task
    assert isinstance(heart, TabularTask) and heart.preprocessing == "fixed"
    assert heart.label.names == ("no disease", "disease") and heart.input_shape == (29,)
    digits = parse_task(digits_data(), "digits").task
    assert isinstance(digits, ImageTask) and digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10


def _set(col: str, key: str, value: Any) -> Edit:
    return lambda d: column(d, col).__setitem__(key, value)


def _missing(col: str, key: str, value: Any) -> Edit:
    return lambda d: column(d, col)["missing"].__setitem__(key, value)


TABULAR_CASES: dict[str, tuple[Edit, str]] = {
    "unknown column type": (_set("age", "type", "text"),
                            "columns[0] (age): Input tag 'text' found using 'type'"),
    "contradictory range": (_set("age", "range", [100, 0]),
                            "columns[0] (age): range: lo (100) must be below hi (0)"),
    "empty range": (_set("age", "range", [5, 5]), "columns[0] (age): range: lo (5)"),
    "imputation outside the range": (_missing("chol", "impute", 20),
                                     "columns[4] (chol): missing.impute (20) is outside"),
    "zero is missing inside the range": (_missing("oldpeak", "zero_is_missing", True),
                                         "columns[9] (oldpeak): missing.zero_is_missing"),
    "numeric missing marker": (_missing("ca", "values", ["", "0"]), "is a number"),
    "duplicate level": (_set("cp", "levels", ["a", "b", "a"]),
                        "columns[2] (cp): levels: 'a' is listed twice"),
    "imputed level not declared": (_missing("slope", "impute", "steep"),
                                   "columns[10] (slope): missing.impute 'steep' is not one"),
    "missing marker is a level": (_missing("thal", "values", ["normal"]),
                                  "'normal' is also a level"),
    "spelling both true and false": (_set("sex", "false_values", ["Male"]),
                                     "columns[1] (sex): true/false spellings: 'Male'"),
    "non-finite range": (_set("age", "range", [0, float("inf")]), "columns[0] (age).range"),
    "unknown key": (_set("age", "scale", "log"), "columns[0] (age).scale: Extra inputs"),
    "boolean with a range": (_set("sex", "range", [0, 1]), "columns[1] (sex).range"),
}


@pytest.mark.parametrize("case", list(TABULAR_CASES))
def test_a_bad_column_is_refused_naming_file_column_and_field(case: str) -> None:
    edit, expected = TABULAR_CASES[case]
    data = heart_data()
    edit(data)
    message = refused(data)
    assert message.startswith("task.yaml: ") and expected in message, message
    assert "Traceback" not in message


def test_duplicate_columns_and_a_label_that_is_a_feature_are_refused() -> None:
    data = heart_data()
    data["columns"].append(dict(column(data, "age")))
    assert "columns[13]: column 'age' is already declared as columns[0]" in refused(data)
    data = heart_data()
    data["label"]["column"] = "chol"
    assert "label.column: column 'chol' is already declared as columns[4]" in refused(data)
    data = heart_data()
    data["ignore_columns"] = ["id", "age"]
    assert "ignore_columns[1]: column 'age'" in refused(data)


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["label"].__setitem__("classes", [{"name": "x", "values": [0]}]),
     "label.classes: Tuple should have at least 2 items"),
    (lambda d: d["label"]["classes"][1].__setitem__("values", [0]), "belongs to two classes"),
    (lambda d: d["label"]["classes"][1].__setitem__("name", "no disease"), "listed twice"),
    (lambda d: d["label"].__setitem__("min_classes_per_site", 3), "exceeds the number"),
    (lambda d: d["label"].__setitem__("min_classes_per_site", 1), "greater than or equal to 2"),
    (lambda d: d["label"].pop("column"), "label.column: a tabular task names its label"),
    (lambda d: d.__setitem__("model", {"family": "cnn", "channels": [4]}),
     "cnn is for image tasks"),
    (lambda d: d.__setitem__("model", {"family": "resnet18"}), "resnet18 is for image tasks"),
    (lambda d: d.__setitem__("model", {"family": "resnet18", "widths": [8, 8, 8]}),
     "model.resnet18.widths: Tuple should have at least 4 items"),
    (lambda d: d.__setitem__("model", {"family": "forest"}), "model: Input tag 'forest'"),
    (lambda d: d.__setitem__("preprocessing", "site-statistics"), "preprocessing: Input should"),
    (lambda d: d.__setitem__("modality", "text"), "Input tag 'text' found using 'modality'"),
    (lambda d: d.__setitem__("name", "Heart Disease"), "invalid task name"),
    (lambda d: d["split"].__setitem__("test_fraction", 1.0), "split.test_fraction"),
    (lambda d: d.__setitem__("columns", []), "columns: Tuple should have at least 1 item"),
])
def test_label_model_split_and_name_rules(edit: Edit, expected: str) -> None:
    data = heart_data()
    edit(data)
    assert expected in refused(data)


def test_image_task_rules() -> None:
    data = digits_data()
    data["label"]["column"] = "digit"
    assert "an image task has no label column" in refused(data)
    data = digits_data()
    data["label"]["classes"][0]["values"] = ["zero"]
    assert "image labels are integers" in refused(data)
    data = digits_data()
    data["image"]["channels"] = 2
    assert "image.channels" in refused(data)
    data = digits_data()
    data["label"]["classes"][1]["folder"] = "0"
    assert "folder '0' is used twice" in refused(data)
    data = digits_data()
    data["model"] = {"family": "cnn", "channels": [8, 16]}
    task = parse_task(data, "cnn").task
    assert isinstance(task.model, CNNModel) and task.model.groups == 4


def test_feature_layout_follows_the_columns() -> None:
    data = heart_data()
    column(data, "cp")["missing"] = {"values": [""], "impute": "asymptomatic",
                                     "indicator": True}
    task = parse_task(data, "t").task
    assert isinstance(task, TabularTask)
    names = task.feature_names()
    assert names[2:7] == ("cp=typical angina", "cp=atypical angina", "cp=non-anginal",
                          "cp=asymptomatic", "cp_missing")
    assert len(names) == 30

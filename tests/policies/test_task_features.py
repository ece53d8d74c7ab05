"""A task's fixed feature extractor (``features:``): what it may declare, the head it trains,
and every combination it refuses with one line naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from policies.errors import PolicyError
from policies.task import ImageTask
from policies.task_loader import load_task, parse_task
from tests.policies.task_data import digits_data, heart_data

HASH = "ab" * 32


def digits(features: dict[str, Any] | None, *, model: dict[str, Any] | None = None,
           size: int = 8) -> dict[str, Any]:
    data = digits_data()
    data["image"] |= {"height": size, "width": size}
    if features is not None:
        data["features"] = features
    if model is not None:
        data["model"] = model
    return data


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(PolicyError) as info:
        parse_task(data, "task.yaml")
    return str(info.value)


def test_scattering_features_set_the_heads_input() -> None:
    task = parse_task(digits({"kind": "scattering", "J": 2}, size=32), "task.yaml").task
    assert isinstance(task, ImageTask) and task.features is not None
    assert task.features.kind == "scattering" and task.features.normalisation == "none"
    assert task.input_shape == (1, 32, 32)  # what a site reads
    assert task.model_input_shape == (81 * 8 * 8,)  # 1 + 2·8 + 64·1 coefficients, 8×8 each


def test_a_pretrained_backbone_declares_its_hash_and_output_size() -> None:
    task = parse_task(digits({"kind": "pretrained", "file": "backbone.pt", "sha256": HASH,
                              "dim": 16}, model={"family": "mlp", "hidden": [8]}),
                      "task.yaml").task
    assert isinstance(task, ImageTask) and task.model_input_shape == (16,)


def test_a_task_without_features_keeps_its_content_hash() -> None:
    """``features`` is left out of the canonical JSON when absent: existing tasks' hashes (and
    the runs, receipts and ledgers that record them) are unchanged."""
    loaded = load_task("policies/tasks/digits.yaml")
    assert "features" not in loaded.canonical_json


@pytest.mark.parametrize(("features", "size", "expected"), [
    ({"kind": "scattering", "J": 3}, 8, "features.J: J = 3 needs images larger than 2^J = 8"),
    ({"kind": "scattering", "J": 2}, 30, "features.J: J = 2 needs image sides that are "
                                         "multiples of 2^J = 4; the task's are 30×30"),
    ({"kind": "scattering", "J": 0}, 8, "features.J: Input should be greater than or equal to 1"),
    ({"kind": "wavelets", "J": 2}, 8, "features: Input tag 'wavelets'"),
    ({"kind": "scattering", "J": 1, "normalisation": "log"}, 8, "features.normalisation"),
    ({"kind": "pretrained", "file": "backbone.pt", "dim": 4}, 8, "features.sha256: Field "
                                                                  "required"),
    ({"kind": "pretrained", "file": "backbone.pt", "dim": 4, "sha256": "ABC"}, 8,
     "features.sha256: String should match pattern"),
    ({"kind": "pretrained", "file": "../backbone.pt", "dim": 4, "sha256": HASH}, 8,
     "features.file: String should match pattern"),
    ({"kind": "pretrained", "file": "backbone.pt", "sha256": HASH}, 8, "features.dim: Field "
                                                                        "required"),
])
def test_bad_features_are_refused_naming_the_field(features: dict[str, Any], size: int,
                                                   expected: str) -> None:
    message = refused(digits(features, size=size))
    assert message.startswith("task.yaml: ") and expected in message, message


@pytest.mark.parametrize("model", [{"family": "cnn", "channels": [4]},
                                   {"family": "resnet18"}])
def test_an_image_network_on_features_is_refused(model: dict[str, Any]) -> None:
    message = refused(digits({"kind": "scattering", "J": 1}, model=model))
    assert "model.family: " + model["family"] in message and "use logistic or mlp" in message


def test_a_tabular_task_has_no_features_field() -> None:
    data = heart_data() | {"features": {"kind": "scattering", "J": 1}}
    assert "features: Extra inputs are not permitted" in refused(data)


def test_augmentation_with_features_or_on_a_tabular_task_is_refused() -> None:
    """Features are computed once per image, so there is nothing to augment; a table has no
    images."""
    data = digits({"kind": "scattering", "J": 1}) | {
        "augmentation": {"multiplicity": 4, "crop_padding": 1}}
    assert "augmentation: features (scattering) are computed once per image" in refused(data)
    tabular = heart_data() | {"augmentation": {"horizontal_flip": True}}
    assert "augmentation: Extra inputs are not permitted" in refused(tabular)

"""Loading task files at the edge: strict YAML, content hashes, canonical JSON re-validated
against its hash (what a site does with every instruction), and nothing but PolicyError."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.errors import PolicyError
from policies.example import load_example
from policies.task_loader import (
    load_task,
    parse_task,
    task_from_canonical,
    task_json_schema,
    task_sha256,
    tasks_dir,
)
from tests.policies.policy_data import write
from tests.policies.task_data import column, heart_data


def test_shipped_tasks_load_with_a_hash_of_their_canonical_json() -> None:
    names = sorted(p.stem for p in tasks_dir().glob("*.yaml"))
    assert names == ["digits", "heart-disease", "heart-visits"]
    for name in names:
        loaded = load_task(tasks_dir() / f"{name}.yaml")
        assert loaded.name == name
        assert loaded.sha256 == hashlib.sha256(loaded.canonical_json.encode()).hexdigest()
        assert task_sha256(loaded.task) == loaded.sha256


def test_hash_ignores_formatting_and_comments_but_not_values(tmp_path: Path) -> None:
    data = heart_data()
    text = "# reviewed\n" + yaml.safe_dump(data, default_flow_style=True)
    assert load_task(write(tmp_path, text, "t.yaml")).sha256 == load_task(
        load_example("heart-disease").task).sha256
    column(data, "chol")["range"] = [50, 701]
    assert parse_task(data, "x").sha256 != load_task(load_example("heart-disease").task).sha256


def test_canonical_json_round_trips_and_tampering_is_refused() -> None:
    loaded = load_task(load_example("heart-disease").task)
    again = task_from_canonical(loaded.canonical_json, loaded.sha256, "instruction")
    assert again.task == loaded.task and again.sha256 == loaded.sha256
    tampered = loaded.canonical_json.replace('"range":[50,700]', '"range":[40,700]')
    assert tampered != loaded.canonical_json
    with pytest.raises(PolicyError, match="instruction: the task does not match its hash"):
        task_from_canonical(tampered, loaded.sha256, "instruction")
    rehashed = hashlib.sha256(tampered.encode()).hexdigest()
    assert task_from_canonical(tampered, rehashed, "i").sha256 == rehashed  # a valid task
    spaced = json.dumps(json.loads(loaded.canonical_json))
    with pytest.raises(PolicyError, match="not in canonical form"):
        task_from_canonical(spaced, hashlib.sha256(spaced.encode()).hexdigest(), "i")
    with pytest.raises(PolicyError, match="not JSON"):
        task_from_canonical("{", hashlib.sha256(b"{").hexdigest(), "i")


def test_strict_yaml_and_one_line_per_problem(tmp_path: Path) -> None:
    dup = write(tmp_path, "name: a\nname: b\n", "dup.yaml")
    with pytest.raises(PolicyError, match=r"dup\.yaml: not valid YAML: duplicate key 'name'"):
        load_task(dup)
    with pytest.raises(PolicyError, match=r"list\.yaml: the document must be a mapping"):
        load_task(write(tmp_path, "- a\n", "list.yaml"))
    with pytest.raises(PolicyError, match="cannot read file"):
        load_task(tmp_path / "missing.yaml")
    data = heart_data()
    column(data, "age")["range"] = [100, 0]
    column(data, "chol")["type"] = "text"
    with pytest.raises(PolicyError) as info:
        parse_task(data, "t.yaml")
    lines = str(info.value).splitlines()
    assert lines == [
        "t.yaml: columns[0] (age): range: lo (100) must be below hi (0)",
        "t.yaml: columns[4] (chol): Input tag 'text' found using 'type' does not match any of "
        "the expected tags: 'numeric', 'categorical', 'boolean'"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                      max_size=4),
                    max_leaves=20))
def test_any_parsed_document_gives_a_task_or_a_policy_error(data: object) -> None:
    try:
        parse_task(data, "fuzz.yaml")
    except PolicyError as exc:
        assert str(exc).startswith("fuzz.yaml: ")


def test_the_schema_describes_both_modalities() -> None:
    schema = task_json_schema()
    text = json.dumps(schema)
    assert "TabularTask" in text and "ImageTask" in text and "NumericColumn" in text
    assert schema["discriminator"]["propertyName"] == "modality"

"""The committed JSON Schemas are those the policy models produce."""

from __future__ import annotations

import json
from pathlib import Path

from policies.loader import json_schema, site_json_schema
from policies.schema_export import POLICIES_DIR, SCHEMA_FILES, expected_files, write_schemas
from policies.task_loader import task_json_schema


def test_committed_json_schemas_are_up_to_date() -> None:
    assert set(expected_files()) == {"consortium.schema.json", "site.schema.json",
                                     "task.schema.json"}
    for name, text in expected_files().items():
        committed = (POLICIES_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"{name} is stale: run python -m policies.schema_export"


def test_export_writes_what_the_models_say(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(SCHEMA_FILES)
    consortium = json.loads((tmp_path / "consortium.schema.json").read_text(encoding="utf-8"))
    site = json.loads((tmp_path / "site.schema.json").read_text(encoding="utf-8"))
    task = json.loads((tmp_path / "task.schema.json").read_text(encoding="utf-8"))
    assert consortium == json_schema() and site == site_json_schema()
    assert task == task_json_schema()
    # The schemas describe the strict policy: no unknown keys, the site id rule's fields.
    # A full policy, or privacy terms only (the training settings then chosen): both strict.
    full, terms = (consortium["$defs"][b["$ref"].rsplit("/", 1)[1]] for b in consortium["anyOf"])
    assert full["additionalProperties"] is False and terms["additionalProperties"] is False
    assert {"delta", "dp", "secagg", "sites"} <= set(full["properties"])
    assert "dp" not in terms["properties"] and "dp" in full["required"]
    assert {"delta", "epsilon_ceiling", "min_sites"} <= set(terms["required"])
    assert site["required"] == ["site"] and site["additionalProperties"] is False

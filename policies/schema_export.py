"""Export the policies' JSON Schemas for reviewers.

``python -m policies.schema_export`` rewrites ``policies/consortium.schema.json``,
``policies/site.schema.json`` and ``policies/task.schema.json`` (task files,
``policies/tasks/*.yaml``); a test fails while the committed files are out of date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from policies.loader import json_schema, site_json_schema
from policies.task_loader import task_json_schema

POLICIES_DIR = Path(__file__).resolve().parent
SCHEMA_FILES = {"consortium.schema.json": json_schema, "site.schema.json": site_json_schema,
                "task.schema.json": task_json_schema}


def schema_text(schema: dict[str, Any]) -> str:
    """The committed text of a schema: indented, sorted keys, one trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    """File name -> the text it must hold."""
    return {name: schema_text(build()) for name, build in SCHEMA_FILES.items()}


def write_schemas(directory: Path = POLICIES_DIR) -> list[Path]:
    """Write every schema file into ``directory``; returns the paths written."""
    written = []
    for name, text in expected_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    import sys

    sys.stdout.write("".join(f"{p}\n" for p in write_schemas()))

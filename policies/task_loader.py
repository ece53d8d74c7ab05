"""Load a task file once, at the edge: strict YAML -> validated frozen task + content hash.

The hash is the SHA-256 of the validated task as canonical JSON (sorted keys, no whitespace),
as for policies (:mod:`policies.loader`): comments and formatting do not change it. A site
re-validates the canonical JSON it receives with every instruction against that hash
(:func:`task_from_canonical`). Errors are one line per problem naming the file and the field;
a problem in a column names the column too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from policies.documents import read_document
from policies.errors import PolicyError
from policies.loader import canonical_json, from_canonical
from policies.task import AnyTask, Task

_ADAPTER: TypeAdapter[AnyTask] = TypeAdapter(Task)
#: Tags of the discriminated unions, by the field that holds the union: pydantic puts the tag in
#: an error's location right after that field (the task's modality at the top level).
_TAGS: dict[str | int | None, frozenset[str]] = {
    None: frozenset({"tabular", "image"}),
    "column": frozenset({"numeric", "categorical", "boolean"}),
    "model": frozenset({"logistic", "mlp", "cnn"}),
    "features": frozenset({"scattering", "pretrained"}),
}
#: Branches of ``StrictFloat | StrictInt`` and pydantic's internal validator names.
_BRANCHES = frozenset({"float", "int", "str", "bool", "none"})
_INTERNAL = ("function-", "constrained-")


@dataclass(frozen=True)
class LoadedTask:
    """A validated task with where it came from and its content hash."""

    task: AnyTask
    source: str
    sha256: str

    @property
    def canonical_json(self) -> str:
        """The task as canonical JSON (what the hash is computed over)."""
        return canonical_json(self.task)

    @property
    def name(self) -> str:
        """The task's name."""
        return self.task.name


def tasks_dir() -> Path:
    """The embedded task files (``policies/tasks/``)."""
    return Path(str(resources.files("policies") / "tasks"))


def task_sha256(task: AnyTask) -> str:
    """Content hash of a task."""
    return hashlib.sha256(canonical_json(task).encode()).hexdigest()


def _plain(loc: tuple[str | int, ...]) -> list[str | int]:
    """The location without union tags and branch names."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        holder: str | int | None = None if i == 0 else loc[i - 1]
        if isinstance(holder, int) and i >= 2 and loc[i - 2] == "columns":
            holder = "column"
        if isinstance(part, str) and (part in _TAGS.get(holder, frozenset())
                                      or part in _BRANCHES or part.startswith(_INTERNAL)):
            continue
        out.append(part)
    return out


def _location(loc: tuple[str | int, ...], data: Any) -> str:
    """``('tabular', 'columns', 3, 'numeric', 'range')`` -> ``columns[3] (chol).range``."""
    parts = _plain(loc)
    columns = data.get("columns") if isinstance(data, dict) else None
    text = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            name = None
            if parts[:i] == ["columns"] and isinstance(columns, list) and part < len(columns):
                col = columns[part]
                name = col.get("name") if isinstance(col, dict) else None
            text += f"[{part}]" + (f" ({name})" if isinstance(name, str) else "")
        else:
            text += ("." if text else "") + part
    return text or "(top level)"


def _format(source: str, exc: ValidationError, data: Any) -> str:
    """One line per problem: ``FILE: field: message (got VALUE)``; only the first problem per
    field, and no "too short" for a list whose items are themselves wrong."""
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    lines, seen = [], set()
    for err, loc in zip(errors, locs, strict=True):
        if err["type"] == "too_short" and any(other[:len(loc)] == loc and other != loc
                                              for other in locs):
            continue
        where = _location(loc, data)
        if where in seen:
            continue
        seen.add(where)
        value = err["input"]
        shown = err["type"] != "missing" and not isinstance(value, dict | list) and loc
        got = repr(value) if shown else ""
        got = f" (got {got[:60]}{'...' if len(got) > 60 else ''})" if shown else ""
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {where}: {msg}{got}")
    return "\n".join(lines)


def parse_task(data: Any, source: str) -> LoadedTask:
    """Validate an already-parsed task mapping.

    Raises
    ------
    PolicyError
        Naming the file (``source``) and the field of every problem.
    """
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a task must be a mapping of fields, got "
                          f"{type(data).__name__}")
    try:
        task = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise PolicyError(_format(source, exc, data)) from None
    return LoadedTask(task=task, source=source, sha256=task_sha256(task))


def load_task(path: Path | str) -> LoadedTask:
    """Read and validate a task file.

    Raises
    ------
    PolicyError
        If the file cannot be read, is not strict YAML, or any field is invalid.
    """
    file = Path(path)
    return parse_task(read_document(file), str(file))


def task_from_canonical(text: str, expected_sha256: str, source: str) -> LoadedTask:
    """Re-validate a task received as canonical JSON and check it against its hash
    (:func:`policies.loader.from_canonical`)."""
    return from_canonical(text, expected_sha256, source, kind="task", parse=parse_task)


def task_json_schema() -> dict[str, Any]:
    """The task file's JSON Schema, for reviewers."""
    return _ADAPTER.json_schema()

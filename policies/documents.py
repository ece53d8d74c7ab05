"""Reading reviewed YAML documents (policies, site policies, tasks) strictly.

PyYAML's safe loader still accepts things a reviewed file must not hold: a duplicate key (the
last one silently wins), aliases (a few lines can expand to gigabytes, and even formatting the
error of such a document is unbounded), explicit tags (PyYAML's constructors crash on some, such
as an empty ``!!float``), and any byte encoding it can guess. Here a document must be UTF-8 (an
optional UTF-8 BOM is tolerated), at most :data:`MAX_BYTES`, with no anchors, aliases, tags or
duplicate keys, and its top level must be a mapping. Every error is one line that names the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from policies.errors import PolicyError

MAX_BYTES = 1 << 20


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, tags or duplicate keys; ``1e-5`` is a float (YAML 1.2)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ConstructorError(None, None, "aliases (*name) are not allowed",
                                   event.start_mark)
        if self.check_event(yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if getattr(event, "anchor", None) is not None:
                raise ConstructorError(None, None, "anchors (&name) are not allowed",
                                       event.start_mark)
            if getattr(event, "tag", None) is not None:
                raise ConstructorError(None, None, "tags (!name) are not allowed",
                                       event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)  # a list, mapping or set (``!!set``) cannot be a key
            except TypeError:
                raise ConstructorError(None, None, "a key must be a plain value",
                                       key_node.start_mark) from None
            if key in seen:
                raise ConstructorError(None, None, f"duplicate key {key!r}",
                                       key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _one_line(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


def parse_document(data: bytes, source: str) -> dict[str, Any]:
    """Parse YAML bytes into a mapping; raises :class:`PolicyError` naming ``source``."""
    if len(data) > MAX_BYTES:
        raise PolicyError(f"{source}: file is larger than {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise PolicyError(f"{source}: not UTF-8 text (contains NUL characters)")
    try:
        value = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise PolicyError(f"{source}: nested too deeply") from None
    except (ValueError, TypeError, LookupError, OverflowError) as exc:
        # PyYAML's constructors fail with plain errors on some malformed plain scalars (a date
        # such as 2001-02-30).
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PolicyError(f"{source}: not valid YAML: a value cannot be read ({detail})") \
            from None
    if not isinstance(value, dict):
        raise PolicyError(f"{source}: the document must be a mapping of fields, "
                          f"got {type(value).__name__}")
    return value


def read_document(path: Path | str) -> dict[str, Any]:
    """Read and parse a YAML file; raises :class:`PolicyError` naming the file."""
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"{file}: cannot read file: {exc.strerror or exc}") from None
    return parse_document(data, str(file))

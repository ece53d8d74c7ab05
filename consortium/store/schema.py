"""Which record field is which column: the run tables' columns, derived from the records.

The frozen records (:mod:`consortium.store.records`) are the one list of the columns of the
``runs``, ``rounds``, ``site_rounds``, ``comparisons`` and ``comparison_results`` tables: each
field is the column of the same name, except the few fields named here once, which are stored
encoded under another name (a site list or map as JSON), converted (a status or mode read back
as its enum and refused if unknown, a flag stored as ``0``/``1``) or not stored in the row at
all (a round's site figures, a comparison's cells: rows of their own tables). The ``INSERT`` and
``SELECT`` lists, the row conversions and the dashboard's frame columns all come from here;
``tests/consortium/store/test_schema.py`` checks that the ``CREATE TABLE`` statements
(:mod:`consortium.store.database`) and the migrations yield exactly these columns.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from typing import Any, TypeVar

from consortium.errors import StoreError
from consortium.store.records import (
    MODE_DEPLOYMENT,
    RUN_STATUSES,
    ComparisonCell,
    ComparisonRecord,
    RoundRecord,
    RoundStatus,
    RunMode,
    RunRecord,
    RunStatus,
    SiteRoundRecord,
)

_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True)
class Stored:
    """How one field is stored when it is not its plain value under its own name.

    ``write`` turns the field's value into the column's; ``read`` turns the column's value back,
    given where the row is (``"run X"``) for its error, and raises :class:`StoreError` for a
    value the field cannot hold.
    """

    column: str
    write: Callable[[Any], object]
    read: Callable[[object, str], Any]


@dataclass(frozen=True)
class Table:
    """One run table whose rows are one record type.

    Attributes
    ----------
    name : str
        The SQL table.
    record : type
        The frozen record a row is; its fields, in order, are the table's columns.
    keys : tuple of str
        Leading key columns that are not fields of the record (the parent's ``run_id`` and
        ``round`` of a round's site row): the caller gives their values.
    stored : mapping of str to Stored
        The fields stored otherwise than as their plain value under their own name.
    nested : tuple of str
        Fields that are not columns (rows of another table).
    """

    name: str
    record: type[Any]
    keys: tuple[str, ...] = ()
    stored: Mapping[str, Stored] = field(default_factory=dict)
    nested: tuple[str, ...] = ()

    @cached_property
    def fields(self) -> tuple[str, ...]:
        """The record's stored fields, in declaration order."""
        return tuple(f.name for f in fields(self.record) if f.name not in self.nested)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """The column of each stored field, in the same order (without :attr:`keys`)."""
        return tuple(self.stored[f].column if f in self.stored else f for f in self.fields)

    def insert_sql(self) -> str:
        """``INSERT INTO name(keys..., columns...) VALUES (?, ...)``."""
        names = (*self.keys, *self.columns)
        marks = ",".join("?" * len(names))
        return f"INSERT INTO {self.name}({', '.join(names)}) VALUES ({marks})"

    def select_list(self, present: Collection[str] | None = None) -> str:
        """The columns to ``SELECT``; one not ``present`` (an older store read-only) reads as
        ``NULL``."""
        return ", ".join(c if present is None or c in present else f"NULL AS {c}"
                         for c in self.columns)

    def values(self, record: object) -> tuple[object, ...]:
        """The record's column values, in :attr:`columns` order."""
        out = []
        for name in self.fields:
            value = getattr(record, name)
            out.append(self.stored[name].write(value) if name in self.stored else value)
        return tuple(out)

    def field_values(self, row: sqlite3.Row, where: str) -> dict[str, Any]:
        """A row's values by field name (without the nested fields); raises :class:`StoreError`
        naming ``where`` for a stored value its field cannot hold."""
        out = {}
        for name in self.fields:
            how = self.stored.get(name)
            out[name] = row[name] if how is None else how.read(row[how.column], where)
        return out


def _enum(kind: type[_E], allowed: tuple[_E, ...], *,
          default: _E | None = None) -> Callable[[object, str], _E]:
    """Read a status or mode as its enum; anything else is a :class:`StoreError`."""
    def read(value: object, where: str) -> _E:
        if default is not None and value is None:  # NULL in a store older than the column
            value = default
        if not isinstance(value, str) or value not in allowed:
            raise StoreError(f"{where}: unknown {kind.__name__} {value!r} in the run store "
                             f"(expected one of {', '.join(allowed)})")
        return kind(value)
    return read


def _json(unreadable: str, check: Callable[[object], bool], expected: str,
          convert: Callable[[Any], Any], *,
          optional: bool = False) -> Callable[[object, str], Any]:
    """Read a JSON column whose value must pass ``check`` (``unreadable`` names it in the
    error); with ``optional``, ``NULL`` reads as ``None``."""
    def read(text: object, where: str) -> Any:
        if text is None and optional:
            return None
        try:
            value = json.loads(text)  # type: ignore[arg-type]  # a wrong type is caught below
            if not check(value):
                raise ValueError(expected)
        except (TypeError, ValueError, RecursionError) as exc:
            raise StoreError(f"{where}: {unreadable}: {exc}") from None
        return convert(value)
    return read


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


def _str_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _as_is(value: object) -> object:
    return value


def _flag(value: object, where: str) -> bool:
    return bool(value)


def _json_list(value: tuple[str, ...]) -> str:
    return json.dumps(list(value))


def _json_map(value: dict[str, str] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


RUNS = Table(name="runs", record=RunRecord, stored={
    "status": Stored("status", _as_is, _enum(RunStatus, RUN_STATUSES)),
    "mode": Stored("mode", _as_is, _enum(RunMode, tuple(RunMode), default=MODE_DEPLOYMENT)),
    "sites": Stored("sites_json", _json_list,
                    _json("its stored site list is unreadable", _str_list,
                          "not a list of site ids", tuple)),
    "example_site_policies": Stored("example_site_policies", int, _flag),
    "data_fingerprints": Stored(
        "data_fingerprints_json",
        _json_map,
        _json("its stored data fingerprints are unreadable", _str_map,
              "not a map of site ids to fingerprints", dict, optional=True)),
})
ROUNDS = Table(name="rounds", record=RoundRecord, keys=("run_id",), nested=("sites",), stored={
    "status": Stored("status", _as_is, _enum(RoundStatus, tuple(RoundStatus))),
})
SITE_ROUNDS = Table(name="site_rounds", record=SiteRoundRecord, keys=("run_id", "round"),
                    stored={"trained": Stored("trained", int, _flag)})
COMPARISONS = Table(name="comparisons", record=ComparisonRecord, nested=("cells",), stored={
    "local_runs": Stored("local_runs_json", _json_map,
                         _json("its stored local runs are unreadable", _str_map,
                               "not a map of site ids to run ids", dict)),
})
COMPARISON_RESULTS = Table(name="comparison_results", record=ComparisonCell,
                           keys=("comparison_id",))

#: Every run table, for the schema agreement test.
TABLES = (RUNS, ROUNDS, SITE_ROUNDS, COMPARISONS, COMPARISON_RESULTS)

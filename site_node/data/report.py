"""What is wrong with a site's data: a report naming the column (or file), the rule and the first
offending rows or files.

A report never holds a cell value: a refusal travels to the coordinator in clear, so it says
*where* (data row numbers, counted from 1 after the header; file names; array indices) and
*which rule* (with the allowed values the task declares), never what a record holds. The site
admin looks the rows up in their own file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from site_node.errors import DataError

#: Rows or files named per problem; the rest are counted.
MAX_SHOWN = 5
#: Problems named in a refusal's one-line reason; the rest are counted.
MAX_IN_REASON = 3

# -- the rules ------------------------------------------------------------------------------
UNREADABLE = "unreadable"
MISSING_COLUMN = "missing column"
EXTRA_COLUMN = "extra column"
DUPLICATE_COLUMN = "duplicate column"
WRONG_TYPE = "wrong type"
NON_FINITE = "non-finite value"
OUT_OF_RANGE = "out of range"
MISSING_VALUE = "missing value"
UNKNOWN_LEVEL = "unknown level"
UNKNOWN_CLASS = "unknown class"
NOT_AN_IMAGE = "not an image"
IMAGE_SIZE = "wrong image size"
IMAGE_CHANNELS = "wrong channels"
TOO_FEW_ROWS = "too few rows"
CLASS_COUNT = "class count"
SINGLE_CLASS = "single class"
TOO_LARGE = "too large"
FEATURES_FILE = "features file"


@dataclass(frozen=True)
class Problem:
    """One rule broken in one place, with the first offending rows or files."""

    where: str
    rule: str
    detail: str
    at: tuple[str, ...] = ()
    count: int = 0

    def line(self) -> str:
        """``column lactate: out of range: outside [0, 20] mmol/l (row 3, row 8 and 4 more)``."""
        text = f"{self.where}: {self.rule}: {self.detail}"
        if self.at:
            more = self.count - len(self.at)
            text += f" ({', '.join(self.at)}{f' and {more} more' if more > 0 else ''})"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"where": self.where, "rule": self.rule, "detail": self.detail,
                "at": list(self.at), "count": self.count}


@dataclass(frozen=True)
class DataReport:
    """Every problem found in one data source (empty: the data fit the task)."""

    source: str
    task: str
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the data fit the task."""
        return not self.problems

    def lines(self) -> list[str]:
        """One line per problem."""
        return [p.line() for p in self.problems]

    def reason(self) -> str:
        """One line for a refusal: the file's name (not its path), the first problems, and how
        many more there are."""
        shown = "; ".join(self.lines()[:MAX_IN_REASON])
        more = len(self.problems) - MAX_IN_REASON
        return (f"{Path(self.source).name}: the data do not fit task {self.task}: {shown}"
                + (f"; and {more} more problem(s)" if more > 0 else ""))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"source": self.source, "task": self.task, "ok": self.ok,
                "problems": [p.as_dict() for p in self.problems]}


class DataRefused(DataError):
    """A site's data do not fit the task; :attr:`report` says where and why."""

    def __init__(self, report: DataReport) -> None:
        super().__init__(report.reason())
        self.report = report


@dataclass
class Findings:
    """Collects problems while data are read: one :class:`Problem` per (where, rule, detail)."""

    source: str
    task: str
    _at: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    _count: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def add(self, where: str, rule: str, detail: str, at: str | None = None) -> None:
        """Record one offence (``at``: the row, file or index where it happened)."""
        key = (where, rule, detail)
        shown = self._at.setdefault(key, [])
        self._count[key] = self._count.get(key, 0) + 1
        if at is not None and len(shown) < MAX_SHOWN:
            shown.append(at)

    def merge(self, other: Findings) -> None:
        """Add ``other``'s problems after this one's (rows named up to the same limit)."""
        for key, shown in other._at.items():
            mine = self._at.setdefault(key, [])
            mine.extend(shown[: MAX_SHOWN - len(mine)])
            self._count[key] = self._count.get(key, 0) + other._count[key]

    def __bool__(self) -> bool:
        return bool(self._count)

    def report(self) -> DataReport:
        """The problems found so far, in the order they were first seen."""
        problems = tuple(Problem(w, r, d, tuple(self._at[(w, r, d)]), self._count[(w, r, d)])
                         for (w, r, d) in self._at)
        return DataReport(self.source, self.task, problems)

    def refuse_if_any(self) -> None:
        """Raise :class:`DataRefused` if any problem was found."""
        if self:
            raise DataRefused(self.report())

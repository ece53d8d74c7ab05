"""A column's cells judged one rule at a time: each cell's value, missing mark or problem.

A column's rule is a ``judge``: a pure function from one cell to its :data:`Outcome`. Cells are
judged in row order, so each problem names its first rows in the order they occur. A chunk's
cells that are all text or None (a CSV's) take :func:`judge_texts`: each distinct cell is judged
once and only the rows with a problem are visited (a column repeats its values: ages, levels,
spellings); other cells (a Parquet file's numbers, booleans, nested values) take
:func:`judge_each`, cell by cell. Both give the same values, marks and problems.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from site_node.data.report import Findings


def _row(i: int) -> str:
    return f"row {i + 1}"


#: What one cell means in its column: a value (a scaled number, a level's index, 0/1), None for
#: missing, or the (rule, detail) of the problem it is.
Outcome = float | tuple[str, str] | None


def judge_each(cells: Sequence[object], judge: Callable[[object], Outcome], where: str,
               start: int, findings: Findings, missing: np.ndarray) -> np.ndarray:
    """Each cell's value (-1 where it has none), marking missing cells and recording problems
    in row order. A text cell is judged once per chunk (a column repeats its values)."""
    values = np.full(len(cells), -1.0)
    seen: dict[str, Outcome] = {}
    for i, cell in enumerate(cells):
        if isinstance(cell, str):
            if cell in seen:
                got = seen[cell]
            else:
                got = seen[cell] = judge(cell)
        else:
            got = judge(cell)
        if got is None:
            missing[i] = True
        elif isinstance(got, tuple):
            findings.add(where, got[0], got[1], _row(start + i))
        else:
            values[i] = got
    return values


def judge_texts(cells: Sequence[object], judge: Callable[[object], Outcome], where: str,
                start: int, findings: Findings, missing: np.ndarray) -> np.ndarray | None:
    """:func:`judge_each` with numpy for cells that are all text or None (a CSV's): each
    distinct cell is judged once, and only the rows with a problem are visited (in row order).
    None if a cell is of another kind (then equal values of different types, ``True`` and
    ``1``, must not share a judgement)."""
    try:
        distinct = dict.fromkeys(cells)
    except TypeError:  # an unhashable cell (a Parquet list or map)
        return None
    if not all(type(c) is str or c is None for c in distinct):
        return None
    lookup = {cell: k for k, cell in enumerate(distinct)}
    codes = np.fromiter(map(lookup.__getitem__, cells), dtype=np.int64, count=len(cells))
    outcomes = [judge(c) for c in distinct]
    absent = np.array([o is None for o in outcomes] + [False])[codes]
    wrong = np.array([isinstance(o, tuple) for o in outcomes] + [False])[codes]
    values = np.array([-1.0 if o is None or isinstance(o, tuple) else float(o)
                       for o in outcomes] + [-1.0])[codes]
    missing |= absent
    for i in np.flatnonzero(wrong).tolist():
        got = outcomes[int(codes[i])]
        assert isinstance(got, tuple)
        findings.add(where, got[0], got[1], _row(start + i))
    return values


def judge_all(cells: Sequence[object], judge: Callable[[object], Outcome], where: str,
              start: int, findings: Findings, missing: np.ndarray) -> np.ndarray:
    """Each cell's value (-1 where it has none), marking missing cells and recording problems
    in row order: :func:`judge_texts` where it applies, else :func:`judge_each`."""
    values = judge_texts(cells, judge, where, start, findings, missing)
    if values is None:
        values = judge_each(cells, judge, where, start, findings, missing)
    return values

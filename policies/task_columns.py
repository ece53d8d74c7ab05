"""The feature columns of a tabular task: their types, allowed values and missing-value rules.

Every column a site's file must hold is declared with its type: ``numeric`` (a unit and an
allowed range ``[lo, hi]``), ``categorical`` (its levels) or ``boolean`` (the spellings of true
and false). How a missing cell is handled is declared per column too: which cell values mean
missing, whether 0 means missing (``zero_is_missing``, numeric only), the value it is imputed
with, and whether a missing-value indicator feature is added.

Preprocessing is fixed by these declarations, never by a site's data: a numeric value is scaled
from its declared range to [-1, 1], a missing value is replaced by the declared imputation
value, a categorical value is one-hot encoded over the declared levels. No statistic of a
site's records shapes training outside the DP accounting.
"""

from __future__ import annotations

import math
import sys
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from policies.task_numbers import is_number

Number = StrictFloat | StrictInt
#: A cell value that means "missing", as written in a file (compared after stripping spaces).
MissingSpelling = Annotated[StrictStr, Field(max_length=64)]
ColumnName = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Level = Annotated[StrictStr, Field(min_length=1, max_length=128)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _unique(values: tuple[str, ...], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what}: {value!r} is listed twice")
        seen.add(value)


class _Missing(_Frozen):
    values: tuple[MissingSpelling, ...] = Field(
        ("",), max_length=32, description="Cell values that mean missing (e.g. '' or '?').")
    indicator: StrictBool = Field(
        False, description="Add a 0/1 feature that says the value was missing.")

    @model_validator(mode="after")
    def _distinct(self) -> _Missing:
        _unique(tuple(v.strip() for v in self.values), "missing.values")
        return self


class NumericMissing(_Missing):
    """Missing values of a numeric column and the fixed value that replaces them."""

    zero_is_missing: StrictBool = Field(
        False, description="A recorded 0 means missing (e.g. an unmeasured cholesterol).")
    impute: Number = Field(description="The value a missing cell is replaced with.")


class CategoricalMissing(_Missing):
    """Missing values of a categorical column: imputed with a level, or with no level."""

    impute: Level | None = Field(
        None, description="The level a missing cell takes; null: no level (all-zero one-hot).")


class BooleanMissing(_Missing):
    """Missing values of a boolean column and the fixed value that replaces them."""

    impute: StrictBool = Field(description="The value a missing cell is replaced with.")


class NumericColumn(_Frozen):
    """A number with a unit and an allowed range; its feature is
    ``gain · (value − center) / (hi − lo)``, all declared (by default the range maps to
    [-1, 1])."""

    name: ColumnName
    type: Literal["numeric"]
    unit: StrictStr = Field(max_length=64, description="Unit, for reviewers ('' if none).")
    range: tuple[Number, Number] = Field(description="Allowed values [lo, hi], lo < hi.")
    center: Number | None = Field(
        None, description="The value that maps to 0 (default: the middle of the range).")
    gain: Number = Field(2.0, gt=0, le=1000, description="Feature = gain·(value−center)/(hi−lo).")
    missing: NumericMissing | None = Field(
        None, description="How missing values are handled (none: a missing cell is an error).")

    @model_validator(mode="after")
    def _consistent(self) -> NumericColumn:
        lo, hi = self.range
        if not lo < hi:
            raise ValueError(f"range: lo ({lo}) must be below hi ({hi})")
        if self.center is not None and not lo <= self.center <= hi:
            raise ValueError(f"center ({self.center}) is outside the range [{lo}, {hi}]")
        if self.missing is not None:
            if not lo <= self.missing.impute <= hi:
                raise ValueError(f"missing.impute ({self.missing.impute}) is outside the range "
                                 f"[{lo}, {hi}]")
            if self.missing.zero_is_missing and lo <= 0 <= hi:
                raise ValueError(f"missing.zero_is_missing: 0 is inside the range [{lo}, {hi}], "
                                 "so a recorded 0 cannot mean missing")
            for spelling in self.missing.values:
                if is_number(spelling):
                    raise ValueError(f"missing.values: {spelling!r} is a number, not a missing "
                                     "marker")
        problem = self._scaling_problem()
        if problem is not None:
            raise ValueError(problem)
        return self

    def _scaling_problem(self) -> str | None:
        """Why the scaling of some allowed value (or the imputation value) is not a finite
        float, naming the field; None if every value in the range scales to a finite feature.

        Each step of :meth:`scale` is monotone in the value, so finite results and steps at
        both ends of the range mean finite results for every value between them."""
        lo, hi = self.range
        formula = "gain·(value−center)/(hi−lo)"
        declared = [("range", lo), ("range", hi), ("center", self.center)]
        if self.missing is not None:
            declared.append(("missing.impute", self.missing.impute))
        for field, number in declared:
            if number is not None and not _fits_float(number):
                return f"{field}: {_shown(number)} is too large for a float"
        try:
            width = float(hi - lo)
            center = float((lo + hi) / 2 if self.center is None else self.center)
        except OverflowError:
            width = center = math.inf
        if not math.isfinite(width):
            return (f"range: [{lo:g}, {hi:g}] is too wide: hi−lo overflows a float, so "
                    f"{formula} is not finite")
        if width < sys.float_info.min:
            return (f"range: [{lo:g}, {hi:g}] is too narrow: hi−lo is below the smallest "
                    f"normal float, so {formula} loses its precision")
        if not math.isfinite(center):
            field = "range" if self.center is None else "center"
            return f"{field}: the center of {formula} overflows a float"
        ends = [("range", lo), ("range", hi)]
        if self.missing is not None:
            ends.append(("missing.impute", self.missing.impute))
        for field, value in ends:
            try:
                step = float(self.gain) * (float(value) - center)
            except OverflowError:
                step = math.inf
            if not math.isfinite(step) or not math.isfinite(self.scale(float(value))):
                culprit = "gain" if math.isfinite(float(value) - center) else field
                return (f"{culprit}: {formula} of {value:g} overflows a float (gain "
                        f"{self.gain:g}, center {center:g}, range [{lo:g}, {hi:g}])")
        return None

    def scale(self, value: float) -> float:
        """The fixed scaling of a value: ``gain · (value − center) / (hi − lo)``."""
        lo, hi = self.range
        center = (lo + hi) / 2 if self.center is None else self.center
        return float(self.gain) * (value - center) / (hi - lo)


class CategoricalColumn(_Frozen):
    """One of a fixed list of levels; one-hot encoded over them."""

    name: ColumnName
    type: Literal["categorical"]
    levels: tuple[Level, ...] = Field(min_length=1, max_length=256)
    missing: CategoricalMissing | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalColumn:
        _unique(self.levels, "levels")
        if self.missing is not None:
            if self.missing.impute is not None and self.missing.impute not in self.levels:
                raise ValueError(f"missing.impute {self.missing.impute!r} is not one of the "
                                 "levels")
            clash = [v for v in self.missing.values if v.strip() in self.levels]
            if clash:
                raise ValueError(f"missing.values: {clash[0]!r} is also a level")
        return self


class BooleanColumn(_Frozen):
    """True or false, each with the spellings a file may use (e.g. ``TRUE``, ``Male``)."""

    name: ColumnName
    type: Literal["boolean"]
    true_values: tuple[Level, ...] = Field(min_length=1, max_length=16,
                                           description="Spellings of true.")
    false_values: tuple[Level, ...] = Field(min_length=1, max_length=16,
                                            description="Spellings of false.")
    missing: BooleanMissing | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BooleanColumn:
        _unique(self.true_values + self.false_values, "true/false spellings")
        if self.missing is not None:
            spellings = self.true_values + self.false_values
            clash = [v for v in self.missing.values if v.strip() in spellings]
            if clash:
                raise ValueError(f"missing.values: {clash[0]!r} is also a spelling of true or "
                                 "false")
        return self


def _fits_float(number: float) -> bool:
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _shown(number: float) -> str:
    text = repr(number)
    return text if len(text) <= 24 else f"{text[:12]}…({len(text)} digits)"


Column = Annotated[NumericColumn | CategoricalColumn | BooleanColumn,
                   Field(discriminator="type")]
COLUMN_TYPES = ("numeric", "categorical", "boolean")


def column_features(column: NumericColumn | CategoricalColumn | BooleanColumn
                    ) -> tuple[str, ...]:
    """The model features one column produces, in order (its indicator last)."""
    if isinstance(column, CategoricalColumn):
        names = tuple(f"{column.name}={level}" for level in column.levels)
    else:
        names = (column.name,)
    if column.missing is not None and column.missing.indicator:
        names += (f"{column.name}_missing",)
    return names

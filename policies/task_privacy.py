"""The task's privacy unit: what one ε protects.

``record`` (the default, stated explicitly in a task file) protects one record: a patient with
``k`` records is protected only at about ``k·ε`` (group privacy). ``patient`` protects a
patient: every site samples patients (Poisson, rate q of the policy), clips the combined
gradient of each sampled patient's records and calibrates the noise to that clipping, so the
accountant's ε is about patients.

The patient identifier is read at the site only, to group its records; it never leaves the site
and never enters the model. Where it comes from depends on the data:

- ``patient_column``: a column of the table (tabular tasks);
- ``patient_file_pattern``: a regular expression whose named group ``patient`` is matched
  against each image's file name (image folders);
- ``patient_index``: a CSV index file in the root of the site's image folder (beside the class
  folders), one row per image: the image (its path under the folder, ``class/file.png``, or its
  bare file name where no two images share it) and its patient id (image folders);
- ``patient_array``: an array of the ``.npz`` file holding one patient id per image, per split
  (``train_<name>``, ``test_<name>``, as MedMNIST names its arrays).

A task whose unit is ``record`` may still name the identifier, for reporting only:
``site-node check-data`` then states the ε the patient with the most records really gets.
``max_records_per_patient`` caps each patient's records (beyond the cap, a patient's later
records in file order are dropped: a fixed rule that looks at no value of any record).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from policies.task_columns import ColumnName

UNITS = ("record", "patient")
#: The named group of ``patient_file_pattern`` that holds the patient id.
PATIENT_GROUP = "patient"


class PatientIndexSpec(BaseModel):
    """An image folder's index file: which column names each image and which its patient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: StrictStr = Field(
        ..., pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.csv$",
        description="The index's file name (a .csv in the root of the site's image folder).")
    image_column: ColumnName = Field(
        "image", description="The column naming each image: class/file.png, or file.png.")
    patient_column: ColumnName = Field(
        "patient", description="The column holding each image's patient id.")

    @model_validator(mode="after")
    def _distinct(self) -> PatientIndexSpec:
        if self.image_column == self.patient_column:
            raise ValueError("patient_index: image_column and patient_column are the same "
                             f"column {self.image_column!r}")
        return self


class PrivacyUnitSpec(BaseModel):
    """The privacy unit of a task and where each record's patient id comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    unit: Literal["record", "patient"] = Field(
        "record", description="What one ε protects: one record, or one patient with all "
        "their records.")
    patient_column: ColumnName | None = Field(
        None, description="Tabular: the column that holds each record's patient id.")
    patient_file_pattern: StrictStr | None = Field(
        None, min_length=1, max_length=500,
        description="Image folders: a regular expression with a named group 'patient', "
        "searched in each file name.")
    patient_index: PatientIndexSpec | None = Field(
        None, description="Image folders: an index file of each image's patient id.")
    patient_array: StrictStr | None = Field(
        None, pattern=r"^[A-Za-z0-9_]{1,64}$",
        description="npz: the array name (train_<name>, test_<name>) of per-image patient ids.")
    max_records_per_patient: StrictInt | None = Field(
        None, ge=1, le=1_000_000,
        description="Records kept per patient; later ones (file order) are dropped.")
    patient_gradient: Literal["mean", "sum"] = Field(
        "mean", description="Patient unit: each sampled patient's one gradient is the mean "
        "or the sum of its records' gradients, then clipped.")

    @field_validator("patient_file_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if PATIENT_GROUP not in compiled.groupindex:
            raise ValueError(f"the pattern has no named group (?P<{PATIENT_GROUP}>...)")
        return value

    @property
    def sources(self) -> tuple[str, ...]:
        """The identifier sources the task names (field names)."""
        return tuple(n for n in ("patient_column", "patient_file_pattern", "patient_index",
                                 "patient_array")
                     if getattr(self, n) is not None)

    @property
    def has_patients(self) -> bool:
        """Whether the task names where each record's patient id comes from."""
        return bool(self.sources)

    def check(self, modality: str) -> None:
        """Raise ``ValueError`` unless the identifier fits the unit and the modality."""
        sources = self.sources
        if len(sources) > 1:
            raise ValueError(f"privacy_unit: name one patient identifier, not {sources}")
        allowed = ("patient_column",) if modality == "tabular" else (
            "patient_file_pattern", "patient_index", "patient_array")
        if sources and sources[0] not in allowed:
            raise ValueError(f"privacy_unit.{sources[0]}: a {modality} task names its "
                             f"patients with {' or '.join(allowed)}")
        if self.unit == "patient" and not sources:
            raise ValueError(f"privacy_unit: unit 'patient' needs a patient identifier "
                             f"({' or '.join(allowed)})")
        if self.max_records_per_patient is not None and not sources:
            raise ValueError("privacy_unit.max_records_per_patient: needs a patient "
                             "identifier to count records per patient")

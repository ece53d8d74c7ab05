"""What a site admin can send the coordinator about their data without exposing any record.

Counts only: rows, the train/test split, the class balance, each column's missing rate (tabular),
the image size (images), the privacy unit and, when the task names patients, how many patients
the training split holds and the median and largest number of records per patient.
``site-node check-data`` prints it (``--json`` for a machine).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from site_node.data.patients import PatientStats


@dataclass(frozen=True)
class DataSummary:
    """Aggregate figures of a site's validated data."""

    source: str
    task: str
    task_sha256: str
    format: str
    rows: int
    train: int
    test: int
    split: str
    classes: dict[str, dict[str, int]] = field(default_factory=dict)
    missing_rates: dict[str, float] = field(default_factory=dict)
    image_size: str | None = None
    privacy_unit: str = "record"
    patients: PatientStats | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def lines(self) -> list[str]:
        """The summary as text lines."""
        out = [f"data      {self.source} ({self.format})",
               f"task      {self.task} (sha256 {self.task_sha256[:16]}…)",
               f"rows      {self.rows}: {self.train} train, {self.test} test ({self.split})"]
        if self.image_size:
            out.append(f"images    {self.image_size}")
        out.append("classes   " + ", ".join(
            f"{name}: {c['train']} train / {c['test']} test" for name, c in self.classes.items()))
        if self.missing_rates:
            shown = ", ".join(f"{col} {rate:.1%}" for col, rate in self.missing_rates.items()
                              if rate > 0)
            out.append(f"missing   {shown or 'none'}")
        out.append(f"unit      ε protects one {self.privacy_unit}")
        p = self.patients
        if p is not None:
            line = (f"patients  {p.patients} in training; records per patient: median "
                    f"{p.median_records:g}, largest {p.max_records}")
            if p.max_records_before_cap is not None:
                line += (f" (cap; largest before it {p.max_records_before_cap}, "
                         f"{p.dropped_by_cap} record(s) dropped)")
            out.append(line)
        return out

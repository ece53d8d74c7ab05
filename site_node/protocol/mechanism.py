"""The DP mechanism of one round of a site's training, as a frozen value object.

One round of DP-SGD is a Poisson-subsampled Gaussian mechanism run ``steps`` times. The same
object is what the site's ledger stores, what the accountant composes, what a receipt states
and what the run store records, so that anyone can recompute ε from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ACCOUNTANTS = ("rdp", "prv")
#: What one ε protects: a record, or a patient with all their records (the task's privacy unit,
#: :mod:`policies.task_privacy`). A record-level and a patient-level ε are never composed.
UNITS = ("record", "patient")


@dataclass(frozen=True, kw_only=True)
class Mechanism:
    """DP-SGD parameters of one round of local training.

    Attributes
    ----------
    noise_multiplier : float
        Noise standard deviation divided by the clipping norm.
    sample_rate : float
        Poisson sampling probability of each record per step.
    steps : int
        Number of noisy gradient steps in the round.
    max_grad_norm : float
        Per-sample clipping norm.
    accountant : str
        Name of the accountant the site composes with (``"rdp"`` or ``"prv"``).
    unit : str
        The privacy unit: ``"record"`` (``sample_rate`` samples records and each record's
        gradient is clipped) or ``"patient"`` (it samples patients and each sampled patient's
        combined gradient is clipped), so ε is about that unit.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str
    unit: str = "record"

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "sample_rate", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be finite and > 0, got {value}")
        if self.sample_rate > 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")

    @property
    def event(self) -> tuple[float, float, int]:
        """``(noise_multiplier, sample_rate, steps)``, as accountants take it."""
        return (float(self.noise_multiplier), float(self.sample_rate), int(self.steps))

"""What a record-level guarantee gives a patient with ``k`` records (group privacy).

A mechanism that is (ε', δ')-DP for one record is, for a group of ``k`` records (one patient's),
(k·ε', δ'·Σ_{i<k} e^{i·ε'})-DP: chain the record-level inequality over the ``k`` records that
differ, ``P[M(D_0) ∈ S] ≤ e^{ε'} P[M(D_1) ∈ S] + δ' ≤ … ≤ e^{kε'} P[M(D_k) ∈ S] +
δ'·(1 + e^{ε'} + … + e^{(k−1)ε'})`` (Dwork & Roth 2014, Thm 2.2 for δ = 0; Vadhan 2017,
Lemma 2.2, whose k·e^{(k−1)ε'}·δ' is never smaller than the sum used here).

:func:`group_bound` states it at the δ the site reports: it tries record-level δ' from δ down to
δ·10⁻²⁰, takes each δ' 's ε' from the site's accountant (the same composition the ledger uses),
and keeps the smallest k·ε' whose group δ is at most δ. It is an upper bound on what the
patient gets (the true figure can be lower), and it is what a record-level ε hides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from site_node.privacy import accountant
from site_node.protocol.mechanism import Mechanism

#: Record-level δ' tried: δ·10^(−j/4) for j = 0 … 80.
_DELTA_STEPS = 81


def group_delta(*, epsilon: float, delta: float, k: int) -> float:
    """δ of a group of ``k`` under an (ε, δ) record-level guarantee: δ·Σ_{i<k} e^{iε}."""
    if k < 1:
        raise ValueError(f"a group has at least one record, got k = {k}")
    if (k - 1) * epsilon > 700:  # e^700 is near float's limit: no usable δ
        return math.inf
    return delta * sum(math.exp(i * epsilon) for i in range(k))


@dataclass(frozen=True)
class GroupBound:
    """What a patient with ``k`` records gets from a record-level run: (epsilon, delta)-DP."""

    k: int
    epsilon: float
    delta: float
    record_epsilon: float

    def __str__(self) -> str:
        if math.isinf(self.epsilon):
            return (f"a patient with {self.k} records: no finite ε at δ = {self.delta:g} "
                    "from the record-level guarantee")
        return (f"a patient with {self.k} records gets ε ≤ {self.epsilon:.3f} at δ = "
                f"{self.delta:g} (group privacy over the record-level ε = "
                f"{self.record_epsilon:.3f})")


def group_bound(events: Sequence[Mechanism], *, k: int, delta: float, accountant_name: str
                ) -> GroupBound:
    """The smallest ε (over record-level δ') a patient with ``k`` records is guaranteed at
    ``delta`` after ``events`` of record-level DP-SGD."""
    record = accountant.epsilon(events, delta=delta, accountant=accountant_name)
    best = math.inf
    for j in range(_DELTA_STEPS):
        small = delta * 10 ** (-j / 4)
        eps = accountant.epsilon(events, delta=small, accountant=accountant_name)
        if k * eps < best and group_delta(epsilon=eps, delta=small, k=k) <= delta:
            best = k * eps
    return GroupBound(k=k, epsilon=best, delta=delta, record_epsilon=record)

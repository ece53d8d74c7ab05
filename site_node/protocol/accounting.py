"""The one accountant interface, as Opacus' ``IAccountant``: implementations compose rounds of
DP-SGD and state ε, and are created by name.

A history is a sequence of ``(noise_multiplier, sample_rate, steps)`` rounds, composed in
order. The site's implementations (:mod:`site_node.privacy.accountant`) use Opacus; the
consortium's auditor (:mod:`consortium.audit.accountant`) implements the same interface with
Google's ``dp_accounting``, an independent recomputation of what the site's Opacus claimed. This
module imports neither.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

#: One round of DP-SGD: (noise multiplier, sample rate, steps).
Round = tuple[float, float, int]


class Accountant(ABC):
    """Composes a history of DP-SGD rounds and states ε at a δ.

    Subclasses name the accountant they are (``name``: ``"rdp"`` or ``"prv"``, the names a
    receipt and a policy use) and implement :meth:`epsilon`; :meth:`cumulative_epsilons` may be
    overridden where the ε after every round is cheaper than one call per prefix.
    """

    name: ClassVar[str]

    @abstractmethod
    def epsilon(self, history: Sequence[Round], delta: float) -> float:
        """ε at ``delta`` after every round of ``history`` (0.0 for none)."""

    def cumulative_epsilons(self, history: Sequence[Round], delta: float) -> list[float]:
        """ε at ``delta`` after each round of ``history``."""
        return [self.epsilon(history[: i + 1], delta) for i in range(len(history))]


def registry(*classes: type[Accountant]) -> dict[str, type[Accountant]]:
    """Implementations by name."""
    return {c.name: c for c in classes}

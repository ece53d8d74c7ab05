"""What ``site-node check-data`` says about the privacy unit: what one ε protects here.

With a patient-level task, ε protects each patient with all their (capped) records. With a
record-level task that names its patients (for reporting only), it states what the patient with
the most records (and the median patient) really gets from a record-level run under the policy:
the group-privacy bound of :mod:`site_node.privacy.group`. Without ``--policy`` it states the
rule in terms of the run's ε.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from policies.loader import load_policy
from policies.task_loader import LoadedTask
from site_node.data import SiteData
from site_node.privacy import accountant
from site_node.privacy.group import group_bound
from site_node.privacy.run_mechanism import round_mechanism


def unit_statement(loaded: LoadedTask, site: SiteData, policy: Path | None
                   ) -> tuple[list[str], dict[str, Any]]:
    """Text lines and JSON of what one ε protects for these data (under ``policy``, if given)."""
    unit = loaded.task.privacy_unit.unit
    stats = site.summary.patients
    out: dict[str, Any] = {"unit": unit}
    if policy is None:
        if unit == "record" and stats is not None:
            k = stats.max_records
            out["largest_patient_rule"] = f"k={k}: (k·ε, δ·Σ_(i<k) e^(i·ε))"
            return [f"privacy   record-level: a run's (ε, δ) protects one record; the patient "
                    f"with the most records (k = {k}) gets only (k·ε, δ·Σ_(i<k) e^(i·ε)) "
                    "(group privacy; give --policy for the figure)"], out
        return [f"privacy   {unit}-level: a run's ε protects one {unit}"], out
    p = load_policy(policy).policy
    mech = round_mechanism(p, p.rounds, unit=unit)
    events = [mech] * p.rounds
    eps = accountant.epsilon(events, delta=p.delta, accountant=mech.accountant)
    out |= {"run_epsilon": eps, "delta": p.delta, "rounds": p.rounds}
    if unit == "patient":
        cap = loaded.task.privacy_unit.max_records_per_patient
        kept = f"at most {cap}" if cap is not None else "all"
        return [f"privacy   patient-level: a run of {p.rounds} rounds under {policy} gives "
                f"ε = {eps:.3f} at δ = {p.delta:g} to each patient ({kept} of their records)"
                ], out
    lines = [f"privacy   record-level: a run of {p.rounds} rounds under {policy} gives "
             f"ε = {eps:.3f} at δ = {p.delta:g} to each record"]
    if stats is not None:
        for name, k in (("largest", stats.max_records),
                        ("median", math.ceil(stats.median_records))):
            bound = group_bound(events, k=k, delta=p.delta, accountant_name=mech.accountant)
            out[f"{name}_patient"] = {"records": k, "epsilon": bound.epsilon}
            lines.append(f"          the {name} patient: {bound}")
    return lines, out

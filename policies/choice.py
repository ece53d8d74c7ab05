"""Training settings chosen from public information, for a policy of privacy terms only.

A consortium policy may state only the privacy terms (:class:`policies.schema.PrivacyTerms`: δ,
the ε ceilings, the members, ``min_sites``; optionally the rounds and SecAgg+). :func:`choose`
then completes it into a :class:`~policies.schema.ConsortiumPolicy` from **public information
only**: the task file (its model family), the number of training examples of each site (which
every privacy receipt discloses anyway), the ε ceiling, δ and the rounds. It reads no record,
so the choice costs no ε; the record it returns says so, with its inputs, so that anyone (a
site, an auditor) can recompute it with the same function.

The recipe, from what DP-SGD is known to need on small data:

- **Large batches** (Sander et al. 2023, *TAN without a burn*): at a fixed ε the noise that
  reaches the averaged gradient is σ/B. Each candidate sampling rate q (1 = full batch) and
  total number of noisy steps T is calibrated with the real accountant (``noise_for``: σ for ε
  equal to the ceiling), with B = q·n of the smallest site. Of the candidates whose σ/B lets
  the model family take its full step (below), the one with the most steps wins, then the best
  signal-to-noise ratio of the summed updates, √T·B/σ; if none is that quiet, the best √T·B/σ.
- **Clipping and learning rate from the noise-to-batch ratio:** a small clipping norm C (every
  per-sample gradient is clipped: normalised SGD, De et al. 2022), and a learning rate η whose
  step η·C is at most the model family's step and at most :data:`NOISE_PER_STEP` · B/σ, so that
  one step's noise stays small.
- The noise multiplier itself is left to the plan: ``target_epsilon`` is the ceiling, and the
  plan derives σ with the accountant for the planned rounds (ε never above the ceiling).

A task with fixed features (``features:``, :mod:`policies.task_features`) trains a logistic or
MLP head on them: the same recipe, by the head's family (the record names the features' kind
and dimension). The CNN of image tasks already uses GroupNorm (:mod:`site_node.model`), and
keeps a grid of where its features are for its last layer (``head_grid``). Augmentation
multiplicity is the task's to declare, since which transforms keep a label is domain knowledge
(:mod:`policies.task_augmentation`); it changes the compute, not the mechanism, so the choice is
the same with or without it. Not adopted: parameter averaging. On the bench
(``bench/choice/averaging_bench.py``) an exponential average of the global models over rounds
cost 0.03–0.15 accuracy at ε = 1 on the image task, gained up to 0.04 at ε = 3 and changed the
tabular task by at most 0.01. Not done: choosing the model's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from policies import canonical
from policies.errors import PolicyError
from policies.schema import ConsortiumPolicy, PrivacyTerms, SecAggPolicy
from policies.task import AnyTask

#: Version of the recipe: part of the record, so a changed recipe is a different choice.
RECIPE = "policies.choice/1"
DEFAULT_ROUNDS = 20
SAMPLE_RATES = (1.0, 0.5, 0.25)
TOTAL_STEPS = (50, 100, 200)
CLIP = 0.1
#: Largest step η·C per model family (the heart-disease search's winner for logistic: 3 × 0.1).
STEP_SIZE = {"logistic": 0.3, "mlp": 0.2, "cnn": 0.1}
#: Largest per-coordinate noise of one step, η·σ·C/B.
NOISE_PER_STEP = 0.15
ACCOUNTANT = "rdp"

#: σ for (target ε, δ, sample rate, steps, accountant): the real accountant, given by the caller.
NoiseFor = Callable[..., float]


@dataclass(frozen=True)
class Choice:
    """The completed policy and the record of how it was chosen (canonical JSON)."""

    policy: ConsortiumPolicy
    record: dict[str, Any]

    @property
    def record_json(self) -> str:
        """The record as canonical JSON (stored with the run and signed in its run-start)."""
        return canonical.to_json(self.record)


def _candidates(n_min: int, rounds: int, terms: PrivacyTerms, noise_for: NoiseFor
                ) -> list[dict[str, Any]]:
    out = []
    for total in TOTAL_STEPS:
        per_round = max(1, round(total / rounds))
        steps = per_round * rounds
        for q in SAMPLE_RATES:
            sigma = noise_for(target_epsilon=float(terms.epsilon_ceiling), delta=terms.delta,
                              sample_rate=q, steps=steps, accountant=ACCOUNTANT)
            batch = q * n_min
            out.append({"sample_rate": q, "local_steps": per_round, "steps": steps,
                        "noise_multiplier": sigma, "expected_batch": batch,
                        "noise_to_batch": sigma / batch,
                        "score": math.sqrt(steps) * batch / sigma})
    return out


def _secagg(terms: PrivacyTerms, counts: Mapping[str, int]) -> SecAggPolicy:
    if terms.secagg is not None:
        return terms.secagg
    odd = terms.min_sites - (1 - terms.min_sites % 2)
    shares: int | float = odd if odd >= 3 else 1.0
    threshold: int | float = (odd + 1) // 2 if odd >= 3 else 1.0
    return SecAggPolicy(num_shares=shares, reconstruction_threshold=threshold, timeout_s=120,
                        max_weight=float(max(1000, *counts.values())))


def choose(terms: PrivacyTerms, task: AnyTask, train_counts: Mapping[str, int], *,
           task_sha256: str, noise_for: NoiseFor) -> Choice:
    """Complete ``terms`` for ``task`` and the member sites' training-example counts.

    Raises
    ------
    PolicyError
        If a member site's count is missing or not positive, or the completed policy is invalid.
    """
    missing = [s for s in terms.sites if train_counts.get(s, 0) < 1]
    if missing:
        raise PolicyError(f"choosing the training settings: no training examples known for "
                          f"site(s) {', '.join(missing)}")
    counts = {s: int(train_counts[s]) for s in terms.sites}
    rounds = terms.rounds or DEFAULT_ROUNDS
    n_min = min(counts.values())
    candidates = _candidates(n_min, rounds, terms, noise_for)
    family = task.model.family
    # Candidates quiet enough for the family's full step; of those the most steps (more
    # progress at the same ε), then the best signal-to-noise. Else the best signal-to-noise.
    quiet = [c for c in candidates if c["noise_to_batch"] <= NOISE_PER_STEP / STEP_SIZE[family]]
    best = (max(quiet, key=lambda c: (c["steps"], c["score"])) if quiet
            else max(candidates, key=lambda c: (c["score"], -c["steps"])))
    step = min(STEP_SIZE[family], NOISE_PER_STEP / best["noise_to_batch"])
    dp = {"target_epsilon": terms.epsilon_ceiling, "max_grad_norm": CLIP,
          "sample_rate": best["sample_rate"], "local_steps": best["local_steps"],
          "learning_rate": round(step / CLIP, 6), "accountant": ACCOUNTANT}
    data = terms.model_dump(mode="json") | {
        "rounds": rounds, "dp": dp, "secagg": _secagg(terms, counts).model_dump(mode="json")}
    try:
        policy = ConsortiumPolicy.model_validate(data)
    except ValueError as exc:
        raise PolicyError(f"choosing the training settings: {exc}") from None
    inputs: dict[str, Any] = {
        "task_sha256": task_sha256, "model_family": family, "train_counts": counts,
        "counted": "patients" if task.privacy_unit.unit == "patient" else "examples",
        "epsilon_ceiling": terms.epsilon_ceiling, "delta": terms.delta, "rounds": terms.rounds,
        "min_sites": terms.min_sites}
    features = getattr(task, "features", None)
    if features is not None:  # the head's recipe is the family's; its input is the features
        inputs["features"] = {"kind": features.kind,
                              "dim": math.prod(task.model_input_shape)}
    record = {
        "recipe": RECIPE, "epsilon_cost": 0.0,
        "source": "public information only: the task file, each site's number of training "
                  "examples (every receipt discloses it), the ε ceiling, δ and the rounds; no "
                  "record was read, so the choice costs 0 ε",
        "inputs": inputs,
        "candidates": candidates,
        "chosen": {"rounds": rounds, "dp": dp, "secagg": data["secagg"],
                   "noise_multiplier_estimate": best["noise_multiplier"]},
        "why": f"B = q × {n_min} (the smallest site's expected batch), σ for ε = "
               f"{terms.epsilon_ceiling} over the planned steps; the most steps with σ/B ≤ "
               f"{NOISE_PER_STEP}/{STEP_SIZE[family]} (else the largest √T·B/σ), then the "
               f"largest √T·B/σ; step η·C = min({STEP_SIZE[family]}, {NOISE_PER_STEP} × B/σ) = "
               f"{step:.4g}",
    }
    return Choice(policy=policy, record=record)

"""A policy of privacy terms only: the training settings are chosen from public information (the
task, the sites' numbers of training examples, the ε ceiling, δ, rounds) with the real
accountant; the choice is reproducible, costs 0 ε and never plans ε above the ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consortium.run.inputs import resolve_inputs
from consortium.run.plan import make_plan_from_policy
from policies.choice import Choice, choose
from policies.errors import PolicyError
from policies.example import load_example
from policies.loader import (
    LoadedPolicy,
    LoadedTerms,
    load_any_policy,
    load_policy,
    load_policy_document,
    policy_sha256,
)
from policies.schema import PrivacyTerms
from policies.task_loader import load_task
from site_node.data import load_site_data
from site_node.privacy.accountant import epsilon, noise_for_target

TERMS_FILE = Path(__file__).resolve().parents[3] / "policies" / "privacy-terms.yaml"
HEART = load_task(load_example("heart-disease").task)
COUNTS = {"site_a": 227, "site_b": 220, "site_c": 92}


def terms(**changes: object) -> PrivacyTerms:
    loaded = load_policy_document(TERMS_FILE)
    assert isinstance(loaded, LoadedTerms)
    return loaded.terms.model_copy(update=changes)


def chosen(t: PrivacyTerms | None = None, counts: dict[str, int] | None = None) -> Choice:
    return choose(t or terms(), HEART.task, counts or COUNTS, task_sha256=HEART.sha256,
                  noise_for=noise_for_target)


def test_a_terms_only_file_loads_as_terms_and_a_full_policy_is_unchanged() -> None:
    loaded = load_policy_document(TERMS_FILE)
    assert isinstance(loaded, LoadedTerms) and loaded.terms.rounds is None
    assert loaded.sha256 == policy_sha256(loaded.terms)
    assert isinstance(load_any_policy(TERMS_FILE), LoadedTerms)
    full = load_policy_document(None)
    assert not isinstance(full, LoadedTerms) and full.sha256 == load_policy().sha256


def test_load_policy_explains_where_terms_only_work() -> None:
    with pytest.raises(PolicyError, match=r"privacy-terms.yaml: this policy states only the "
                                          r"privacy terms .*--task FILE --data"):
        load_policy(TERMS_FILE)


def test_the_choice_costs_nothing_and_records_its_public_inputs() -> None:
    c = chosen()
    rec = c.record
    assert rec["epsilon_cost"] == 0.0 and "public information only" in rec["source"]
    assert rec["inputs"]["train_counts"] == COUNTS
    assert rec["inputs"]["task_sha256"] == HEART.sha256
    dp = c.policy.dp
    assert dp.target_epsilon == 1.0 and dp.noise_multiplier is None
    assert rec["chosen"]["dp"] == c.policy.dp.model_dump(mode="json", exclude_none=True)
    assert c.policy.rounds == 20 and c.policy.secagg.num_shares == 3
    assert c.policy.delta == 1e-5 and c.policy.sites == ("site_a", "site_b", "site_c")
    assert json.loads(c.record_json) == rec
    assert chosen().record_json == c.record_json  # reproducible by anyone with the inputs


def test_the_planned_run_never_passes_the_ceiling_under_the_real_accountant(tmp_path: Path
                                                                          ) -> None:
    for ceiling in (0.5, 1.0, 4.0):
        c = chosen(terms(epsilon_ceiling=ceiling))
        loaded = LoadedPolicy(policy=c.policy, source="chosen", sha256=policy_sha256(c.policy))
        plan = make_plan_from_policy(loaded, HEART, store_path=tmp_path / "runs.sqlite")
        eps = epsilon([plan.mechanism()] * plan.rounds, delta=c.policy.delta,
                      accountant=c.policy.dp.accountant)
        assert ceiling - 0.01 <= eps <= ceiling


def test_small_sites_get_full_batches_and_a_step_from_the_noise_to_batch_ratio() -> None:
    c = chosen()
    assert c.policy.dp.sample_rate == 1.0
    assert float(c.policy.dp.max_grad_norm) * float(c.policy.dp.learning_rate) <= 0.3 + 1e-9
    tiny = chosen(terms(epsilon_ceiling=0.5), {"site_a": 12, "site_b": 15, "site_c": 10})
    dp = tiny.policy.dp
    sigma_over_b = min(x["noise_to_batch"] for x in tiny.record["candidates"])
    assert float(dp.learning_rate) * float(dp.max_grad_norm) < 0.3  # noisy: a smaller step
    assert sigma_over_b > 0.5


def test_given_rounds_and_secagg_are_kept_and_a_missing_site_is_refused() -> None:
    base = load_policy().policy
    c = chosen(terms(rounds=7, secagg=base.secagg))
    assert c.policy.rounds == 7 and c.policy.secagg == base.secagg
    assert c.record["inputs"]["rounds"] == 7
    with pytest.raises(PolicyError, match=r"no training examples known for site.*site_c"):
        chosen(counts={"site_a": 10, "site_b": 10})


def test_a_local_run_under_terms_only_records_the_choice() -> None:
    ex = load_example("digits")
    data = [f"{s}={p}" for s, p in ex.data.items()]
    inputs = resolve_inputs(task=ex.task, data=data, policy=TERMS_FILE, rounds=3)
    assert inputs.choice_json is not None
    rec = json.loads(inputs.choice_json)
    task = load_task(ex.task)
    assert rec["inputs"]["train_counts"] == {
        s: load_site_data(task, p).num_train for s, p in ex.data.items()}
    assert inputs.policy.policy.rounds == 3 and inputs.policy.policy.sites == ex.sites
    assert "chosen from public information, 0 ε" in inputs.policy.source


def test_a_patient_level_task_counts_patients_not_records() -> None:
    """Its sampling rate is a rate of patients: the choice's batch is q × the smallest site's
    number of training patients, and the record says what was counted."""
    from consortium.run.choice import train_counts

    example = load_example("heart-visits")
    task = load_task(example.task)
    counts = train_counts(task, example.data)
    records = {s: load_site_data(task, p).num_train for s, p in example.data.items()}
    assert all(0 < counts[s] < records[s] for s in counts), (counts, records)
    chosen = choose(terms(sites=tuple(counts), min_sites=len(counts)), task.task, counts,
                    task_sha256=task.sha256, noise_for=noise_for_target)
    assert chosen.record["inputs"]["counted"] == "patients"
    assert chosen.record["inputs"]["train_counts"] == counts

"""Patient-level DP-SGD: a patient's records are sampled together and clipped together, and the
accountant is fed the patient rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.grad_sample import wrap_model
from opacus.optimizers import DPOptimizer
from torch import nn

from site_node.patient_sgd import (
    PatientIndex,
    PatientStep,
    combine_per_patient,
    sample_patients,
    train_patient_steps,
)

# 4 patients: 0 has 3 records, 1 has 1, 2 has 5, 3 has 1 (interleaved in file order).
PATIENTS = np.array([0, 1, 2, 0, 2, 2, 3, 0, 2, 2])


def test_a_batch_is_every_record_of_the_sampled_patients_and_nothing_else() -> None:
    index = PatientIndex.of(PATIENTS)
    assert index.num_patients == 4
    records, owner = index.batch(torch.tensor([0, 2]))
    assert sorted(records.tolist()) == [0, 2, 3, 4, 5, 7, 8, 9]
    for r, o in zip(records.tolist(), owner.tolist(), strict=True):
        assert PATIENTS[r] == [0, 2][o]
    empty, none = index.batch(torch.tensor([], dtype=torch.int64))
    assert len(empty) == 0 and len(none) == 0


def test_patients_are_poisson_sampled_at_the_rate_with_all_their_records() -> None:
    index = PatientIndex.of(PATIENTS)
    gen = torch.Generator().manual_seed(1)
    drawn = np.zeros(4)
    trials = 4000
    for _ in range(trials):
        sampled = sample_patients(4, 0.3, gen)
        records, _ = index.batch(sampled)
        present = set(PATIENTS[records.numpy()].tolist())
        assert present == set(sampled.tolist())
        for p in present:  # a sampled patient comes with every one of its records
            assert (PATIENTS[records.numpy()] == p).sum() == (p == PATIENTS).sum()
        drawn[sampled.numpy()] += 1
    # each patient, whatever its number of records, is drawn at the patient rate
    assert np.all(np.abs(drawn / trials - 0.3) < 0.03)


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


@pytest.mark.parametrize("how", ["sum", "mean"])
def test_one_gradient_per_patient_the_sum_or_mean_of_its_records(how: str) -> None:
    model = _linear()
    x = torch.randn(len(PATIENTS), 3)
    y = torch.randint(0, 2, (len(PATIENTS),))
    gsm = wrap_model(model, grad_sample_mode="hooks", loss_reduction="sum")
    nn.CrossEntropyLoss(reduction="sum")(gsm(x), y).backward()
    params = [p for p in gsm.parameters() if p.requires_grad]
    per_record = [p.grad_sample.clone() for p in params]  # type: ignore[attr-defined]
    owner = torch.from_numpy(PATIENTS)
    combine_per_patient(params, owner, 4, how)
    for p, gs in zip(params, per_record, strict=True):
        assert p.grad_sample.shape == (4, *p.shape)  # type: ignore[attr-defined]
        for j in range(4):
            rows = gs[owner == j]
            want = rows.sum(0) / (len(rows) if how == "mean" else 1)
            torch.testing.assert_close(p.grad_sample[j], want)  # type: ignore[attr-defined]


def test_a_patient_with_many_records_is_clipped_once_to_the_clipping_norm() -> None:
    """Ten identical records of one patient add no more than the clipping norm (a record-level
    clip would let them add ten times it)."""
    model = _linear()
    x = torch.cat([torch.full((10, 3), 5.0), torch.full((1, 3), -5.0)])
    y = torch.tensor([0] * 10 + [1])
    owner = torch.tensor([0] * 10 + [1])
    gsm = wrap_model(model, grad_sample_mode="hooks", loss_reduction="sum")
    params = [p for p in gsm.parameters() if p.requires_grad]
    c = 0.01
    opt = DPOptimizer(torch.optim.SGD(params, lr=1.0), noise_multiplier=0.0, max_grad_norm=c,
                      expected_batch_size=1, loss_reduction="mean")
    nn.CrossEntropyLoss(reduction="sum")(gsm(x[:10]), y[:10]).backward()
    combine_per_patient(params, owner[:10], 1, "sum")
    opt.pre_step()
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    assert float(total) <= c * (1 + 1e-4)
    assert float(total) == pytest.approx(c, rel=1e-3)  # clipped: it was far larger


def test_training_feeds_the_accountant_the_patient_rate_and_counts_every_step() -> None:
    model = _linear()
    x = torch.randn(len(PATIENTS), 3)
    y = torch.randint(0, 2, (len(PATIENTS),))
    step = PatientStep(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25,
                       learning_rate=0.1, combine="mean")
    before = [p.detach().clone() for p in model.parameters()]
    history = train_patient_steps(model, x, y, PATIENTS, step, steps=7, mode="hooks",
                                  gen=torch.Generator().manual_seed(3))
    assert history == [(1.0, 0.25, 7)]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

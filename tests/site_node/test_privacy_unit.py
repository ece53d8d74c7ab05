"""The task's privacy unit at the site: the task file's rules, the grouping, the cap and the
by-patient split, ``check-data``'s patient figures and group-privacy statement, and the ledger,
which never composes a record-level ε with a patient-level one."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from policies.errors import PolicyError
from policies.loader import default_policy_path
from policies.task_loader import load_task
from site_node.cli import app
from site_node.data import DataRefused, load_site_data
from site_node.data.patients import PatientStats, cap_mask, patient_split_mask
from site_node.errors import Refusal
from site_node.privacy import accountant
from site_node.privacy.admission import Ceilings, admit
from site_node.privacy.group import group_bound, group_delta
from site_node.privacy.ledger import SiteLedger
from site_node.protocol.mechanism import UNITS, Mechanism
from tests.site_node.data.synthetic import TASK_YAML, table, write_table

UNIT_YAML = "privacy_unit: {unit: UNIT, patient_column: patient_ref CAP}\n"


def _task(tmp_path: Path, unit: str = "patient", cap: int | None = None,
          extra: str = "") -> Path:
    text = TASK_YAML.replace("MIN_CLASSES", "2").replace("MODEL", "logistic")
    text += extra or UNIT_YAML.replace("UNIT", unit).replace(
        " CAP", f", max_records_per_patient: {cap}" if cap else "")
    path = tmp_path / "task.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _visits(tmp_path: Path, counts: list[int]) -> Path:
    """A table whose patient i has counts[i] records (interleaved)."""
    n = sum(counts)
    cols = table(n, seed=3)
    owners = [i for i, k in enumerate(counts) for _ in range(k)]
    rng = np.random.default_rng(0)
    rng.shuffle(owners)
    cols["patient_ref"] = [f"pt-{o}" for o in owners]
    return write_table(tmp_path / "site.csv", cols)


@pytest.mark.parametrize(("extra", "match"), [
    ("privacy_unit: {unit: patient}\n", "needs a patient identifier"),
    ("privacy_unit: {unit: record, max_records_per_patient: 3}\n", "needs a patient identifier"),
    ("privacy_unit: {unit: patient, patient_column: lactate}\n", "never enters the model"),
    ("privacy_unit: {unit: patient, patient_column: readmitted}\n", "never enters the model"),
    ("privacy_unit: {unit: patient, patient_array: ids}\n", "patient_column"),
    ("privacy_unit: {unit: visit, patient_column: patient_ref}\n", "unit"),
    ("privacy_unit: {unit: patient, patient_column: patient_ref, max_records_per_patient: 0}\n",
     "max_records_per_patient"),
])
def test_the_task_file_refuses_a_unit_it_cannot_honour(tmp_path: Path, extra: str,
                                                       match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        load_task(_task(tmp_path, extra=extra))


def test_a_task_without_a_unit_is_record_level_and_units_agree_with_the_protocol(
        tmp_path: Path) -> None:
    loaded = load_task(_task(tmp_path, extra="\n"))
    assert loaded.task.privacy_unit.unit == "record"
    assert set(UNITS) == {"record", "patient"}
    with pytest.raises(ValueError, match="unit"):
        Mechanism(noise_multiplier=1, sample_rate=0.5, steps=1, max_grad_norm=1,
                  accountant="rdp", unit="visit")


def test_the_cap_keeps_each_patients_first_records_in_file_order() -> None:
    patients = np.array([0, 1, 0, 0, 1, 2, 0])
    assert cap_mask(patients, 2).tolist() == [True, True, True, False, True, True, False]
    assert cap_mask(patients, None).all()


def test_the_split_puts_all_of_a_patients_records_on_one_side() -> None:
    rng = np.random.default_rng(1)
    patients = rng.integers(0, 50, 400)
    labels = rng.integers(0, 2, 400)
    test = patient_split_mask(patients, labels, test_fraction=0.25, seed=7)
    for p in np.unique(patients):
        assert len(set(test[patients == p].tolist())) == 1
    assert 0.15 < len(np.unique(patients[test])) / 50 < 0.35


def test_site_data_carry_patient_indices_never_ids_and_the_cap_applies(tmp_path: Path) -> None:
    counts = [1, 2, 3, 9, 1, 2, 2, 4, 1, 1] * 4
    data = load_site_data(load_task(_task(tmp_path, cap=3)), _visits(tmp_path, counts))
    assert data.patients_train is not None and data.patients_train.dtype == np.int64
    stats = data.summary.patients
    assert stats is not None and stats.max_records == 3 and stats.max_records_before_cap == 9
    assert data.num_patients == stats.patients
    assert data.num_train + data.num_test == sum(min(c, 3) for c in counts)
    assert "pt-" not in json.dumps(data.summary.as_dict())


def test_a_record_without_its_patient_is_refused_naming_the_row(tmp_path: Path) -> None:
    cols = table(40, seed=2)
    cols["patient_ref"][6] = None
    path = write_table(tmp_path / "site.csv", cols)
    with pytest.raises(DataRefused, match=r"patient column patient_ref: .*row 7"):
        load_site_data(load_task(_task(tmp_path)), path)


def test_a_missing_patient_column_is_refused(tmp_path: Path) -> None:
    cols = table(40, seed=2)
    del cols["patient_ref"]
    path = write_table(tmp_path / "site.csv", cols)
    with pytest.raises(DataRefused, match="column patient_ref: missing column"):
        load_site_data(load_task(_task(tmp_path)), path)


def test_group_privacy_chains_the_record_guarantee() -> None:
    assert group_delta(epsilon=1.0, delta=1e-5, k=1) == 1e-5
    assert group_delta(epsilon=1.0, delta=1e-5, k=3) == pytest.approx(
        1e-5 * (1 + math.e + math.e ** 2))
    events = [Mechanism(noise_multiplier=2.0, sample_rate=0.5, steps=20, max_grad_norm=1,
                        accountant="rdp")]
    one = group_bound(events, k=1, delta=1e-5, accountant_name="rdp")
    assert one.epsilon == pytest.approx(one.record_epsilon)
    eight = group_bound(events, k=8, delta=1e-5, accountant_name="rdp")
    assert eight.epsilon > 8 * one.record_epsilon  # δ must be paid for too: more than k·ε
    # the bound holds: at the record-level δ' it used, the group's δ is within δ
    assert eight.epsilon / 8 >= accountant.epsilon(events, delta=1e-5, accountant="rdp")


def _check(tmp_path: Path, unit: str, *options: str) -> dict[str, object]:
    task = _task(tmp_path, unit=unit)
    data = _visits(tmp_path, [1, 2, 3, 6, 1, 2, 2, 4, 1, 1] * 8)
    done = CliRunner().invoke(app, ["check-data", "--task", str(task), "--data", str(data),
                                    *options])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout) if "--json" in options else {"text": done.stdout}


def test_check_data_reports_patients_and_what_a_record_level_run_gives_the_largest(
        tmp_path: Path) -> None:
    out = _check(tmp_path, "record", "--json", "--policy", str(default_policy_path()))
    summary = out["summary"]
    assert isinstance(summary, dict)
    assert summary["privacy_unit"] == "record"
    stats = PatientStats(**summary["patients"])
    privacy = out["privacy"]
    assert isinstance(privacy, dict)
    largest = privacy["largest_patient"]
    assert largest["records"] == stats.max_records == 6
    assert largest["epsilon"] > stats.max_records * privacy["run_epsilon"]
    text = _check(tmp_path, "record", "--policy", str(default_policy_path()))["text"]
    assert "the largest patient: a patient with 6 records gets ε ≤" in str(text)


def test_check_data_says_a_patient_level_epsilon_protects_each_patient(tmp_path: Path) -> None:
    text = str(_check(tmp_path, "patient")["text"])
    assert "ε protects one patient" in text and "records per patient: median" in text


def test_check_data_needs_an_expected_batch_of_one_patient(tmp_path: Path) -> None:
    task = _task(tmp_path)
    data = _visits(tmp_path, [8] * 12)  # 96 records, 9 training patients
    policy = tmp_path / "p.yaml"
    policy.write_text(default_policy_path().read_text().replace(
        "sample_rate: 0.5 ", "sample_rate: 0.1 "), encoding="utf-8")
    done = CliRunner().invoke(app, ["check-data", "--task", str(task), "--data", str(data),
                                    "--policy", str(policy)])
    assert done.exit_code == 2 and "too few patients" in done.stdout


M_RECORD = Mechanism(noise_multiplier=1.2, sample_rate=0.25, steps=4, max_grad_norm=1.0,
                     accountant="rdp")
M_PATIENT = Mechanism(noise_multiplier=1.2, sample_rate=0.25, steps=4, max_grad_norm=1.0,
                      accountant="rdp", unit="patient")
CEILINGS = Ceilings(delta=1e-5, epsilon_ceiling=100.0, lifetime_epsilon_ceiling=100.0)


def test_the_ledger_never_composes_a_record_level_and_a_patient_level_epsilon(
        tmp_path: Path) -> None:
    with pytest.raises(accountant.MixedUnits, match="record-level ε with a patient-level"):
        accountant.epsilon([M_RECORD, M_PATIENT], delta=1e-5, accountant="rdp")
    with SiteLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.record(run_id="old", rnd=1, policy_sha256="p", mechanism=M_RECORD, delta=1e-5)
        with pytest.raises(Refusal, match=r"site hungary refuses run new: its ledger holds "
                           r"record-level .* this run is patient-level"):
            admit(ledger, site="hungary", run_id="new", rnd=1, rounds_planned=3,
                  mechanism=M_PATIENT, ceilings=CEILINGS)
        assert [e.run_id for e in ledger.events()] == ["old"]  # nothing spent
        assert ledger.refusals("new")
        admit(ledger, site="hungary", run_id="again", rnd=1, rounds_planned=3,
              mechanism=M_RECORD, ceilings=CEILINGS)  # the same unit composes


def test_a_ledger_written_before_units_reads_as_record_level_and_is_migrated(
        tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with SiteLedger(path) as ledger:
        ledger.record(run_id="old", rnd=1, policy_sha256="p", mechanism=M_RECORD, delta=1e-5)
    conn = sqlite3.connect(path)  # as an old ledger: no unit column
    conn.execute("DROP TRIGGER dp_events_no_update")
    conn.execute("ALTER TABLE dp_events DROP COLUMN unit")
    conn.commit()
    conn.close()
    with SiteLedger(path, readonly=True) as old:
        assert old.events()[0].mechanism.unit == "record"
    with SiteLedger(path) as migrated:
        migrated.record(run_id="p", rnd=1, policy_sha256="p", mechanism=M_PATIENT, delta=1e-5)
        assert [e.mechanism.unit for e in migrated.events()] == ["record", "patient"]

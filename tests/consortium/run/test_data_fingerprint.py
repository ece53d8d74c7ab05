"""What each site trained on: the fingerprint of its data, recorded with the run (its row and its
signed run-start entry); the same data at two sites, or changed data on resume, is refused."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.audit.log import AuditLog
from consortium.audit.trail import RUN_START, RunAudit
from consortium.errors import PlanError
from consortium.home import open_home
from consortium.run.data_fingerprint import check_unchanged, data_fingerprints, fingerprint_path
from consortium.run.demo import prepare_sites
from consortium.run.inputs import resolve_inputs
from consortium.run.local_run import LocalRun
from consortium.run.plan import make_plan_from_policy
from consortium.run.workflow import ConsortiumWorkflow
from consortium.store.run_store import RunStore
from site_node.demo import demo_settings

NAMES = st.text(alphabet="abcxyz", min_size=1, max_size=4)
TREES = st.dictionaries(st.lists(NAMES, min_size=1, max_size=2).map("/".join),
                        st.binary(max_size=64), min_size=1, max_size=5).filter(
    lambda t: not any(a != b and b.startswith(a + "/") for a in t for b in t))


def _write(root: Path, tree: dict[str, bytes], order: list[str]) -> Path:
    root.mkdir()
    for name in order:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(tree[name])
    return root


def test_a_files_fingerprint_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    f = tmp_path / "site.csv"
    f.write_bytes(b"age,target\n63,1\n")
    assert fingerprint_path(f) == hashlib.sha256(b"age,target\n63,1\n").hexdigest()


@settings(max_examples=40, deadline=None)
@given(tree=TREES, data=st.data())
def test_a_folders_fingerprint_is_its_files_paths_and_bytes_in_any_order(
        tree: dict[str, bytes], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(sorted(tree)))
    victim = data.draw(st.sampled_from(sorted(tree)))
    with tempfile.TemporaryDirectory() as tmp:
        one = fingerprint_path(_write(Path(tmp) / "one", tree, sorted(tree)))
        two = fingerprint_path(_write(Path(tmp) / "two", tree, list(shuffled)))
        changed = {**tree, victim: tree[victim] + b"\x00"}
        other = fingerprint_path(_write(Path(tmp) / "three", changed, sorted(changed)))
        renamed = {(k + "~" if k == victim else k): v for k, v in tree.items()}
        moved = fingerprint_path(_write(Path(tmp) / "four", renamed, sorted(renamed)))
    assert one == two  # where the files came from, and in which order, does not matter
    assert other != one and moved != one


def test_a_folder_keeps_its_files_apart(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", {"x": b"yz"}, ["x"])
    b = _write(tmp_path / "b", {"xy": b"z"}, ["xy"])
    assert fingerprint_path(a) != fingerprint_path(b)


def test_unreadable_data_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "gone.csv"
    with pytest.raises(PlanError, match=f"cannot fingerprint the site's data {gone}"):
        fingerprint_path(tmp_path / "gone.csv")


def test_the_same_bytes_at_two_sites_are_refused_naming_both(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.csv").write_text("x\n1\n")
    (tmp_path / "c.csv").write_text("x\n2\n")
    with pytest.raises(PlanError, match=r"sites north and east are given the same data \("
                                        rf"{tmp_path / 'a.csv'} and {tmp_path / 'b.csv'}"):
        data_fingerprints({"north": tmp_path / "a.csv", "south": tmp_path / "c.csv",
                           "east": tmp_path / "b.csv"})


def test_a_run_without_recorded_fingerprints_or_with_changed_data_is_not_resumed() -> None:
    with pytest.raises(PlanError, match="run r1 recorded no fingerprint"):
        check_unchanged("r1", None, {"a": "1" * 64})
    with pytest.raises(PlanError, match=r"site b changed .*sha256 222222222222… then, "
                                        r"333333333333… now"):
        check_unchanged("r1", {"a": "1" * 64, "b": "2" * 64}, {"a": "1" * 64, "b": "3" * 64})
    with pytest.raises(PlanError, match="site b has no data"):
        check_unchanged("r1", {"a": "1" * 64, "b": "2" * 64}, {"a": "1" * 64})
    check_unchanged("r1", {"a": "1" * 64}, {"a": "1" * 64, "other": "4" * 64})


def test_a_run_records_each_sites_fingerprint_in_its_row_and_its_signed_start_entry(
        tmp_path: Path) -> None:
    inputs = resolve_inputs(example="digits")
    plan, _sites = prepare_sites(make_plan_from_policy(
        inputs.policy, inputs.task, store_path=tmp_path / "runs.sqlite", rounds=2, demo=True),
        inputs.data)
    expected = {s: hashlib.sha256(p.read_bytes()).hexdigest() for s, p in inputs.data.items()}
    assert plan.data_fingerprints == expected  # the shipped files, per site
    run = ConsortiumWorkflow(plan)._run_record("simulation")
    with RunStore(plan.store_path) as store:
        audit_log = AuditLog(store.db, key=open_home().signing_key())
        with store.db.transaction():
            store.start_run(run)
            RunAudit(audit_log, run).start()
        assert store.get_run(plan.run_id).data_fingerprints == expected
        (start,) = [e for e in audit_log.entries(plan.run_id) if e.kind == RUN_START]
    assert start.payload["data_fingerprints"] == expected
    local = LocalRun(plan, demo_settings("clinic_b", data_path=inputs.data["clinic_b"]))
    assert local._record().data_fingerprints == {"clinic_b": expected["clinic_b"]}

"""Canonical JSON (policies/canonical.py): one encoding for policies, effective policies,
tasks, receipts and the audit log. Known answers pin the exact bytes and hashes that stores,
fixtures and signatures written before hold; properties pin what the encoding is."""

from __future__ import annotations

import ast
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from consortium.audit.log import canonical, entry_hash
from policies import canonical as cj
from policies.effective import effective_policy
from policies.errors import NotCanonicalJSON, PolicyError
from policies.loader import canonical_json, parse_policy
from policies.site_schema import SitePolicy
from tests.site_node.protocol.test_receipt import CANONICAL, RECEIPT

#: A policy written out in full, so that its bytes do not follow the shipped default.
POLICY = {
    "version": 1, "delta": 1.0e-5, "epsilon_ceiling": 1.0, "lifetime_epsilon_ceiling": 10.0,
    "rounds": 20, "min_sites": 4, "sites": ["cleveland", "hungary", "long_beach", "switzerland"],
    "dp": {"target_epsilon": 1.0, "max_grad_norm": 0.1, "sample_rate": 0.5, "local_steps": 5,
           "learning_rate": 3.0, "accountant": "rdp"},
    "secagg": {"num_shares": 3, "reconstruction_threshold": 2, "timeout_s": 120,
               "max_weight": 1000, "clipping_range": 8.0},
    "convergence": {"target_accuracy": None, "patience": None, "min_delta": 0.0},
}
POLICY_CANONICAL = (
    '{"convergence":{"min_delta":0.0,"patience":null,"target_accuracy":null},"delta":1e-05,'
    '"dp":{"accountant":"rdp","learning_rate":3.0,"local_epochs":null,"local_steps":5,'
    '"max_grad_norm":0.1,"noise_multiplier":null,"sample_rate":0.5,"target_epsilon":1.0},'
    '"epsilon_ceiling":1.0,"lifetime_epsilon_ceiling":10.0,"min_sites":4,"rounds":20,'
    '"secagg":{"clipping_range":8.0,"max_weight":1000,"modulus_range":4294967296,'
    '"num_shares":3,"quantization_range":4194304,"reconstruction_threshold":2,"timeout_s":120},'
    '"sites":["cleveland","hungary","long_beach","switzerland"],"version":1}'
)
POLICY_SHA256 = "6a4ef8ae65ad73f76af1262196e0434b619b4425d576207ddd190c9414799935"
EFFECTIVE_SHA256 = "cff6515547f2572dcde6454eab0716229fd175d08c26643ee41a22a5697d63a3"
RECEIPT_SHA256 = "b365318ee33caf4bcdd4b98ac52db5d5013c1fc8a96707b43bc40c078976f345"
#: An audit payload with non-ASCII text, and the hash of an entry that holds it.
PAYLOAD = {"site": "hungary", "note": "Zürich ε ≤ 1", "n": [1, 2.5, None, True]}
PAYLOAD_CANONICAL = (
    r'{"n":[1,2.5,null,true],"note":"Z\u00fcrich \u03b5 \u2264 1","site":"hungary"}'
)
ENTRY_SHA256 = "20393e7d3c3cbafa019cdb4d71974d60fe909fb4f2b35c392890509726ce8157"


def test_known_answer_policy_bytes_and_hash() -> None:
    loaded = parse_policy(POLICY, "sample")
    assert loaded.canonical_json == POLICY_CANONICAL
    assert cj.to_json(loaded.policy.model_dump(mode="json")) == POLICY_CANONICAL
    assert loaded.sha256 == POLICY_SHA256
    assert hashlib.sha256(POLICY_CANONICAL.encode("ascii")).hexdigest() == POLICY_SHA256


def test_known_answer_effective_policy_hash() -> None:
    eff = effective_policy(parse_policy(POLICY, "sample").policy,
                           SitePolicy(site="hungary", delta=1e-6))
    assert eff.sha256 == EFFECTIVE_SHA256
    assert cj.sha256(eff.model_dump(mode="json", exclude={"sha256"})) == EFFECTIVE_SHA256


def test_known_answer_receipt_bytes_and_hash() -> None:
    assert RECEIPT.canonical_bytes() == CANONICAL.encode("ascii")
    assert cj.to_bytes(json.loads(CANONICAL)) == CANONICAL.encode("ascii")
    assert hashlib.sha256(RECEIPT.canonical_bytes()).hexdigest() == RECEIPT_SHA256


def test_known_answer_audit_payload_and_entry_hash() -> None:
    assert canonical(PAYLOAD) == PAYLOAD_CANONICAL == cj.to_json(PAYLOAD)
    assert PAYLOAD_CANONICAL.isascii()
    assert entry_hash(7, "run-1", "receipt", "2026-01-01T00:00:00+00:00", PAYLOAD_CANONICAL,
                      "0" * 64) == ENTRY_SHA256


ROOT = Path(__file__).resolve().parents[2]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_canonical_json_round_trips_and_is_a_fixed_point(value: Any) -> None:
    text = cj.to_json(value)
    assert json.loads(text) == value
    assert cj.to_json(json.loads(text)) == text
    assert text.isascii() and cj.to_bytes(value) == text.encode("ascii")
    assert cj.sha256(value) == hashlib.sha256(text.encode("ascii")).hexdigest()


@settings(max_examples=100, deadline=None)
@given(_JSON, _NON_FINITE, st.text(max_size=5))
def test_canonical_json_refuses_nan_and_infinity_anywhere(value: Any, bad: float,
                                                          key: str) -> None:
    for holder in ([value, bad], {key: bad, "other": value}, [{key: [bad]}]):
        with pytest.raises(NotCanonicalJSON, match="no canonical JSON"):
            cj.to_json(holder)


def test_the_error_is_a_policy_error_and_a_value_error() -> None:
    assert issubclass(NotCanonicalJSON, PolicyError) and issubclass(NotCanonicalJSON, ValueError)


def test_a_document_with_a_nan_has_no_canonical_json_and_no_hash() -> None:
    class Loose(BaseModel):  # a model that, unlike the policy schemas, admits NaN
        x: float

    with pytest.raises(NotCanonicalJSON):
        canonical_json(Loose(x=math.nan))
    with pytest.raises(NotCanonicalJSON):
        canonical({"epsilon": math.inf})


def test_no_other_module_writes_canonical_json_itself() -> None:
    """One encoder: a second ``json.dumps(..., separators=(",", ":"))`` could drift from it."""
    found = [str(p.relative_to(ROOT)) for pkg in ("consortium", "site_node", "policies",
                                                  "dashboard")
             for p in sorted((ROOT / pkg).rglob("*.py"))
             if p.name != "canonical.py" and 'separators=(",", ":")' in p.read_text("utf-8")]
    assert found == []


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | {
        n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_canonical_json_stands_alone_so_the_protocol_may_import_it() -> None:
    assert _imported(ROOT / "policies" / "canonical.py") <= {
        "__future__", "hashlib", "json", "policies.errors"}
    assert _imported(ROOT / "policies" / "errors.py") <= {"__future__"}

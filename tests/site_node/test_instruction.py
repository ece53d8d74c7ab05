"""The round's instruction: parsed once; the policy and the task it carries are re-validated
against their hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from site_node.instruction import Instruction, parse_instruction
from site_node.protocol import wire
from site_node.protocol.errors import InstructionError
from tests.site_node.factories import instruction

Config = dict[str, bool | bytes | float | int | str]


def config(**changes: object) -> Config:
    cfg: Config = instruction("run-1", 2, rounds=3, sigma=1.25).to_config()
    for key, value in changes.items():
        cfg[key] = value  # type: ignore[assignment]
    return cfg


def test_an_instruction_round_trips_through_its_config() -> None:
    ins = instruction("run-1", 2, rounds=3, sigma=1.25)
    back = parse_instruction(ins.to_config())
    assert isinstance(back, Instruction)
    assert (back.run_id, back.round, back.rounds_planned, back.noise_multiplier) == (
        "run-1", 2, 3, 1.25)
    assert back.policy.policy == ins.policy.policy and back.policy.sha256 == ins.policy.sha256
    assert back.task.task == ins.task.task and back.task.sha256 == ins.task.sha256
    assert set(ins.to_config()) == {wire.RUN_ID, wire.ROUND, wire.ROUNDS_PLANNED,
                                    wire.POLICY_JSON, wire.POLICY_SHA256, wire.TASK_JSON,
                                    wire.TASK_SHA256, wire.NOISE_MULTIPLIER,
                                    wire.RECEIPTS_HELD, wire.MASK_VERSION}
    assert back.mask_version == 2 and back.mask_refusal("hungary") is None


@pytest.mark.parametrize("key", [wire.RUN_ID, wire.ROUND, wire.ROUNDS_PLANNED, wire.POLICY_JSON,
                                 wire.POLICY_SHA256, wire.TASK_JSON, wire.TASK_SHA256,
                                 wire.NOISE_MULTIPLIER])
def test_a_missing_field_is_named(key: str) -> None:
    cfg = config()
    del cfg[key]
    with pytest.raises(InstructionError, match=f"the instruction lacks '{key}'"):
        parse_instruction(cfg)


@pytest.mark.parametrize(("key", "value"), [
    (wire.ROUND, True), (wire.ROUNDS_PLANNED, False), (wire.ROUND, 1.0), (wire.ROUND, "1"),
    (wire.NOISE_MULTIPLIER, True), (wire.NOISE_MULTIPLIER, 2), (wire.RUN_ID, 7),
    (wire.POLICY_JSON, b"{}"), (wire.POLICY_SHA256, 5), (wire.TASK_JSON, 1),
    (wire.TASK_SHA256, b"x"), (wire.MASK_VERSION, "2"), (wire.MASK_VERSION, True),
])
def test_a_value_of_the_wrong_type_is_named(key: str, value: object) -> None:
    with pytest.raises(InstructionError, match=f"instruction {key}: expected"):
        parse_instruction(config(**{key: value}))


@pytest.mark.parametrize("sigma", [float("nan"), float("inf"), float("-inf"), 0.0, -1.0])
def test_a_noise_multiplier_that_is_not_finite_and_positive_is_refused(sigma: float) -> None:
    with pytest.raises(InstructionError, match="noise-multiplier: must be finite and > 0"):
        parse_instruction(config(**{wire.NOISE_MULTIPLIER: sigma}))


@pytest.mark.parametrize(("changes"), [
    {wire.RUN_ID: ""}, {wire.ROUND: 0}, {wire.ROUND: 4}, {wire.ROUNDS_PLANNED: 1},
])
def test_a_bad_run_or_round_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InstructionError, match="bad run or round"):
        parse_instruction(config(**changes))


def test_a_policy_that_does_not_match_its_hash_is_refused() -> None:
    cfg = config()
    text = str(cfg[wire.POLICY_JSON])
    loosened = text.replace('"epsilon_ceiling":1.0', '"epsilon_ceiling":30.0')
    assert loosened != text
    with pytest.raises(InstructionError, match="does not match its hash"):
        parse_instruction(config(**{wire.POLICY_JSON: loosened}))
    with pytest.raises(InstructionError, match="does not match its hash"):
        parse_instruction(config(**{wire.POLICY_SHA256: "0" * 64}))


def test_an_invalid_policy_is_refused_even_with_a_matching_hash() -> None:
    data = json.loads(str(config()[wire.POLICY_JSON]))
    data["dp"]["noise_multiplier"] = 1.0  # both noise sources
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    with pytest.raises(InstructionError, match="the instruction's policy: dp"):
        parse_instruction(config(**{wire.POLICY_JSON: text, wire.POLICY_SHA256: digest}))


def test_a_task_that_does_not_match_its_hash_is_refused() -> None:
    text = str(config()[wire.TASK_JSON])
    widened = text.replace('"range":[0,100]', '"range":[0,200]')
    assert widened != text
    with pytest.raises(InstructionError, match="the instruction's task: the task does not "
                                               "match its hash"):
        parse_instruction(config(**{wire.TASK_JSON: widened}))


def test_an_invalid_task_is_refused_even_with_a_matching_hash() -> None:
    data = json.loads(str(config()[wire.TASK_JSON]))
    data["columns"][0]["range"] = [100, 0]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    with pytest.raises(InstructionError, match=r"the instruction's task: columns\[0\] \(age\)"):
        parse_instruction(config(**{wire.TASK_JSON: text, wire.TASK_SHA256: digest}))


def test_receipts_held_round_trip_and_default_to_none() -> None:
    ins = replace(instruction("run-1", 3, rounds=4, sigma=1.25),
                  receipts_held=(("cleveland", (1, 2)), ("hungary", (2,))))
    back = parse_instruction(ins.to_config())
    assert back.receipts_held == ins.receipts_held
    assert back.held_rounds("hungary") == (2,) and back.held_rounds("switzerland") == ()
    cfg = config()
    del cfg[wire.RECEIPTS_HELD]  # an instruction that claims no receipt
    assert parse_instruction(cfg).receipts_held == ()


@pytest.mark.parametrize("value", ["[1]", "{", '{"hungary": [0]}', '{"hungary": [4]}',
                                   '{"hungary": [true]}', '{"hungary": 1}', '{"hungary": ["1"]}'])
def test_a_bad_receipts_held_map_is_named(value: str) -> None:
    with pytest.raises(InstructionError, match=wire.RECEIPTS_HELD):
        parse_instruction(config(**{wire.RECEIPTS_HELD: value}))


@pytest.mark.parametrize(("stated", "named"), [(1, "SecAgg+ mask version 1"),
                                               (None, "no SecAgg+ mask version")])
def test_another_or_no_mask_version_is_a_refusal_naming_the_site_and_both_versions(
        stated: int | None, named: str) -> None:
    cfg = config()
    if stated is None:
        del cfg[wire.MASK_VERSION]  # a server release before mask versions
    else:
        cfg[wire.MASK_VERSION] = stated
    reason = parse_instruction(cfg).mask_refusal("hungary")
    assert reason is not None and reason.startswith("site hungary refuses")
    assert named in reason and "this node masks with SecAgg+ mask version 2" in reason

"""The consortium's instruction for one round, parsed once into a frozen value.

The instruction carries the consortium policy and the task themselves (canonical JSON with
their hashes): the site re-validates both, so that its own policy is merged into exactly the
policy the round runs under (:mod:`policies.effective`, the one tighten-only merge) and its data
are checked against exactly the task the round trains.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from policies.errors import PolicyError
from policies.loader import LoadedPolicy, policy_from_canonical
from policies.task import AnyTask
from policies.task_loader import LoadedTask, task_from_canonical
from site_node.protocol import masking, wire
from site_node.protocol.errors import InstructionError

Scalar = bool | bytes | float | int | str


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """What the consortium asks of every site in one round."""

    run_id: str
    round: int
    rounds_planned: int
    policy: LoadedPolicy
    task: LoadedTask
    noise_multiplier: float
    #: (site, rounds) pairs: the rounds of this run whose receipts the consortium holds per site.
    receipts_held: tuple[tuple[str, tuple[int, ...]], ...] = ()
    #: The SecAgg+ mask version the server unmasks with (None: the instruction states none).
    mask_version: int | None = masking.MASK_VERSION

    def held_rounds(self, site: str) -> tuple[int, ...]:
        """The rounds of this run for which the consortium holds ``site``'s receipts."""
        return dict(self.receipts_held).get(site, ())

    def mask_refusal(self, site: str) -> str | None:
        """Why ``site`` must refuse to mask for this instruction (None: the server unmasks
        with this release's SecAgg+ mask version)."""
        other = masking.mismatch(self.mask_version)
        if other is None:
            return None
        return (f"site {site} refuses: the consortium unmasks with {other}, this node masks "
                f"with SecAgg+ mask version {masking.MASK_VERSION}; their masks would not "
                "cancel (run the same release's masking at every site and at the consortium); "
                "nothing was trained or spent")

    @property
    def model_task(self) -> AnyTask:
        """The task as this run's members train it (with their site indicator, if any)."""
        return self.task.task.for_members(self.policy.policy.sites)

    def to_config(self) -> dict[str, Scalar]:
        """As the instruction's config record."""
        config: dict[str, Scalar] = {
            wire.RUN_ID: self.run_id, wire.ROUND: self.round,
            wire.ROUNDS_PLANNED: self.rounds_planned,
            wire.POLICY_JSON: self.policy.canonical_json,
            wire.POLICY_SHA256: self.policy.sha256,
            wire.TASK_JSON: self.task.canonical_json,
            wire.TASK_SHA256: self.task.sha256,
            wire.NOISE_MULTIPLIER: self.noise_multiplier,
            wire.RECEIPTS_HELD: json.dumps({site: list(rounds)
                                            for site, rounds in self.receipts_held},
                                           sort_keys=True),
        }
        if self.mask_version is not None:
            config[wire.MASK_VERSION] = self.mask_version
        return config


def _get(config: Mapping[str, Scalar], key: str, kind: type) -> Scalar:
    if key not in config:
        raise InstructionError(f"the instruction lacks {key!r}")
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InstructionError(f"instruction {key}: expected {kind.__name__}, got {value!r}")
    return value


def _receipts_held(config: Mapping[str, Scalar], planned: int
                   ) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The optional receipts-held map (absent: the consortium claims none)."""
    if wire.RECEIPTS_HELD not in config:
        return ()
    text = _get(config, wire.RECEIPTS_HELD, str)
    try:
        data = json.loads(str(text))
    except ValueError as exc:
        raise InstructionError(f"instruction {wire.RECEIPTS_HELD}: not JSON: {exc}") from None
    ok = isinstance(data, dict) and all(
        isinstance(site, str) and isinstance(rounds, list) and all(
            isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= planned for r in rounds)
        for site, rounds in data.items())
    if not ok:
        raise InstructionError(f"instruction {wire.RECEIPTS_HELD}: expected an object of site -> "
                               f"list of rounds in [1, {planned}], got {str(text)[:200]!r}")
    return tuple(sorted((site, tuple(sorted(set(rounds)))) for site, rounds in data.items()))


def _mask_version(config: Mapping[str, Scalar]) -> int | None:
    """The optional mask version (absent: a server release before mask versions)."""
    if wire.MASK_VERSION not in config:
        return None
    return int(_get(config, wire.MASK_VERSION, int))


def parse_instruction(config: Mapping[str, Scalar]) -> Instruction:
    """Parse and check an instruction.

    Raises
    ------
    InstructionError
        Naming the missing or invalid field.
    """
    run_id = str(_get(config, wire.RUN_ID, str))
    rnd = int(_get(config, wire.ROUND, int))
    planned = int(_get(config, wire.ROUNDS_PLANNED, int))
    sigma = float(_get(config, wire.NOISE_MULTIPLIER, float))
    if not run_id or not 1 <= rnd <= planned:
        raise InstructionError(f"instruction: bad run or round (run {run_id!r}, round {rnd} of "
                               f"{planned})")
    if not math.isfinite(sigma) or sigma <= 0:
        raise InstructionError(f"instruction {wire.NOISE_MULTIPLIER}: must be finite and > 0, "
                               f"got {sigma}")
    try:
        policy = policy_from_canonical(str(_get(config, wire.POLICY_JSON, str)),
                                       str(_get(config, wire.POLICY_SHA256, str)),
                                       source="the instruction's policy")
        task = task_from_canonical(str(_get(config, wire.TASK_JSON, str)),
                                   str(_get(config, wire.TASK_SHA256, str)),
                                   source="the instruction's task")
    except PolicyError as exc:
        raise InstructionError(str(exc)) from None
    return Instruction(run_id=run_id, round=rnd, rounds_planned=planned, policy=policy,
                       task=task, noise_multiplier=sigma,
                       receipts_held=_receipts_held(config, planned),
                       mask_version=_mask_version(config))

"""Real objects for site node tests: mechanisms, instructions, site homes and settings."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from policies.example import load_example
from policies.loader import LoadedPolicy, load_policy, parse_policy
from policies.task_loader import LoadedTask
from site_node.home import SiteHome, init_site_home
from site_node.instruction import Instruction
from site_node.privacy import accountant
from site_node.protocol.mechanism import Mechanism
from site_node.settings import NodeSettings
from tests.site_node.data_files import example_file, heart_task

DELTA = 1e-5


def mech(sigma: float = 1.2, q: float = 0.25, steps: int = 4, acct: str = "rdp") -> Mechanism:
    return Mechanism(noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0,
                     accountant=acct)


def policy(**changes: Any) -> LoadedPolicy:
    """The shipped consortium policy, with top-level (or ``dp__x``/``secagg__x``) changes."""
    data = load_policy().policy.model_dump(mode="json")
    for key, value in changes.items():
        section, _, name = key.rpartition("__")
        (data[section] if section else data)[name] = value
    return parse_policy(data, "test policy")


def consortium_sigma(loaded: LoadedPolicy, rounds: int | None = None) -> float:
    """The consortium's σ for the planned rounds (what the server sends)."""
    p = loaded.policy
    if p.dp.noise_multiplier is not None:
        return float(p.dp.noise_multiplier)
    assert p.dp.target_epsilon is not None
    return accountant.noise_for_target(
        target_epsilon=float(p.dp.target_epsilon), delta=p.delta,
        sample_rate=float(p.dp.sample_rate),
        steps=p.dp.steps_per_round * (rounds or p.rounds), accountant=p.dp.accountant)


def instruction(run_id: str | None = None, rnd: int = 1, loaded: LoadedPolicy | None = None,
                rounds: int | None = None, sigma: float | None = None,
                task: LoadedTask | None = None) -> Instruction:
    """An instruction of the shipped policy and the heart-disease task (unless given)."""
    loaded = loaded or load_policy()
    planned = rounds or loaded.policy.rounds
    return Instruction(run_id=run_id or uuid.uuid4().hex, round=rnd, rounds_planned=planned,
                       policy=loaded, task=task or heart_task(),
                       noise_multiplier=sigma or consortium_sigma(loaded, planned))


def site_home(tmp_path: Path, site: str = "hungary") -> SiteHome:
    return init_site_home(tmp_path / f"home-{site}", site)


def settings(home: SiteHome, *, policy_path: Path | None = None,
             data_path: Path | None = None, task_path: Path | None = None) -> NodeSettings:
    """The site's settings; its data default to its file in the heart-disease example (none for
    a site that example does not have)."""
    default = example_file(home.site_id) if home.site_id in load_example(
        "heart-disease").data else None
    return NodeSettings(site=home.site_id, data_path=data_path or default,
                        state_dir=home.state_dir, policy_path=policy_path, task_path=task_path)

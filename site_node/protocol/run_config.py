"""The Flower run config's keys (``[tool.flwr.app.config]``), read by the server and the nodes.

A run's settings reach the ServerApp and every ClientApp as Flower's run config: the app's
declared defaults (``consortium/deployment/flower-app.toml``, mirrored in the repository's
pyproject.toml) merged with ``flwr run --run-config`` overrides. Both sides name the keys with
these constants and read them through :func:`parse` only, so that they agree on every key and
every default (an empty ``policy`` is the ``example``'s policy, on the server and on a
demonstration node alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from site_node.protocol.errors import ProtocolError

POLICY = "policy"  # consortium policy file (absolute path); empty: the example's
TASK = "task"  # task file (absolute path); empty: the example's
EXAMPLE = "example"  # embedded example's name; empty: heart-disease
STORE = "store"  # run store (absolute path); empty: the consortium home's
NUM_SERVER_ROUNDS = "num-server-rounds"  # 0: the policy's rounds
SEED = "seed"  # seed of the initial model
RUN_ID = "run-id"  # the consortium's run id; empty: a fresh UUID
DEMO = "demo"  # the local demonstration (server-made site keys); never on by default
EXAMPLE_SITE_POLICIES = "example-site-policies"  # demonstration only
RESUME = "resume"  # continue the interrupted run ``run-id`` (its stored policy, task and rounds)

KEYS = frozenset({POLICY, TASK, EXAMPLE, STORE, NUM_SERVER_ROUNDS, SEED, RUN_ID, DEMO,
                  EXAMPLE_SITE_POLICIES, RESUME})


class RunConfigError(ProtocolError, ValueError):
    """A run-config value has the wrong type."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A run config, parsed: empty strings are None, flags are booleans."""

    policy: str | None = None
    task: str | None = None
    example: str | None = None
    store: str | None = None
    rounds: object = 0  # checked by the server's plan (it knows the policy's limits)
    seed: object = 0
    run_id: str | None = None
    demo: bool = False
    example_site_policies: bool = False
    resume: bool = False


def _text(values: Mapping[str, object], key: str) -> str | None:
    value = values.get(key, "")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RunConfigError(f"run config {key}: must be a string (got {value!r})")
    return value


def _flag(values: Mapping[str, object], key: str) -> bool:
    value = values.get(key, False)
    if not isinstance(value, bool):
        raise RunConfigError(f"run config {key}: must be true or false (got {value!r})")
    return value


def parse(values: Mapping[str, object]) -> RunConfig:
    """Parse a Flower run config (``context.run_config``); unknown keys are ignored.

    Raises
    ------
    RunConfigError
        If a path, name or flag has the wrong type (the message names the key).
    """
    return RunConfig(
        policy=_text(values, POLICY), task=_text(values, TASK), example=_text(values, EXAMPLE),
        store=_text(values, STORE), rounds=values.get(NUM_SERVER_ROUNDS, 0),
        seed=values.get(SEED, 0), run_id=_text(values, RUN_ID), demo=_flag(values, DEMO),
        example_site_policies=_flag(values, EXAMPLE_SITE_POLICIES), resume=_flag(values, RESUME),
    )

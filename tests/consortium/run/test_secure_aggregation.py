"""Secure aggregation is real: the server sees masked vectors, and only their sum unmasks.

Four nodes with known updates run Flower's real SecAgg+ protocol (``secaggplus_mod`` on the
clients, with the sites' mask version 2 installed; the consortium's configured SecAgg+ workflow,
Flower's with mask version 2's collect and unmask stages, on the server) in Flower's simulation
engine, and the consortium's strategy collects the result. The test taps what the server
receives in the masked-vector stage.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
from flwr.app import Context
from flwr.client import Client, ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import bytes_to_ndarray, ndarrays_to_parameters
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.workflow import DefaultWorkflow
from flwr.simulation import run_simulation

from consortium import flower_compat as server_compat
from consortium.run.plan import make_plan
from consortium.run.strategy import ConsortiumStrategy
from consortium.run.workflow import secagg_workflow
from site_node import flower_compat as site_compat

pytestmark = pytest.mark.slow

SHAPES = [(6, 3), (3,)]
EXAMPLES = [227, 221, 150, 92]


def site_update(pid: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1000 + pid)
    return [rng.uniform(-1, 1, size=s).astype(np.float32) for s in SHAPES]


class KnownClient(NumPyClient):
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        return site_update(self.pid), EXAMPLES[self.pid], {"site": f"s{self.pid}"}


def client_fn(context: Context) -> Client:
    site_compat.install_masking()  # the site's ClientApp does this at import
    assert site_compat.masking_installed()
    return KnownClient(int(context.node_config["partition-id"])).to_client()


class TappedSecAgg(server_compat.SecAggPlus):
    """The consortium's SecAgg+ workflow, recording what the server receives in stage 2."""

    received: ClassVar[list[tuple[int, list[np.ndarray]]]] = []

    def collect_masked_vectors_stage(self, grid: Any, context: Any, state: Any) -> bool:
        outer = self

        class Tap:
            def __getattr__(self, name: str) -> Any:
                return getattr(grid, name)

            def send_and_receive(self, *args: Any, **kwargs: Any) -> Any:
                replies = list(grid.send_and_receive(*args, **kwargs))
                for msg in replies:
                    cfg = msg.content.config_records[RECORD_KEY_CONFIGS]
                    vec = [bytes_to_ndarray(b) for b in cfg[Key.MASKED_PARAMETERS]]
                    outer.received.append((msg.metadata.src_node_id, vec))
                return replies

        return super().collect_masked_vectors_stage(Tap(), context, state)  # type: ignore[arg-type]


def one_round(workflow: Any, client: Any, *, min_sites: int) -> ConsortiumStrategy:
    """One SecAgg+ round of ``workflow`` in Flower's simulation, four SuperNodes running
    ``client`` under ``secaggplus_mod``; the consortium's strategy that aggregated it."""
    strategies: list[ConsortiumStrategy] = []
    server = ServerApp()

    @server.main()
    def _main(grid: Any, context: Context) -> None:
        initial = ndarrays_to_parameters([np.zeros(s, np.float32) for s in SHAPES])
        strategy = ConsortiumStrategy(min_sites=min_sites, initial_parameters=initial,
                                      fit_config=lambda rnd: {})
        strategies.append(strategy)
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=1),
                               strategy=strategy)
        DefaultWorkflow(fit_workflow=workflow, evaluate_workflow=lambda g, c: None)(grid, legacy)

    run_simulation(server_app=server, client_app=ClientApp(client_fn=client,
                                                             mods=[secaggplus_mod]),
                   num_supernodes=4,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    (strategy,) = strategies
    return strategy


def test_server_learns_only_the_weighted_sum() -> None:
    server_compat.install_masking()  # as the consortium's ServerApp does
    plan = make_plan(rounds=1)
    base = secagg_workflow(plan)  # the consortium's own, policy-validated parameters
    tapped = TappedSecAgg(
        num_shares=base.num_shares, reconstruction_threshold=base.reconstruction_threshold,
        max_weight=base.max_weight, clipping_range=base.clipping_range,
        quantization_range=base.quantization_range, modulus_range=base.modulus_range,
        timeout=60.0,
    )
    strategy = one_round(tapped, client_fn, min_sites=4)
    assert server_compat.masking_installed()
    fit = strategy.fits[1]
    assert len(tapped.received) == 4 and fit.aggregate is not None
    # the strategy kept every node's plaintext reply: example counts and claims
    assert sorted(r.num_examples for r in fit.replies) == sorted(EXAMPLES)
    assert sorted(str(r.claimed_site) for r in fit.replies) == ["s0", "s1", "s2", "s3"]
    # 1. What the server received from each node is not any site's (quantized) update.
    plain = []
    for pid in range(4):
        q_ratio = round(EXAMPLES[pid] / base.max_weight * base.quantization_range)
        weighted = [a * (q_ratio / base.quantization_range) for a in site_update(pid)]
        plain.append(quantize(weighted, base.clipping_range, base.quantization_range))
    for _, masked in tapped.received:
        assert all(m.dtype == np.uint32 for m in masked)  # 4 bytes a parameter, not int64's 8
        body = np.concatenate([m.ravel() for m in masked[1:]])  # masked[0] is the weight factor
        for q in plain:
            target = np.concatenate([a.ravel().astype(np.int64) for a in q]) % base.modulus_range
            assert np.mean(body == target) < 0.05
        # masks are spread over the whole modulus, not near the quantized values' range
        assert body.max() > base.quantization_range * 16
    # 2. The unmasked aggregate is the example-weighted average of the true updates.
    total = sum(EXAMPLES)
    expected = [sum(site_update(p)[i] * EXAMPLES[p] for p in range(4)) / total
                for i in range(len(SHAPES))]
    tol = 4 * 2 * base.clipping_range / base.quantization_range * base.max_weight / min(EXAMPLES)
    for got, want in zip(fit.aggregate, expected, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=tol)


class DroppingClient(KnownClient):
    """Site 3 shares its keys, then fails before uploading its masked vector."""

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        if self.pid == 3:
            raise RuntimeError("site 3 dropped out")
        return super().fit(parameters, config)


def dropping_client_fn(context: Context) -> Client:
    site_compat.install_masking()
    return DroppingClient(int(context.node_config["partition-id"])).to_client()


def test_a_site_that_drops_out_after_sharing_keys_is_unmasked_from_the_others() -> None:
    """The server reconstructs the dropped site's pairwise masks from the survivors' shares
    (Flower's protocol, with mask version 2's signs and streams) and the sum unmasks."""
    server_compat.install_masking()
    base = secagg_workflow(make_plan(rounds=1))
    # every node is sampled (min_sites=4: the engine may still be registering the fourth when
    # the round samples); the protocol, not the strategy, copes with the drop
    fit = one_round(base, dropping_client_fn, min_sites=4).fits[1]
    assert fit.aggregate is not None and len(fit.replies) == 3
    survivors = range(3)
    total = sum(EXAMPLES[p] for p in survivors)
    tol = 3 * 2 * base.clipping_range / base.quantization_range * base.max_weight / min(EXAMPLES)
    for i, got in enumerate(fit.aggregate):
        want = sum(site_update(p)[i] * EXAMPLES[p] for p in survivors) / total
        np.testing.assert_allclose(got, want, atol=tol)

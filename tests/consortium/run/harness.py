"""A unit harness around :class:`ConsortiumWorkflow`: its real round loop, store, audit log,
attribution and judgement, with Flower's SecAgg+ stage and evaluation replaced by fakes that
hand the strategy prepared replies (real receipts signed by real keys) and aggregate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Context, RecordDict
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig

from consortium import flower_compat
from consortium.audit import registry
from consortium.audit.log import AuditLog
from consortium.audit.trail import RunAudit
from consortium.home import open_home
from consortium.run import gate as gate_mod
from consortium.run.attribution import Attribution, Reply
from consortium.run.plan import RunPlan, make_plan
from consortium.run.preflight import Answer
from consortium.run.recorder import RunRecorder
from consortium.run.strategy import ConsortiumStrategy, EvalReply, FitRound
from consortium.run.workflow import ConsortiumWorkflow, RunOutcome
from consortium.store.records import RoundRecord
from consortium.store.run_store import RunStore
from site_node.protocol import wire
from tests.consortium.audit_fixture import default_site_keys, make_receipt

ROOT = Path(__file__).resolve().parents[3]
INITIAL = [np.full((3,), 0.5, np.float32), np.zeros((2,), np.float32)]
NEW = [np.full((3,), 0.25, np.float32), np.ones((2,), np.float32)]


class FakeGrid:
    """Stands in for the grid: the harness's fakes never use it."""


class Harness:
    """One deployment-mode run (node ids enrolled) driven round by round."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
                 policy_path: Path | None = None) -> None:
        self.plan: RunPlan = make_plan(policy_path=policy_path,
                                       store_path=tmp_path / "runs.sqlite", rounds=3,
                                       run_id="run-h")
        self.sites = self.plan.loaded.policy.sites
        self.keys: dict[str, Ed25519PrivateKey] = default_site_keys(self.sites)
        self.nodes = {s: 100 + i for i, s in enumerate(self.sites)}
        self.trained_rounds = dict.fromkeys(self.sites, 0)
        self.workflow = ConsortiumWorkflow(self.plan)
        self.workflow.fit_workflow = self._fit  # type: ignore[assignment]
        self.next_fit: FitRound | None = None
        #: Round -> its replies, for runs driven through the whole loop (:meth:`run`).
        self.script: Callable[[int], list[Reply]] | None = None
        self.current = 0
        self.fit_calls = 0
        monkeypatch.setattr(flower_compat, "default_evaluate_workflow", self._evaluate)
        #: The sites' preflight answers (None: every site admits); the rounds it was asked for.
        self.answers: list[Answer] | None = None
        self.preflights: list[int] = []
        monkeypatch.setattr(gate_mod, "ask", self._ask)
        self.store = RunStore(self.plan.store_path)
        self.log = AuditLog(self.store.db, key=open_home().signing_key())
        for s in self.sites:
            registry.enrol(self.log, s, self.keys[s].public_key(), mode="deployment",
                           node_id=self.nodes[s], node_fingerprint=f"SHA256:{s}")
        self.attribution: Attribution = self.workflow._attribution(self.log)
        run = self.workflow._run_record("simulation")
        self.audit = RunAudit(self.log, run)
        self.recorder = RunRecorder(self.store, self.audit)
        self.recorder.start()
        self.strategy = ConsortiumStrategy(
            min_sites=self.plan.loaded.policy.min_sites,
            initial_parameters=ndarrays_to_parameters(INITIAL), fit_config=self.plan.fit_config)
        self.context = LegacyContext(
            context=Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                            run_config={}),
            config=ServerConfig(num_rounds=self.plan.rounds), strategy=self.strategy)
        flower_compat.set_global_weights(self.context, INITIAL)

    # -- the fakes ------------------------------------------------------------------------

    def _fit(self, grid: Any, context: Any) -> None:
        self.fit_calls += 1
        if self.script is not None:  # a whole run: the round from the context, its replies
            cfg = context.state.config_records[flower_compat.MAIN_CONFIGS_RECORD]
            self.current = int(cfg[flower_compat.Key.CURRENT_ROUND])
            self.next_fit = FitRound(replies=self.script(self.current), aggregate=NEW)
        if self.next_fit is not None:
            self.strategy.fits[self.current] = self.next_fit

    def _ask(self, grid: Any, *, instruction: Any, attribution: Any, min_sites: int,
             members: int, timeout: Any) -> tuple[list[Answer], list[Any]]:
        self.preflights.append(int(instruction[wire.ROUND]))
        if self.answers is None:
            return [Answer(site=s, admits=True) for s in self.sites], []
        return list(self.answers), []

    def _evaluate(self, grid: Any, context: Any) -> None:
        self.strategy.evals[self.current] = [
            EvalReply(Reply(self.nodes[s], 50, {wire.SITE: s, wire.ACCURACY: 0.75}), loss=0.5)
            for s in self.sites]

    # -- replies ----------------------------------------------------------------------------

    def trained(self, site: str, rnd: int, **kw: Any) -> Reply:
        """An honest training reply from ``site`` (counts its round for later receipts)."""
        self.trained_rounds[site] += 1
        receipt = make_receipt(site, rnd, self.plan.policy_sha256, run_id=self.plan.run_id,
                               trained_rounds=self.trained_rounds[site])
        claim = kw.pop("claim", site)
        return Reply(kw.pop("node", self.nodes[site]), receipt.num_examples,
                     {wire.SITE: claim, **receipt.sign(self.keys[site]).to_wire()})

    def refusal(self, site: str, reason: str, *, final: bool = False) -> Reply:
        extra = {wire.REFUSAL_FINAL: True} if final else {}
        return Reply(self.nodes[site], 0, {wire.SITE: site, wire.REFUSAL: reason, **extra})

    def round(self, rnd: int, replies: list[Reply] | None,
              aggregate: list[np.ndarray] | None = None) -> RoundRecord:
        """Run round ``rnd`` of the real loop; ``replies=None`` means SecAgg+ halted."""
        self.current = rnd
        self.next_fit = None if replies is None else FitRound(
            replies=replies, aggregate=NEW if aggregate is None else aggregate)
        return self.workflow._one_round(rnd, FakeGrid(), self.context,  # type: ignore[arg-type]
                                        self.recorder, self.attribution)

    def run(self, script: Callable[[int], list[Reply]] | None = None) -> RunOutcome:
        """The whole round loop (preflight included), each round's replies from ``script``."""
        self.script = script
        return self.workflow._rounds(FakeGrid(), self.context,  # type: ignore[arg-type]
                                     self.recorder, self.attribution)

    def global_weights(self) -> list[np.ndarray]:
        return flower_compat.global_weights(self.context)

    def count(self, table: str, where: str = "1") -> int:
        return int(self.store.db.query(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}")[0]["n"])


def policy_variant(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    """The embedded consortium policy with some lines replaced, as a file."""
    text = (ROOT / "policies" / "consortium.yaml").read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path

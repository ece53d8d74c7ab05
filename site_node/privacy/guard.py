"""The site's privacy guard around each round: its own policy, its ledger, its receipts.

:meth:`SiteGuard.admit` merges the site's own policy into the consortium policy of the round
(the one tighten-only merge, :func:`policies.effective.effective_policy`; a loosening site
policy is refused, never clamped), derives the round's mechanism and runs admission control,
refusing before any training. :meth:`SiteGuard.record` appends the trained round to the ledger
at once (before the update is returned, so a lost upload is still counted) and signs the
round's privacy receipt with the site's key.

The site's own policy is the file its settings name, else ``policy.yaml`` in its state
directory, else none. The repository's example site policies are never picked up by name: the
local demonstration passes them explicitly, and only when asked to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.effective import EffectivePolicy, effective_policy
from policies.errors import PolicyError
from policies.loader import LoadedSitePolicy, load_site_policy
from site_node.errors import ConfigError, FinalRefusal, Refusal
from site_node.home import RECEIPT_KEY_FILE, SITE_POLICY_FILE
from site_node.instruction import Instruction
from site_node.privacy import accountant, budget, data_record, reservations
from site_node.privacy.admission import Ceilings, admit, assess
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger
from site_node.protocol import keys
from site_node.protocol.errors import KeyFileError
from site_node.protocol.mechanism import Mechanism
from site_node.protocol.receipt import Receipt, SignedReceipt, update_sha256
from site_node.settings import NodeSettings
from site_node.training import TrainPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdmittedRound:
    """A round the site agreed to train, under its effective policy."""

    instruction: Instruction
    effective: EffectivePolicy
    plan: TrainPlan
    data_sha256: str | None = None


def find_site_policy(settings: NodeSettings) -> LoadedSitePolicy | None:
    """The site's own policy: the configured file, else ``policy.yaml`` in its state dir."""
    path = settings.policy_path or settings.state_dir / SITE_POLICY_FILE
    if settings.policy_path is None and not path.is_file():
        return None
    loaded = load_site_policy(path)
    if loaded.policy.site != settings.site:
        raise ConfigError(f"{path}: policy is for site {loaded.policy.site!r}, not "
                          f"{settings.site!r}")
    return loaded


class SiteGuard:
    """Enforces one site's policy and keeps its ledger and receipts.

    Raises
    ------
    ConfigError
        If the site's own policy file is invalid or belongs to another site.
    """

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.site = settings.site
        self.state_dir = Path(settings.state_dir)
        try:
            self.policy = find_site_policy(settings)
        except PolicyError as exc:
            raise ConfigError(str(exc)) from None

    def effective(self, instruction: Instruction) -> EffectivePolicy:
        """The round's consortium policy tightened by the site's; refuses a loosening one."""
        consortium = instruction.policy.policy
        if self.site not in consortium.sites:
            raise Refusal(f"site {self.site} is not a member of this consortium "
                          f"({', '.join(consortium.sites)}); it refuses to train")
        try:
            return effective_policy(consortium, self.policy.policy if self.policy else self.site)
        except PolicyError as exc:
            source = self.policy.source if self.policy else "site policy"
            raise Refusal(f"site {self.site} refuses: {source}: {exc}") from None

    def plan(self, instruction: Instruction, eff: EffectivePolicy) -> TrainPlan:
        """The round's DP-SGD plan under the effective policy (σ never below the consortium's).

        With a target ε, a site whose effective δ, target, sampling rate, local work or
        accountant differ from the consortium's calibrates its own σ for the planned rounds; the
        larger of the two is used.
        """
        dp, base = eff.dp, instruction.policy.policy
        steps = dp.steps_per_round
        sigma = instruction.noise_multiplier
        if dp.noise_multiplier is not None:
            sigma = max(sigma, float(dp.noise_multiplier))
        same = (eff.delta, dp.target_epsilon, dp.sample_rate, steps, dp.accountant) == (
            base.delta, base.dp.target_epsilon, base.dp.sample_rate, base.dp.steps_per_round,
            base.dp.accountant)
        if dp.target_epsilon is not None and not same:
            own = accountant.noise_for_target(
                target_epsilon=float(dp.target_epsilon), delta=eff.delta,
                sample_rate=float(dp.sample_rate), steps=steps * instruction.rounds_planned,
                accountant=dp.accountant)
            sigma = max(sigma, own)
        unit = instruction.task.task.privacy_unit
        return TrainPlan(noise_multiplier=sigma, sample_rate=float(dp.sample_rate),
                         max_grad_norm=float(dp.max_grad_norm), steps=steps,
                         learning_rate=float(dp.learning_rate), accountant=dp.accountant,
                         delta=eff.delta, unit=unit.unit, patient_gradient=unit.patient_gradient)

    def _admission(self, instruction: Instruction, num_examples: int,
                   num_patients: int | None = None
                   ) -> tuple[EffectivePolicy, TrainPlan, Ceilings]:
        """The round's effective policy, plan and ceilings; refuses an expected batch q·N < 1
        (q·P < 1 patients for a patient-level task)."""
        eff = self.effective(instruction)
        plan = self.plan(instruction, eff)
        if plan.unit == "patient":
            patients = num_patients or 0
            if plan.sample_rate * patients < 1:
                raise Refusal(
                    f"site {self.site} refuses: {patients} training patient(s) at sample rate "
                    f"{plan.sample_rate:g} give an expected batch of "
                    f"{plan.sample_rate * patients:.2f} patients < 1 (the task's privacy unit "
                    "is the patient); nothing was spent")
        batch = plan.sample_rate * num_examples
        if batch < 1:
            raise Refusal(
                f"site {self.site} refuses: {num_examples} training example(s) at sample rate "
                f"{plan.sample_rate:g} give an expected batch of {batch:.2f} < 1 (too few rows "
                "for the sampling rate); nothing was spent")
        ceilings = Ceilings(delta=eff.delta, epsilon_ceiling=eff.epsilon_ceiling,
                            lifetime_epsilon_ceiling=eff.lifetime_epsilon_ceiling)
        return eff, plan, ceilings

    def admit(self, instruction: Instruction, *, num_examples: int,
              data_sha256: str | None = None, num_patients: int | None = None
              ) -> AdmittedRound:
        """Tighten the round by the site's policy and admit it; raises :class:`Refusal`.

        Besides the ε ceilings, a site with too few training examples for the round's sampling
        rate refuses: Opacus' expected batch size q·N must be at least 1; and a site whose data
        (``data_sha256``, :mod:`site_node.data.fingerprint`) are not those the run first trained
        on here refuses (:mod:`site_node.privacy.data_record`). A refusal by the ε ceilings is
        recorded in the ledger and final for the run (:class:`FinalRefusal`).
        """
        eff, plan, ceilings = self._admission(instruction, num_examples, num_patients)
        with SiteLedger.in_state_dir(self.state_dir) as ledger:
            changed = data_sha256 and data_record.mismatch(
                ledger, site=self.site, run_id=instruction.run_id, rnd=instruction.round,
                data_sha256=data_sha256)
            if changed:
                raise Refusal(changed)
            try:
                admit(ledger, site=self.site, run_id=instruction.run_id, rnd=instruction.round,
                      rounds_planned=instruction.rounds_planned, mechanism=plan.mechanism,
                      ceilings=ceilings)
            except Refusal as exc:
                raise FinalRefusal(str(exc)) from None
        return AdmittedRound(instruction, eff, plan, data_sha256)

    def check_history(self, instruction: Instruction) -> None:
        """Refuse a round if this site's ledger lacks a round of the run whose receipt the
        consortium holds from this site (the run was resumed with another site home).

        Raises
        ------
        Refusal
            Naming the ledger and the missing rounds; nothing is spent.
        """
        held = instruction.held_rounds(self.site)
        if not held:
            return
        ledger_file = self.state_dir / LEDGER_FILE
        trained: set[int] = set()
        if ledger_file.is_file():
            with SiteLedger(ledger_file, readonly=True) as ledger:
                trained = {e.round for e in ledger.events(instruction.run_id)}
        missing = [r for r in held if r not in trained]
        if missing:
            raise Refusal(
                f"site {self.site} refuses round {instruction.round} of run "
                f"{instruction.run_id}: the consortium holds this site's receipts for round(s) "
                f"{', '.join(map(str, missing))} of the run, but the ledger of this site home "
                f"({ledger_file}) has no record of them (another site home?); nothing was spent")

    def would_admit(self, instruction: Instruction, *, num_examples: int,
                    num_patients: int | None = None) -> None:
        """The admission decision of :meth:`admit`, read-only: raises :class:`Refusal` (a
        :class:`FinalRefusal` for the ε ceilings) and records, reserves or spends nothing."""
        _, plan, ceilings = self._admission(instruction, num_examples, num_patients)
        with self._ledger_to_read() as ledger:
            _, refusal = assess(ledger, site=self.site, run_id=instruction.run_id,
                                rnd=instruction.round,
                                rounds_planned=instruction.rounds_planned,
                                mechanism=plan.mechanism, ceilings=ceilings)
        if refusal is not None:
            raise FinalRefusal(refusal)

    @contextmanager
    def _ledger_to_read(self) -> Iterator[SiteLedger]:
        """The site's ledger opened read-only, or an empty one if it has none yet."""
        path = self.state_dir / LEDGER_FILE
        if path.is_file():
            with SiteLedger(path, readonly=True) as ledger:
                yield ledger
            return
        with TemporaryDirectory() as empty, SiteLedger.in_state_dir(Path(empty)) as ledger:
            yield ledger

    def signing_key(self) -> Ed25519PrivateKey:
        """The site's receipt key; the site refuses to train without one."""
        try:
            return keys.load_signing_key(self.state_dir / RECEIPT_KEY_FILE)
        except KeyFileError as exc:
            raise Refusal(f"site {self.site} has no usable receipt key ({exc}); run "
                          "`site-node init`") from None

    def record(self, admitted: AdmittedRound, *, weights: list[np.ndarray],
               mechanism: Mechanism, num_examples: int) -> SignedReceipt:
        """Record the trained round in the ledger at once, then sign and keep its receipt.

        The round is committed to the ledger first (with its run's reservation shrunk by it, in
        the same transaction), so it counts even if anything after training fails (signing, the
        upload).
        """
        ins, plan = admitted.instruction, admitted.plan
        key = self.signing_key()
        with SiteLedger.in_state_dir(self.state_dir) as ledger:
            with ledger.transaction():
                ledger.record(run_id=ins.run_id, rnd=ins.round, policy_sha256=ins.policy.sha256,
                              mechanism=mechanism, delta=plan.delta)
                reservations.advance(ledger, run_id=ins.run_id, recorded_round=ins.round)
                if admitted.data_sha256:
                    data_record.record(ledger, run_id=ins.run_id, rnd=ins.round,
                                       data_sha256=admitted.data_sha256)
            run_eps = budget.run_epsilon(ledger, ins.run_id, delta=plan.delta,
                                         accountant_name=plan.accountant)
            life = budget.lifetime(ledger)
            assert life is not None
            receipt = Receipt(
                run_id=ins.run_id, round=ins.round, site=self.site,
                policy_sha256=ins.policy.sha256, task_sha256=ins.task.sha256,
                site_policy_sha256=self.policy.sha256 if self.policy else "",
                noise_multiplier=mechanism.noise_multiplier,
                sample_rate=mechanism.sample_rate, steps=mechanism.steps,
                max_grad_norm=mechanism.max_grad_norm, accountant=mechanism.accountant,
                delta=plan.delta, epsilon=run_eps, lifetime_epsilon=life.epsilon,
                epsilon_ceiling=float(admitted.effective.epsilon_ceiling),
                lifetime_epsilon_ceiling=float(admitted.effective.lifetime_epsilon_ceiling),
                num_examples=int(num_examples), update_sha256=update_sha256(weights),
                issued_at=datetime.now(UTC).isoformat(), privacy_unit=mechanism.unit,
            )
            signed = receipt.sign(key)
            ledger.store_receipt(run_id=ins.run_id, rnd=ins.round, data=signed.data,
                                 signature=signed.signature)
        return signed

    def spent_before(self, instruction: Instruction) -> SignedReceipt | None:
        """The kept receipt if this round of this run was already trained (None if not).

        A round can be asked for again when the coordinator resumes a run that crashed while
        the round was in flight; the site never trains it twice.

        Raises
        ------
        Refusal
            If the round was trained but its receipt was not kept.
        """
        ledger_file = self.state_dir / LEDGER_FILE
        if not ledger_file.is_file():
            return None
        with SiteLedger(ledger_file, readonly=True) as ledger:
            if not ledger.spent(instruction.run_id, instruction.round):
                return None
            kept = ledger.receipt(instruction.run_id, instruction.round)
        if kept is None:
            raise Refusal(f"site {self.site} already trained round {instruction.round} of run "
                          f"{instruction.run_id}; it never trains a round twice")
        return SignedReceipt.from_parts(*kept)

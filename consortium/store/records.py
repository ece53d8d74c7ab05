"""Frozen value objects that the run store holds.

One row of each table is one of these records. They carry plain Python values only, so that the
dashboard and the export can use them without importing torch or Flower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class RunStatus(StrEnum):
    """How a run stands. The values are what the run store holds (and the audit log's
    ``run-stop`` entries name); a row with any other value is refused when read."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"
    #: Shown only, never stored: the dashboard's name for a ``running`` run whose process on
    #: this host is gone.
    KILLED = "killed"


class RoundStatus(StrEnum):
    """How a recorded round ended."""

    OK = "ok"
    FAILED = "failed"


class RunMode(StrEnum):
    """Who provisioned the sites' keys of a run."""

    #: The sites hold their own keys, enrolled beforehand.
    DEPLOYMENT = "deployment"
    #: The local demonstration provisioned and enrolled the sites' keys.
    LOCAL_DEMO = "local-demo"


RUN_RUNNING = RunStatus.RUNNING
RUN_COMPLETED = RunStatus.COMPLETED
RUN_STOPPED = RunStatus.STOPPED
RUN_FAILED = RunStatus.FAILED
RUN_INTERRUPTED = RunStatus.INTERRUPTED
RUN_ABANDONED = RunStatus.ABANDONED
#: The statuses a run store may hold (every :class:`RunStatus` but the shown-only ``killed``).
RUN_STATUSES = (RUN_RUNNING, RUN_COMPLETED, RUN_STOPPED, RUN_FAILED, RUN_INTERRUPTED,
                RUN_ABANDONED)

ROUND_OK = RoundStatus.OK
ROUND_FAILED = RoundStatus.FAILED
ROUND_STATUSES = tuple(RoundStatus)

MODE_DEPLOYMENT = RunMode.DEPLOYMENT
MODE_DEMO = RunMode.LOCAL_DEMO

ENGINE_SIMULATION = "simulation"
ENGINE_DEPLOYMENT = "deployment"
#: A local-only run of one site (``consortium compare``): the site trains alone, in-process.
ENGINE_LOCAL = "local"


@dataclass(frozen=True)
class RunRecord:
    """One federated run of the consortium.

    Attributes
    ----------
    run_id : str
        Unique id of the run (a UUID4 string unless given).
    started_at, finished_at : str
        ISO-8601 UTC timestamps; ``finished_at`` is ``None`` while the run is live.
    status : RunStatus
        One of :data:`RUN_STATUSES` (the dashboard may show ``killed``).
    stop_reason : str
        Why the run ended (rounds done, target reached, no improvement, budget, error).
    engine : str
        ``"simulation"`` or ``"deployment"`` (which Flower engine ran it), or ``"local"`` (one
        site trained alone, for a comparison).
    mode : RunMode
        :data:`MODE_DEPLOYMENT` (sites hold their own keys, enrolled beforehand) or
        :data:`MODE_DEMO` (the local demonstration provisioned and enrolled the sites' keys).
    policy_sha256, policy_json : str
        The policy the run was started under: content hash and canonical JSON.
    delta : float
        The consortium's δ (a site may state its ε at a smaller δ of its own).
    epsilon_ceiling : float
        The per-site ε ceiling for the run.
    rounds_planned : int
        How many rounds the run was configured for.
    seed : int
        Seed of the run: it fixes the initial global model. DP noise and Poisson sampling
        always draw from operating-system entropy, never from this seed.
    sites : tuple of str
        The member sites expected to take part.
    secagg_json : str
        The SecAgg+ parameters used, as JSON.
    owner : str
        ``host:pid`` of the process running the run (to tell a live run from one whose process
        was killed).
    example_site_policies : bool
        Whether the local demonstration applied the example site policies.
    task_sha256, task_json : str
        The task the run trained: content hash and canonical JSON (``None`` for runs recorded
        before tasks existed, schema 2).
    data_fingerprints : dict of str to str
        Site -> SHA-256 of the data it trains on, for a local run whose data the consortium
        holds (``consortium run``/``compare``; :mod:`consortium.run.data_fingerprint`); ``None``
        for a deployed run (each site holds its data) and runs recorded before schema 4.
    choice_json : str
        Canonical JSON of how the training settings were chosen, when the policy stated only
        the privacy terms (:mod:`policies.choice`): the inputs, the settings and their ε cost;
        ``None`` when the policy set them itself.
    """

    run_id: str
    started_at: str
    status: RunStatus
    engine: str
    policy_sha256: str
    policy_json: str
    delta: float
    epsilon_ceiling: float
    rounds_planned: int
    seed: int
    sites: tuple[str, ...]
    secagg_json: str
    mode: RunMode = MODE_DEPLOYMENT
    finished_at: str | None = None
    stop_reason: str | None = None
    owner: str | None = None
    example_site_policies: bool = False
    task_sha256: str | None = None
    task_json: str | None = None
    data_fingerprints: dict[str, str] | None = None
    choice_json: str | None = None


#: How much a model must beat the majority-class rate by (float noise of the two shares).
_TIE = 1e-9


def beats_majority(accuracy: float | None, majority_rate: float | None) -> bool | None:
    """Whether ``accuracy`` beats ``majority_rate`` (None when either is unknown, NaN or not a
    number, as a corrupted store may hold)."""
    pair = (accuracy, majority_rate)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)
               for v in pair):
        return None
    return float(pair[0]) > float(pair[1]) + _TIE  # type: ignore[arg-type]


@dataclass(frozen=True)
class SiteRoundRecord:
    """What one site did in one round: its evaluation, and the privacy figures of its
    verified receipt.

    ``epsilon`` is the site's *cumulative* ε in the run after this round, at ``delta`` (the
    site's own δ, at most the run's), as its signed receipt states and the consortium verified;
    the mechanism fields describe this round's DP-SGD work, so that anyone can recompute it.
    ``refusal`` is why the site refused the round (it trained and spent nothing).
    ``majority_rate`` is the share of the site's test split in its most frequent class, as the
    site reported it with its evaluation: the accuracy of a model that predicts that class for
    everything (:attr:`beats_majority`).
    """

    site: str
    accuracy: float | None = None
    loss: float | None = None
    num_examples: int | None = None
    num_train_examples: int | None = None
    epsilon: float | None = None
    delta: float | None = None
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int | None = None
    max_grad_norm: float | None = None
    accountant: str | None = None
    trained: bool = False
    refusal: str | None = None
    majority_rate: float | None = None

    @property
    def beats_majority(self) -> bool | None:
        """Whether the site's accuracy beats its majority-class rate (None: either unknown).

        A model that only ties it (one that predicts the majority class for everything) does
        not: it learned nothing for this site.
        """
        return beats_majority(self.accuracy, self.majority_rate)


@dataclass(frozen=True)
class RoundRecord:
    """One round of a run, as the consortium saw it.

    ``accuracy_mean`` and ``loss_mean`` are unweighted means over the sites that evaluated;
    the ``*_weighted`` fields weight each site by its number of test examples.
    """

    round: int
    status: RoundStatus
    started_at: str
    finished_at: str
    duration_s: float
    accuracy_mean: float | None = None
    accuracy_weighted: float | None = None
    loss_mean: float | None = None
    loss_weighted: float | None = None
    failure_reason: str | None = None
    policy_sha256: str | None = None
    sites: tuple[SiteRoundRecord, ...] = field(default_factory=tuple)


SCOPE_OWN = "own"
SCOPE_UNION = "union"
MODEL_LOCAL = "local"
MODEL_FEDERATED = "federated"


@dataclass(frozen=True)
class ComparisonCell:
    """How one model did on one class of one test set, for one site's row of a comparison.

    ``site``'s row compares its local-only model (``model`` ``"local"``) with the federated
    model (``"federated"``), on the site's own test set (``scope`` ``"own"``) and on the union
    of every site's test set (``"union"``). ``site_train_count`` is how many training examples
    of the class the site holds (0: its local model never saw the class).
    """

    site: str
    scope: str
    model: str
    class_index: int
    class_name: str
    correct: int
    total: int
    site_train_count: int

    @property
    def accuracy(self) -> float | None:
        """Share of the class's test examples the model got right (None if there are none)."""
        return self.correct / self.total if self.total else None


@dataclass(frozen=True)
class ComparisonRecord:
    """A comparison of each site's local-only model with the federated model (same DP budget).

    ``local_runs`` maps each site to the run id of its local-only run (engine ``"local"``); every
    one of those runs, and the federated run, is a run of the store with its rounds, receipts and
    audit entries.
    """

    comparison_id: str
    created_at: str
    task_sha256: str
    federated_run_id: str
    local_runs: dict[str, str]
    cells: tuple[ComparisonCell, ...] = field(default_factory=tuple)

"""Why a hospital joins: each site's local-only model against the federated model, at the same
DP budget (``consortium compare``).

The federated run runs exactly as ``consortium run`` does; then, for each site, a local-only run
of as many rounds under the same instruction (:mod:`consortium.run.local_run`). Every model is
evaluated by every site on its own test split (what a site would report: per class, how many of
its test examples the model gets right, and how many there are), with the site code's own
evaluation (:func:`site_node.training.class_counts`). A site's row of the table holds its local
model and the federated model, on its own test set (``own``) and on the union of every site's
test set (``union``, the counts summed over sites), with how many training examples of each class
the site holds (0: its local model never saw the class). The comparison is recorded in the run
store, so the export and the dashboard show it.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Mapping
from hashlib import sha256
from pathlib import Path

import numpy as np

from consortium.errors import StoreError
from consortium.run.local_run import LocalOutcome, LocalRun
from consortium.run.plan import RunPlan
from consortium.run.rounds import utc_now
from consortium.store.comparisons import record_comparison
from consortium.store.records import (
    MODEL_FEDERATED,
    MODEL_LOCAL,
    SCOPE_OWN,
    SCOPE_UNION,
    ComparisonCell,
    ComparisonRecord,
    RoundRecord,
    beats_majority,
)
from consortium.store.run_store import RunStore
from policies.task import AnyTask
from policies.task_loader import LoadedTask
from site_node.data import load_cached, with_site_indicator
from site_node.demo import demo_settings
from site_node.training import class_counts

Counts = tuple[list[int], list[int]]


def _sum(counts: list[Counts]) -> Counts:
    correct = np.sum([c for c, _ in counts], axis=0).tolist()
    total = np.sum([t for _, t in counts], axis=0).tolist()
    return [int(x) for x in correct], [int(x) for x in total]


def compare_models(task: LoadedTask, data: Mapping[str, Path],
                   federated: list[np.ndarray], local: Mapping[str, list[np.ndarray]], *,
                   model_task: AnyTask | None = None) -> tuple[ComparisonCell, ...]:
    """The comparison cells of every site in ``local`` (each site's data from ``data``).

    ``model_task`` is the task as the run's members trained it (default: ``task``'s for the
    sites in ``data``): a task with a site indicator gives each site's rows its own one-hot,
    as the sites did in training.
    """
    sites = list(data)
    model_task = model_task or task.task.for_members(tuple(sites))
    site_data = {s: with_site_indicator(load_cached(task, data[s]), model_task, s)
                 for s in sites}
    models = {MODEL_FEDERATED: federated} | {f"{MODEL_LOCAL}:{s}": w for s, w in local.items()}
    counts = {(m, e): class_counts(w, site_data[e].x_test, site_data[e].y_test, model_task)
              for m, w in models.items() for e in sites}
    names = task.task.label.names
    cells = []
    for site in local:
        trained = np.bincount(site_data[site].y_train, minlength=len(names)).tolist()
        rows = {
            (SCOPE_OWN, MODEL_LOCAL): counts[(f"{MODEL_LOCAL}:{site}", site)],
            (SCOPE_OWN, MODEL_FEDERATED): counts[(MODEL_FEDERATED, site)],
            (SCOPE_UNION, MODEL_LOCAL): _sum([counts[(f"{MODEL_LOCAL}:{site}", e)]
                                              for e in sites]),
            (SCOPE_UNION, MODEL_FEDERATED): _sum([counts[(MODEL_FEDERATED, e)] for e in sites]),
        }
        for (scope, model), (correct, total) in rows.items():
            cells += [ComparisonCell(site=site, scope=scope, model=model, class_index=k,
                                     class_name=name, correct=correct[k], total=total[k],
                                     site_train_count=int(trained[k]))
                      for k, name in enumerate(names)]
    return tuple(cells)


def accuracy(cells: tuple[ComparisonCell, ...] | list[ComparisonCell], *, site: str, scope: str,
             model: str, classes: set[int] | None = None) -> float | None:
    """Accuracy over the chosen cells (all classes, or ``classes``), pooled by example."""
    chosen = [c for c in cells if (c.site, c.scope, c.model) == (site, scope, model)
              and (classes is None or c.class_index in classes)]
    total = sum(c.total for c in chosen)
    return sum(c.correct for c in chosen) / total if total else None


def majority_rate(cells: tuple[ComparisonCell, ...] | list[ComparisonCell], *, site: str,
                  scope: str = SCOPE_OWN) -> float | None:
    """The share of the most frequent class in a site's test set (from the cells' totals)."""
    totals = [c.total for c in cells if (c.site, c.scope, c.model) == (site, scope,
                                                                       MODEL_FEDERATED)]
    return max(totals) / sum(totals) if sum(totals) else None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def summary_line(cells: tuple[ComparisonCell, ...] | list[ComparisonCell],
                 sites: tuple[str, ...]) -> str:
    """One line: local-only vs federated over all classes, each site on its own test set
    (means over the sites), beside the majority-class rate; flags a model that does not beat
    it at some site."""
    def acc(site: str, model: str) -> float | None:
        return accuracy(cells, site=site, scope=SCOPE_OWN, model=model)

    local = {s: acc(s, MODEL_LOCAL) for s in sites}
    fed = {s: acc(s, MODEL_FEDERATED) for s in sites}
    floor = {s: majority_rate(cells, site=s) for s in sites}
    ahead = sum(1 for s in sites if (fed[s] or 0.0) > (local[s] or 0.0))

    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    line = (f"Summary, all classes, each site's own test set (mean of {len(sites)} sites): "
            f"local-only {fmt(_mean(list(local.values())))}, federated "
            f"{fmt(_mean(list(fed.values())))}, majority class "
            f"{fmt(_mean(list(floor.values())))}; federated ahead at {ahead} of {len(sites)}")
    for name, figures in (("local-only", local), ("federated", fed)):
        below = [s for s in sites if beats_majority(figures[s], floor[s]) is False]
        if below:
            line += (f"; WARNING: the {name} model does not beat the majority class at "
                     f"{', '.join(below)}")
    return line


def missing_classes(cells: tuple[ComparisonCell, ...] | list[ComparisonCell], site: str
                    ) -> set[int]:
    """The classes a site holds no training example of."""
    return {c.class_index for c in cells if c.site == site and c.site_train_count == 0}


def final_weights(store_path: Path, run_id: str) -> list[np.ndarray]:
    """The global model of a run's last completed round (checked against its SHA-256).

    Raises
    ------
    StoreError
        If the run completed no round, or its checkpoint is damaged.
    """
    with RunStore(store_path, readonly=True) as store:
        last = store.last_checkpoint(run_id)
    if last is None:
        raise StoreError(f"run {run_id} completed no round: there is no federated model to "
                         "compare")
    rnd, blob, digest = last
    if sha256(blob).hexdigest() != digest:
        raise StoreError(f"run {run_id}: the checkpoint of round {rnd} does not match its SHA-256")
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def local_runs(plan: RunPlan, data: Mapping[str, Path], rounds: int, *,
               on_round: Callable[[str, RoundRecord], None] | None = None
               ) -> dict[str, LocalOutcome]:
    """Each site's local-only run of ``rounds`` rounds under the federated plan's instruction."""
    outcomes = {}
    for site in plan.loaded.policy.sites:
        settings = demo_settings(site, data_path=data[site],
                                 example_policy=plan.example_site_policies)

        def report(rec: RoundRecord, site: str = site) -> None:
            if on_round is not None:
                on_round(site, rec)

        outcomes[site] = LocalRun(plan, settings, on_round=report).run(rounds)
    return outcomes


def compare(plan: RunPlan, data: Mapping[str, Path], outcomes: Mapping[str, LocalOutcome]
            ) -> ComparisonRecord:
    """Evaluate the federated and local models on every site's test split; record the table."""
    federated = final_weights(plan.store_path, plan.run_id)
    cells = compare_models(plan.task, data, federated,
                           {s: o.weights for s, o in outcomes.items()}, model_task=plan.model_task)
    comparison = ComparisonRecord(
        comparison_id=str(uuid.uuid4()), created_at=utc_now(), task_sha256=plan.task.sha256,
        federated_run_id=plan.run_id, local_runs={s: o.run_id for s, o in outcomes.items()},
        cells=cells)
    with RunStore(plan.store_path) as store:
        record_comparison(store.db, comparison)
    return comparison

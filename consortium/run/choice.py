"""A local run under a policy of privacy terms only: the training settings chosen for it.

The consortium holds the sites' files in a local run (``consortium run``/``compare`` with
``--task`` and ``--data``), so it knows each site's number of training examples before the
first round: the same figure every site's receipts disclose. :func:`complete_terms` reads only
those counts (the task's fixed split of each file), then :func:`policies.choice.choose` completes
the terms with the real accountant (:func:`site_node.privacy.accountant.noise_for_target`). No
record's value shapes the choice, so it costs no ε; the run records the choice (``choice_json``
in its runs row and in its signed run-start) and the completed policy as the policy it ran
under.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from policies.choice import choose
from policies.loader import LoadedPolicy, LoadedTerms, policy_sha256
from policies.task_loader import LoadedTask
from site_node.data import DataRefused, load_cached
from site_node.errors import DataError
from site_node.privacy.accountant import noise_for_target

log = logging.getLogger(__name__)


def train_counts(task: LoadedTask, data: Mapping[str, Path]) -> dict[str, int]:
    """Each site's number of training units under the task's fixed split: examples (what its
    receipts disclose), or patients when the task's privacy unit is the patient (the sampling
    rate is then a rate of patients); a file that does not fit the task is refused, naming the
    site and the file."""
    patients = task.task.privacy_unit.unit == "patient"
    counts = {}
    for site, path in data.items():
        try:
            loaded = load_cached(task, path)
        except DataRefused as exc:
            raise DataError(f"site {site}: {exc}") from None
        counts[site] = (loaded.num_patients or 0) if patients else loaded.num_train
    return counts


def complete_terms(terms: LoadedTerms, task: LoadedTask, data: Mapping[str, Path]
                   ) -> tuple[LoadedPolicy, str]:
    """The policy completed for this task and these sites, and the record of the choice.

    Raises
    ------
    policies.errors.PolicyError
        If the completed policy is invalid.
    site_node.errors.DataError
        If a site's file does not fit the task.
    """
    choice = choose(terms.terms, task.task, train_counts(task, data), task_sha256=task.sha256,
                    noise_for=noise_for_target)
    chosen = choice.record["chosen"]
    log.info("training settings chosen from public information (0 ε): %s", chosen)
    source = (f"{terms.source} (privacy terms only; training settings chosen from public "
              "information, 0 ε)")
    loaded = LoadedPolicy(policy=choice.policy, source=source,
                          sha256=policy_sha256(choice.policy))
    return loaded, choice.record_json

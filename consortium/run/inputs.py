"""What a local consortium runs on: a task, a policy and each site's data, resolved once.

Either a named example (``--example NAME``: its manifest names the task, the policy and each
site's file, :mod:`policies.example`) or a task file with the sites' files (``--task FILE --data
SITE=PATH ...``).

- With an example, the member list is the policy's (the example's, or ``--policy``): every
  member must have a file in the example (a member without data is refused, never silently
  replaced by another site); the example's other sites do not take part.
- With a task file, the sites are the ones given: the consortium policy's member list is
  replaced by them and the policy is validated again (``min_sites`` and SecAgg+'s shares must
  still fit), so the policy a run records (canonical JSON and hash) is that effective one.
  ``--policy`` replaces the embedded policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from consortium.errors import PlanError
from policies.errors import PolicyError
from policies.example import DEFAULT_EXAMPLE, load_example
from policies.identity import check_site_id
from policies.loader import (
    LoadedPolicy,
    LoadedTerms,
    load_policy,
    load_policy_document,
    terms_with_sites,
    with_sites,
)
from policies.task_loader import LoadedTask, load_task


@dataclass(frozen=True)
class RunInputs:
    """The task, the effective policy (its sites are the data's) and each site's data."""

    task: LoadedTask
    policy: LoadedPolicy
    data: dict[str, Path]
    example: str | None = None
    #: How the training settings were chosen (canonical JSON), for a policy of privacy terms
    #: only (:mod:`consortium.run.choice`); None when the policy set them.
    choice_json: str | None = None

    @property
    def sites(self) -> tuple[str, ...]:
        """The sites, in the order given."""
        return tuple(self.data)


def parse_data(values: Sequence[str]) -> dict[str, Path]:
    """``SITE=PATH`` options -> site id -> absolute path.

    Raises
    ------
    PlanError
        For a value without ``=``, an invalid site id, or a site given twice.
    """
    data: dict[str, Path] = {}
    for value in values:
        site, sep, path = value.partition("=")
        if not sep or not path:
            raise PlanError(f"--data {value!r}: expected SITE=PATH")
        try:
            check_site_id(site, what=f"--data {value!r}")
        except PolicyError as exc:
            raise PlanError(str(exc)) from None
        if site in data:
            raise PlanError(f"--data: site {site!r} is given twice")
        data[site] = Path(path).expanduser().resolve()
    return data


def resolve_inputs(*, example: str | None = None, task: Path | None = None,
                   data: Sequence[str] = (), policy: Path | None = None,
                   rounds: int | None = None) -> RunInputs:
    """Resolve the options of ``consortium run`` or ``consortium compare``.

    Raises
    ------
    PlanError
        If the options do not go together (``--example`` with ``--task``, ``--task`` without
        ``--data`` or the other way round) or a ``--data`` value is invalid.
    policies.errors.PolicyError
        If the task, the policy or the example is invalid, or the policy does not fit the sites.
    """
    if example is not None and task is not None:
        raise PlanError("give either --example or --task (with --data), not both")
    if task is None and data:
        raise PlanError("--data goes with --task FILE (the task the sites' data follow); an "
                        "example brings its own data")
    if task is not None and not data:
        raise PlanError("--task needs the sites' data: --data SITE=PATH (once per site)")
    if task is not None:
        files, name = parse_data(data), None
        loaded_task = load_task(task)
        document = load_policy_document(policy)
        if isinstance(document, LoadedTerms):
            return _chosen(document, loaded_task, files, rounds)
        base = document
    else:
        name = example or DEFAULT_EXAMPLE
        ex = load_example(name)
        loaded = load_policy(policy or ex.policy)
        missing = [s for s in loaded.policy.sites if s not in ex.data]
        if missing:
            raise PlanError(
                f"{loaded.source}: member site(s) {', '.join(map(repr, missing))} have no data "
                f"in example {name} (its sites: {', '.join(ex.sites)}); the member list is the "
                "policy's: use --task with --data to choose the sites")
        members = {s: ex.data[s] for s in loaded.policy.sites}
        return RunInputs(task=load_task(ex.task), policy=loaded, data=members, example=name)
    sites = tuple(files)
    source = f"{base.source} (member sites replaced by the sites given: {', '.join(sites)})"
    try:
        fitted = with_sites(base, sites, source)
    except PolicyError as exc:
        raise PolicyError(
            f"{exc}\nThe {len(sites)} sites given do not fit this policy: write one that does "
            f"with `consortium policy new --sites {','.join(sites)} --from {base.source} "
            "--output policy.yaml`, review it, and give it with --policy policy.yaml") from None
    return RunInputs(task=loaded_task, policy=fitted, data=files, example=name)


def _chosen(document: LoadedTerms, task: LoadedTask, files: dict[str, Path],
            rounds: int | None) -> RunInputs:
    """Inputs under a policy of privacy terms only: its sites are the data's, and the training
    settings are chosen for them (:mod:`consortium.run.choice`) and ``rounds`` (``--rounds``,
    else the terms' own, else the recipe's)."""
    from consortium.run.choice import complete_terms  # loads Opacus' accountant

    sites = tuple(files)
    source = f"{document.source} (member sites replaced by the sites given: {', '.join(sites)})"
    terms = terms_with_sites(document, sites, source, rounds=rounds or None)
    loaded, choice_json = complete_terms(terms, task, files)
    return RunInputs(task=task, policy=loaded, data=files, choice_json=choice_json)

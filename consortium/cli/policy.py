"""``consortium policy``: validate policy files and show each site's effective policy.

Registered in ``consortium/cli.py`` with ``app.add_typer(policy_app, name="policy")``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from policies.drafting import draft_policy
from policies.effective import EffectivePolicy, effective_policy
from policies.errors import PolicyError
from policies.loader import (
    LoadedPolicy,
    LoadedSitePolicy,
    LoadedTerms,
    default_policy_path,
    load_any_policy,
    load_policy,
)

policy_app = typer.Typer(
    help="Validate consortium and site privacy policies.", no_args_is_help=True
)
console = Console()


class _TermsOnly(Exception):
    """A consortium policy of privacy terms only: valid, with nothing to merge yet."""

    def __init__(self, loaded: LoadedTerms) -> None:
        super().__init__(loaded.source)
        self.loaded = loaded


def _split(files: list[Path]) -> tuple[LoadedPolicy, list[LoadedSitePolicy]]:
    consortium: list[LoadedPolicy] = []
    sites: list[LoadedSitePolicy] = []
    for file in files:
        loaded = load_any_policy(file)
        if isinstance(loaded, LoadedTerms):
            raise _TermsOnly(loaded)
        if isinstance(loaded, LoadedSitePolicy):
            sites.append(loaded)
        else:
            consortium.append(loaded)
    if len(consortium) > 1:
        raise PolicyError(
            f"{consortium[1].source}: more than one consortium policy given "
            f"(also {consortium[0].source})"
        )
    return (consortium[0] if consortium else load_policy()), sites


def effective_policies(files: list[Path]) -> tuple[LoadedPolicy, list[EffectivePolicy]]:
    """The consortium policy and every member site's effective policy.

    Sites without a file among ``files`` run under the consortium policy unchanged.

    Raises
    ------
    PolicyError
        Naming the file and the field of the first invalid or loosening policy.
    """
    consortium, sites = _split(files)
    by_site = {s.policy.site: s for s in sites}
    result = []
    for loaded in sites:
        try:
            result.append(effective_policy(consortium.policy, loaded.policy))
        except PolicyError as exc:
            raise PolicyError(f"{loaded.source}: {exc}") from None
    for site in consortium.policy.sites:
        if site not in by_site:
            result.append(effective_policy(consortium.policy, site))
    return consortium, sorted(result, key=lambda e: e.site)


def _table(consortium: LoadedPolicy, policies: list[EffectivePolicy]) -> Table:
    table = Table(title=f"Effective policies (consortium {consortium.sha256[:16]}…)")
    table.add_column("site", no_wrap=True, min_width=11)
    for col in ("δ", "ε/run", "ε lifetime", "noise / target ε", "clip", "q", "steps/round", "acct",
                "min sites", "sha256"):
        table.add_column(col)
    for e in policies:
        noise = (f"σ={e.dp.noise_multiplier:g}" if e.dp.noise_multiplier is not None
                 else f"ε*={e.dp.target_epsilon:g}")
        table.add_row(e.site, f"{e.delta:g}", f"{e.epsilon_ceiling:g}",
                      f"{e.lifetime_epsilon_ceiling:g}", noise, f"{e.dp.max_grad_norm:g}",
                      f"{e.dp.sample_rate:g}", str(e.dp.steps_per_round), e.dp.accountant,
                      str(e.min_sites), e.sha256[:16] + "…")
    return table


@policy_app.command("check")
def check(
    files: Annotated[
        list[Path], typer.Argument(help="Consortium and/or site policy YAML files.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the effective policies as JSON.")
    ] = False,
) -> None:
    """Validate policy files and print the effective policy of every member site.

    Exits 2 with the file and field of the first invalid or loosening policy.
    """
    try:
        consortium, policies = effective_policies(files)
    except _TermsOnly as terms:
        t = terms.loaded.terms
        console.print(f"consortium policy {terms.loaded.source}: sha256 {terms.loaded.sha256}\n"
                      f"privacy terms only: δ={t.delta:g}, ε ≤ {t.epsilon_ceiling:g} per run, "
                      f"≤ {t.lifetime_epsilon_ceiling:g} lifetime, {len(t.sites)} sites, "
                      f"min_sites {t.min_sites}. The training settings are chosen for each run "
                      "from public information (the task, the sites' numbers of training "
                      "examples), at no ε cost; site policies are merged into that choice.",
                      highlight=False)
        return
    if as_json:
        typer.echo("[" + ",".join(e.model_dump_json() for e in policies) + "]")
        return
    console.print(f"consortium policy {consortium.source}: sha256 {consortium.sha256}")
    console.print(_table(consortium, policies))


def _write_new(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` whole or not at all (temporary file, then rename)."""
    if path.exists() and not force:
        raise PolicyError(f"{path}: already exists; give another --output, or --force to "
                          "replace it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PolicyError(f"{path}: cannot write the policy ({exc.strerror})") from None


@policy_app.command("new")
def new(
    sites: Annotated[str, typer.Option(
        "--sites",
        help="The member sites' ids, comma-separated (e.g. clinic-a,clinic-b,clinic-c).")],
    min_sites: Annotated[int | None, typer.Option(
        "--min-sites", min=2,
        help="Sites every round needs (default: every member).")] = None,
    base: Annotated[Path | None, typer.Option(
        "--from", help="The reviewed policy to start from (default: the packaged one).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the policy here (default: print it).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing --output file.")] = False,
) -> None:
    """Write a consortium policy for your own member sites, from a reviewed one.

    Only the member list, min_sites and (where the whole numbers no longer fit) SecAgg+'s share
    counts change; every other value and comment is the base policy's. The draft is validated
    before anything is written. Review it, then pass it to run, compare or submit with --policy.
    """
    source = base or default_policy_path()
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{source}: cannot read the base policy ({exc})") from None
    members = [s.strip() for s in sites.split(",") if s.strip()]
    draft = draft_policy(text, load_policy(source), sites=members, min_sites=min_sites,
                         source=str(output or "the draft policy"))
    if output is None:
        typer.echo(draft.text, nl=False)
        return
    _write_new(output, draft.text, force=force)
    console.print(f"wrote {output} (sha256 {draft.policy.sha256[:16]}…) from {source}; "
                  f"changed: {', '.join(draft.changed)}. Review it, then: consortium run "
                  f"--policy {output} --task FILE --data SITE=PATH …")

"""Coordinator commands of the deployed mode: ``init``, ``serve``, ``stop``, ``unit``,
``enroll``, ``sites``, ``revoke`` and ``submit``.

Logic lives in :mod:`consortium.deployment`; these commands only parse options and print.
Errors propagate to the ``consortium`` app's one handler. ``consortium stop`` exits
:data:`NOT_RUNNING` (3) when no SuperLink it started detached is running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from consortium.cli.options import HomeOpt, StoreOpt
from consortium.deployment import membership, submit, superlink
from consortium.deployment.setup import DEFAULT_PORT, Deployment, init_deployment, load_deployment
from consortium.home import open_home
from consortium.store.records import RoundRecord
from site_node.deployment import units
from site_node.protocol import run_config as keys

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
#: ``consortium stop``'s exit code when no detached SuperLink was running.
NOT_RUNNING = 3


def _deployment(home: Path | None) -> Deployment:
    return load_deployment(open_home(home))


def init(
    home: HomeOpt = None,
    host: Annotated[list[str] | None, typer.Option("--host", help="DNS name sites dial.")] = None,
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address sites dial.")] = None,
    port: Annotated[int, typer.Option(help="SuperLink port.", min=1, max=65535,
                                      metavar="PORT")] = DEFAULT_PORT,
    bind: Annotated[str, typer.Option(help="Address the SuperLink binds to.")] = "127.0.0.1",
) -> None:
    """Set up the consortium home for deployment: CA, SuperLink certificate, settings."""
    hosts, ips = host or [], ip or []
    if not hosts and not ips:
        hosts, ips = ["localhost"], ["127.0.0.1"]
    dep = init_deployment(open_home(home), hosts, ips, port=port, bind_host=bind)
    console.print(f"Set up [bold]{dep.home.root}[/] for deployment")
    console.print(f"  SuperLink address : {dep.address} (binds {dep.bind_host})")
    console.print(f"  CA for the sites  : {dep.home.ca_cert}")
    console.print(f"  policy to review  : {dep.home.policy}")
    console.print(f"  task to review    : {dep.home.task} (send it to the sites)")
    console.print(f"  Next: consortium serve --home {dep.home.root}")


def enroll(
    site_id: Annotated[str, typer.Argument(help="The site's id, e.g. cleveland.")],
    node_key: Annotated[Path, typer.Option("--node-key", help="The site's node.pub.")],
    receipt_key: Annotated[Path, typer.Option(
        "--receipt-key", help="The site's receipt-key.pub.pem.")],
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Admit a site: register its node key with the SuperLink, enrol its receipt key."""
    member = membership.enroll(_deployment(home), site_id, node_key, receipt_key, store)
    console.print(f"Enrolled [bold]{member.site_id}[/] as node {member.node_id}")
    console.print(f"  node key    {member.node_fingerprint}")
    console.print(f"  receipt key {member.receipt_fingerprint}")
    console.print("  Compare both fingerprints with the site admin before they start the node.")


def sites(home: HomeOpt = None, store: StoreOpt = None) -> None:
    """List members: site id, node, key fingerprints, enrolment time, status."""
    table = Table("site", "node", "node key", "receipt key", "enrolled at", "status", "mode")
    for m in membership.members(_deployment(home), store):
        table.add_row(m.site_id, str(m.node_id or "-"), m.node_fingerprint or "-",
                      m.receipt_fingerprint[:16] + "…", m.enrolled_at, m.status, m.mode)
    console.print(table)


def revoke(
    site_id: Annotated[str, typer.Argument(help="The site to remove.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] =
    "revoked by the coordinator",
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Revoke a site: unregister its node key (it can no longer connect); logged."""
    member = membership.revoke(_deployment(home), site_id, reason, store)
    console.print(f"Revoked [bold]{member.site_id}[/] (node {member.node_id})")


def serve(
    home: HomeOpt = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="DANGER: plaintext, no node authentication.")] = False,
    detach: Annotated[bool, typer.Option(
        help="Return once it listens; leave it running (`consortium stop` stops it).")] = False,
) -> None:
    """Run the SuperLink with TLS and node authentication (foreground, Ctrl-C stops it; or
    --detach)."""
    if insecure:
        err_console.print(f"[bold red]{superlink.INSECURE_WARNING}[/]")
    dep = _deployment(home)
    mode = "PLAINTEXT, no node auth" if insecure else "TLS, node auth"
    if detach:
        pid = superlink.start_detached(dep, insecure=insecure)
        console.print(f"Serving on {dep.bind_host}:{dep.port} ({mode}), detached as pid {pid}; "
                      f"log {dep.home.log_dir / 'superlink.log'}; `consortium stop` stops it")
        return
    console.print(f"Serving on {dep.bind_host}:{dep.port} ({mode})")
    raise typer.Exit(code=superlink.run_foreground(dep, insecure=insecure))


def stop(
    home: HomeOpt = None,
    grace: Annotated[float, typer.Option(
        help="Seconds to wait after SIGTERM before SIGKILL.", min=0.0, metavar="SECONDS")] = 10.0,
) -> None:
    """Stop the SuperLink `consortium serve --detach` started (SIGTERM, then SIGKILL after
    --grace). Exit code 3 if none was running."""
    dep = _deployment(home)
    report = superlink.stop_detached(dep, grace_s=grace)
    if report.stale:
        console.print(f"stale record {superlink.pid_file(dep)} removed: {report.stale}",
                      highlight=False)
    if report.stopped is None:
        console.print(f"No detached SuperLink of {dep.home.root} is running.")
        raise typer.Exit(code=NOT_RUNNING)
    console.print(f"Stopped {report.stopped.describe()}", highlight=False)


def unit(
    home: HomeOpt = None,
    user: Annotated[str | None, typer.Option(
        help="User the service runs as (default: you); it must own the home.")] = None,
    output: Annotated[Path | None, typer.Option(
        help="Write the unit here (e.g. /etc/systemd/system/consortium-superlink.service); "
        "default: print it.")] = None,
) -> None:
    """Write a systemd unit that runs `consortium serve` (restart on failure, journal)."""
    dep = _deployment(home)
    unit_def = superlink.service_unit(dep, user=user or units.current_user())
    written = units.write_unit(units.unit_file(unit_def), output)
    if written is None:
        typer.echo(units.unit_file(unit_def), nl=False)  # the file itself, never wrapped
    else:
        console.print(f"Wrote {written}; then: systemctl daemon-reload && "
                      f"systemctl enable --now {written.stem}")


def submit_cmd(
    home: HomeOpt = None,
    store: StoreOpt = None,
    federation: Annotated[str | None, typer.Option(
        help="SuperLink connection name (default: the home's).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file (default: the home's).")
                      ] = None,
    task: Annotated[Path | None, typer.Option(help="Task file (default: the home's).")] = None,
    rounds: Annotated[int | None, typer.Option(help="Rounds (default: the policy's).",
                                               min=1, metavar="N")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the initial model.", min=0,
                                                  metavar="N")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run (the SuperLink stopped under it) from its "
        "last completed round, with its own policy, task, rounds and seed.")] = False,
    run_id: Annotated[str | None, typer.Option(
        "--run", help="With --resume: the run to continue (default: the latest interrupted).")
    ] = None,
) -> None:
    """Submit a consortium run to the running SuperLink and follow it round by round.

    With --resume, continue an interrupted run instead: a round a site already trained is
    answered with its kept receipt, never trained or charged again.
    """
    dep = _deployment(home)
    target = store or dep.home.store
    if resume:
        given = [name for name, value in (("--policy", policy), ("--task", task),
                                          ("--rounds", rounds), ("--seed", seed)) if value]
        if given:
            raise typer.BadParameter(f"a resumed run keeps the policy, task, rounds and seed it "
                                     f"started with; drop {', '.join(given)}",
                                     param_hint="--resume")
        config = submit.resume_config(target, run_id)
    elif run_id is not None:
        raise typer.BadParameter("--run is only for --resume", param_hint="--run")
    else:
        config = submit.run_config(target, policy or dep.home.policy, rounds, seed,
                                   submit.new_run_id(), task=task or dep.home.task)
    already = submit.recorded_rounds(target, str(config[keys.RUN_ID])) if resume else 0
    if resume:
        for earlier in submit.stop_earlier(dep, federation or dep.federation,
                                           str(config[keys.RUN_ID])):
            console.print(f"Stopped Flower run {earlier}, which the SuperLink still listed as "
                          "running for this run")
    sub = submit.submit(dep, federation or dep.federation, config)
    what = f"Resumed run {sub.run_id} after round {already}" if resume else (
        f"Submitted run {sub.run_id}")
    console.print(f"{what} (Flower run {sub.flower_run_id})")
    status = submit.follow(dep, federation or dep.federation, sub, already=already,
                           on_round=lambda rec: console.print(round_line(rec), highlight=False))
    console.print(f"Run {status.replace(':', ': ')}; results in {target} (`consortium export "
                  f"--store {target} --run {sub.run_id}`)", highlight=False)


def round_line(rec: RoundRecord) -> str:
    """One followed round: status, mean accuracy and each site's cumulative ε (as
    ``consortium run``'s table shows them)."""
    acc = "—" if rec.accuracy_mean is None else f"{rec.accuracy_mean:.3f}"
    eps = ", ".join(f"ε {s.site} {'—' if s.epsilon is None else f'{s.epsilon:.3f}'}"
                    for s in rec.sites)
    why = f" ({rec.failure_reason})" if rec.failure_reason else ""
    return f"round {rec.round} {rec.status}, mean accuracy {acc}" + (f"; {eps}" if eps
                                                                       else "") + why


def register_commands(app: typer.Typer) -> None:
    """Add the coordinator's deployment commands to the ``consortium`` app."""
    for fn in (init, enroll, sites, revoke, serve, stop, unit):
        app.command(fn.__name__)(fn)
    app.command("submit")(submit_cmd)

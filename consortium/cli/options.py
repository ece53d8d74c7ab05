"""Options and settings every ``consortium`` command shares."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Annotated

import typer

from consortium.home import default_store_path, open_home
from policies.example import example_names

StoreOpt = Annotated[Path | None, typer.Option(
    "--store", help="Run store (default: runs.sqlite in the consortium home, "
    "$HOSPITAL_CONSORTIUM_HOME or ~/.hospital-consortium).")]
ExampleOpt = Annotated[str | None, typer.Option(
    "--example", help="An embedded example: heart-disease (the default) or one of "
    f"{', '.join(n for n in example_names() if n != 'heart-disease')} (its task, policy and "
    "each site's data; policies/examples/).")]
TaskOpt = Annotated[Path | None, typer.Option(
    "--task", help="A task file (policies/tasks/*.yaml): what to train; needs --data.")]
DataOpt = Annotated[list[str] | None, typer.Option(
    "--data", help="SITE=PATH: a site and its data file or folder (once per site; the sites "
    "given replace the policy's member list).")]
PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="Consortium policy YAML (default: the example's, or the embedded one).")]
RoundsOpt = Annotated[int | None, typer.Option(help="Rounds (0 or none: the policy's).",
                                                min=0, metavar="N")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of the initial model (default 0).",
                                              min=0, metavar="N")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="Where every simulated site trains: auto (a GPU when there is one), cpu, "
    "cuda or cuda:N.", metavar="DEVICE")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show Flower's protocol log.")]
HomeOpt = Annotated[Path | None, typer.Option(
    "--home", help="Consortium home (default: $HOSPITAL_CONSORTIUM_HOME or "
    "~/.hospital-consortium).")]


def store_path(store: Path | None) -> Path:
    """The run store a command uses."""
    return (store or default_store_path()).expanduser().resolve()


def home_path(home: Path | None) -> Path:
    """The consortium home a command uses."""
    return open_home(home).root


def configure_logging(verbose: bool) -> None:
    """Quiet the libraries' logs and known-noisy warnings unless ``verbose``."""
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger().setLevel(level)
    for name in ("flwr", "ray", "opacus"):
        logging.getLogger(name).setLevel(level if verbose else logging.ERROR)
    if not verbose:
        # Flower warns that run_simulation is deprecated in favour of `flwr run`: the local
        # demonstration uses it on purpose, to follow rounds in-process (see the README).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"flwr\..*")
        warnings.filterwarnings("ignore", message=".*run_simulation.*")

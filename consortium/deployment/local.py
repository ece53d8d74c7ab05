"""A whole deployed consortium on one machine: for the demo, the benchmark and the tests.

It goes through the same steps as the two-machine guide (docs/deployment.md), with real
processes on 127.0.0.1: ``consortium init``, ``serve``, ``site-node init``, ``enroll``,
``site-node start`` for every hospital, then ``flwr run`` against the SuperLink. Every process
it starts is stopped by :meth:`LocalDeployment.close` (also on errors; use it as a context
manager).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from consortium.deployment import membership, submit, superlink
from consortium.deployment.setup import Deployment, init_deployment
from consortium.home import open_home
from consortium.store.records import RoundRecord
from policies.example import DEFAULT_EXAMPLE, load_example
from site_node.deployment import processes
from site_node.deployment.supernode import NodeSettings, RunningNode, start
from site_node.home import SiteHome, init_site_home

log = logging.getLogger(__name__)


class LocalDeployment:
    """A consortium home, a SuperLink and site nodes under one working directory.

    Parameters
    ----------
    workdir : Path
        Empty directory for the consortium home and the site homes.
    sites : sequence of str
        Site ids (default: the example's sites); each site's data is its file in the example.
    example : str
        The embedded example whose task, policy and site data the deployment uses (default:
        the heart-disease example).
    """

    def __init__(self, workdir: Path, sites: Sequence[str] | None = None,
                 example: str = DEFAULT_EXAMPLE) -> None:
        self.workdir = Path(workdir).resolve()
        self.example = load_example(example)
        self.sites = list(sites if sites is not None else self.example.sites)
        home = open_home(self.workdir / "consortium")
        home.ensure()
        shutil.copyfile(self.example.policy, home.policy)
        shutil.copyfile(self.example.task, home.task)
        self.dep: Deployment = init_deployment(home, port=processes.free_port())
        self.site_homes: dict[str, SiteHome] = {
            s: init_site_home(self.workdir / "sites" / s, s) for s in self.sites
        }
        self.link: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, RunningNode] = {}

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def serve(self) -> None:
        """Start the SuperLink (TLS, node authentication)."""
        self.link = superlink.start(self.dep)

    def enroll_all(self) -> None:
        """Enroll every site's keys."""
        for site, sh in self.site_homes.items():
            membership.enroll(self.dep, site, sh.node_pub, sh.receipt_pub)

    def settings(self, site: str, **overrides: Any) -> NodeSettings:
        """Node settings of ``site`` pointing at this SuperLink (a fresh local port each call)."""
        values: dict[str, Any] = {
            "superlink": self.dep.address, "ca_cert": self.dep.home.ca_cert,
            "data_path": self.example.data[site], "task_path": self.dep.home.task,
            "runtime_port": processes.free_port(),
        }
        values.update(overrides)
        return NodeSettings(**values)

    def start_node(self, site: str, **overrides: Any) -> RunningNode:
        """Start one site's SuperNode and wait until it is admitted (raises if refused)."""
        node = start(self.site_homes[site], self.settings(site, **overrides))
        self.nodes[site] = node
        return node

    def start_all(self, warm: bool = True) -> None:
        """Start every site's SuperNode (``warm``: with the forking ClientApp launcher)."""
        for site in self.sites:
            self.start_node(site, warm=warm)

    def up(self, warm: bool = True) -> LocalDeployment:
        """Serve the SuperLink, enrol every site and start every SuperNode; returns itself."""
        self.serve()
        self.enroll_all()
        self.start_all(warm=warm)
        return self

    def run(self, rounds: int, on_round: Callable[[RoundRecord], None] | None = None,
            seed: int = 0, timeout_s: float = 600.0) -> submit.Submission:
        """Submit a consortium run with ``rounds`` rounds and follow it until it finishes."""
        config = submit.run_config(self.dep.home.store, self.dep.home.policy, rounds, seed,
                                   submit.new_run_id(), task=self.dep.home.task)
        sub = submit.submit(self.dep, self.dep.federation, config)
        submit.follow(self.dep, self.dep.federation, sub, on_round=on_round,
                      timeout_s=timeout_s)
        return sub

    def stop_node(self, site: str) -> None:
        """Stop one site's SuperNode (and its helpers)."""
        node = self.nodes.pop(site, None)
        if node is not None:
            node.stop()

    def close(self) -> None:
        """Stop every process this deployment started."""
        for site in list(self.nodes):
            self.stop_node(site)
        if self.link is not None:
            processes.stop(self.link)
            self.link = None

    @property
    def store(self) -> Path:
        """The run store deployed runs land in."""
        return self.dep.home.store

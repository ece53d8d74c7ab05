"""``site-node stop`` and ``consortium stop``: real processes stopped, strangers never signalled.

The detached processes here are real Python processes whose command lines carry what a
SuperNode, its launcher and the SuperLink carry (the home's ``state-dir``, ``--parent-pid``, the
SuperLink's ``--database``): the stop commands find them from the records the start commands
write, as they would find Flower's. One helper ignores SIGTERM (it must be killed after the
grace time) and one runs in a session of its own (as Flower's SuperExec does). A stale record,
whose process is gone or whose id now names another program, is reported and the process
left alone.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from consortium.cli import main as consortium_main
from consortium.deployment import superlink
from consortium.deployment.local import LocalDeployment
from consortium.deployment.setup import init_deployment
from consortium.home import open_home
from site_node.cli import main as site_main
from site_node.deployment import detached, processes, stopping
from site_node.home import SiteHome, init_site_home
from tests.cli.invoke import Outcome, invoke

# Sleeps; with "child", first starts a grandchild in a session of its own; with "stubborn",
# ignores SIGTERM. Prints "ready" once its signal handling is set up.
SLEEPER = """
import os, signal, subprocess, sys, time
if "stubborn" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "child" in sys.argv:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                     start_new_session=True)
print("ready", flush=True)
time.sleep(600)
"""


class Sleepers:
    """Starts sleepers; kills whatever is left at the end of the test."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", SLEEPER, *args], stdout=subprocess.PIPE,
                                start_new_session=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            for p in [*processes.descendants(proc.pid)]:
                p.kill()
            proc.kill()
            proc.wait()


@pytest.fixture
def sleepers() -> Iterator[Sleepers]:
    started = Sleepers()
    try:
        yield started
    finally:
        started.close()


def _gone(proc: subprocess.Popen[bytes]) -> bool:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return True


def _site(tmp_path: Path) -> SiteHome:
    return init_site_home(tmp_path / "site", "hungary")


def site_node(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
              *args: str) -> Outcome:
    return invoke(site_main, "site-node", list(args), capsys, monkeypatch)


def test_stop_ends_the_node_its_launcher_and_their_helpers(
    tmp_path: Path, sleepers: Sleepers, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = _site(tmp_path)
    node = sleepers.start(detached.node_mark(home), "child")
    helper = processes.descendants(node.pid)
    launcher = sleepers.start(detached.launcher_mark(node.pid), "stubborn")
    home.write_status(state="connected", **detached.node_fields(home, node.pid),
                      **detached.launcher_fields(launcher.pid, node_pid=node.pid))
    result = site_node(capsys, monkeypatch, "stop", "--home", str(home.root), "--grace", "1")
    assert result.code == 0, result.output
    assert _gone(node) and _gone(launcher)
    assert len(helper) == 1 and not helper[0].is_running()
    assert f"SuperNode (pid {node.pid})" in result.out
    assert f"ClientApp launcher (pid {launcher.pid}, killed after the timeout)" in result.out
    assert home.read_status()["state"] == detached.STATE_STOPPED
    again = site_node(capsys, monkeypatch, "stop", "--home", str(home.root))
    assert again.code == 3 and "No node of site hungary is running" in again.out
    assert "has exited" in again.out


def test_stop_with_nothing_ever_started_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _site(tmp_path)
    result = site_node(capsys, monkeypatch, "stop", "--home", str(home.root))
    assert result.code == 3
    assert "No node of site hungary is running" in result.out and "stale" not in result.out


def test_stop_never_signals_a_stranger_holding_the_recorded_pid(
    tmp_path: Path, sleepers: Sleepers, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = _site(tmp_path)
    stranger = sleepers.start("another-program")  # its id was reused: not a SuperNode
    home.write_status(state="connected", pid=stranger.pid)  # as the old status files hold it
    result = site_node(capsys, monkeypatch, "stop", "--home", str(home.root))
    assert result.code == 3, result.output
    assert "another program" in result.out and "not signalled" in result.out
    assert stranger.poll() is None


def test_stop_never_signals_a_later_process_with_the_same_command_line(
    tmp_path: Path, sleepers: Sleepers, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = _site(tmp_path)
    later = sleepers.start(detached.node_mark(home))
    created = psutil.Process(later.pid).create_time() - 100  # recorded one started earlier
    home.write_status(state="connected", pid=later.pid, pid_created=created)
    result = site_node(capsys, monkeypatch, "stop", "--home", str(home.root))
    assert result.code == 3, result.output
    assert "started later" in result.out and later.poll() is None


def consortium(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
               *args: str) -> Outcome:
    return invoke(consortium_main, "consortium", list(args), capsys, monkeypatch)


def test_consortium_stop_stops_the_recorded_superlink_and_its_children(
    tmp_path: Path, sleepers: Sleepers, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dep = init_deployment(open_home(tmp_path / "c"), port=processes.free_port())
    link = sleepers.start("--database", str(dep.home.database), "child")
    app = processes.descendants(link.pid)
    record = stopping.record(link.pid, mark=str(dep.home.database))
    superlink.pid_file(dep).write_text(json.dumps(record.as_dict()), encoding="utf-8")
    result = consortium(capsys, monkeypatch, "stop", "--home", str(dep.home.root))
    assert result.code == 0, result.output
    assert _gone(link) and not app[0].is_running()
    assert f"SuperLink (pid {link.pid})" in result.out
    assert not superlink.pid_file(dep).exists()
    again = consortium(capsys, monkeypatch, "stop", "--home", str(dep.home.root))
    assert again.code == 3 and "No detached SuperLink" in again.out


def test_consortium_stop_with_a_stale_pid_file_leaves_the_stranger_alone(
    tmp_path: Path, sleepers: Sleepers, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dep = init_deployment(open_home(tmp_path / "c"), port=processes.free_port())
    stranger = sleepers.start("another-program")
    superlink.pid_file(dep).write_text(json.dumps({"pid": stranger.pid}), encoding="utf-8")
    result = consortium(capsys, monkeypatch, "stop", "--home", str(dep.home.root))
    assert result.code == 3, result.output
    assert "stale record" in result.out and "another program" in result.out
    assert stranger.poll() is None and not superlink.pid_file(dep).exists()


def test_consortium_stop_with_an_unreadable_pid_file_signals_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    dep = init_deployment(open_home(tmp_path / "c"), port=processes.free_port())
    superlink.pid_file(dep).write_text("{not json", encoding="utf-8")
    result = consortium(capsys, monkeypatch, "stop", "--home", str(dep.home.root))
    assert result.code == 1
    assert "superlink.pid is unreadable" in result.err and "nothing was signalled" in result.err
    assert superlink.pid_file(dep).exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``consortium`` command line in a process of its own, as a coordinator types it."""
    return subprocess.run([sys.executable, "-m", "consortium", *args], capture_output=True,
                          text=True, timeout=120, check=False,
                          env=processes.tool_env({"COLUMNS": "200"}))


def test_serve_detach_then_stop_a_real_superlink(tmp_path: Path) -> None:
    home = tmp_path / "c"
    port = processes.free_port()
    assert _cli("init", "--home", str(home), "--port", str(port)).returncode == 0
    served = _cli("serve", "--home", str(home), "--detach")
    try:
        assert served.returncode == 0, served.stderr
        assert "detached as pid" in served.stdout and processes.port_open("127.0.0.1", port)
        pid = json.loads((home / superlink.PID_FILE).read_text(encoding="utf-8"))["pid"]
        assert superlink.GUARDED_MODULE in " ".join(psutil.Process(pid).cmdline())
        stopped = _cli("stop", "--home", str(home))
        assert stopped.returncode == 0, stopped.stderr
        assert f"SuperLink (pid {pid})" in stopped.stdout
        assert not processes.alive(pid) and not processes.port_open("127.0.0.1", port)
    finally:
        if (home / superlink.PID_FILE).exists():  # the test failed: leave nothing running
            _cli("stop", "--home", str(home), "--grace", "1")


def _site_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``site-node`` command line in a process of its own, as a site admin types it."""
    code = "from site_node.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=180, check=False, env=processes.tool_env({"COLUMNS": "200"}))


@pytest.mark.slow
def test_stop_a_real_detached_supernode_and_its_launcher(tmp_path: Path) -> None:
    with LocalDeployment(tmp_path, sites=["hungary"]) as dep:
        dep.serve()
        dep.enroll_all()
        home = dep.site_homes["hungary"]
        settings = dep.settings("hungary")
        started = _site_cli("start", "--home", str(home.root), "--superlink", settings.superlink,
                            "--ca-cert", str(settings.ca_cert), "--data", str(settings.data_path),
                            "--task", str(settings.task_path), "--port",
                            str(settings.runtime_port), "--detach")
        assert started.returncode == 0, started.stderr  # a refused start stops what it began
        assert "site-node stop --home" in started.stdout
        status = home.read_status()
        tree = [psutil.Process(int(str(status[k]))) for k in ("pid", "launcher_pid")]
        try:
            tree += processes.descendants(tree[0].pid) + processes.descendants(tree[1].pid)
            stopped = _site_cli("stop", "--home", str(home.root))
            assert stopped.returncode == 0, stopped.stderr
            assert f"SuperNode (pid {tree[0].pid})" in stopped.stdout
            assert f"ClientApp launcher (pid {tree[1].pid}" in stopped.stdout
            assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
            assert home.read_status()["state"] == "stopped"
        finally:
            for p in tree:  # a failed test leaves nothing running
                with contextlib.suppress(psutil.Error):
                    p.kill()

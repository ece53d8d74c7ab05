"""The deployed mode from an installed package, run from a directory outside any source tree.

The project is built into a wheel once and installed NON-editable (``pip install --no-deps
--no-index``) into a fresh virtual environment; the environment reaches the heavy dependencies
(torch, Flower, Opacus) of the interpreter running the tests through a ``.pth`` line placed after
its own site-packages, so the installed wheel, not the checkout, is what imports. Flower's
console scripts are generated in the new environment from Flower's entry points, as pip would.
Then, as a coordinator and four hospitals type them, in a working directory of their own:
``consortium init``, ``serve`` (TLS, node authentication), ``site-node init``, ``consortium
enroll``, ``site-node start``, ``consortium submit --rounds 2`` and ``consortium audit verify``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from site_node.deployment import processes
from tests.child import ROOT

pytestmark = pytest.mark.slow

SITES = ("cleveland", "hungary", "long_beach", "switzerland")
SOURCES = ("pyproject.toml", "README.md", "consortium", "site_node", "policies", "dashboard")


@dataclass(frozen=True)
class Installed:
    """A virtual environment with the project's wheel installed, and a directory to work in."""

    venv: Path
    workdir: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        return {**env, "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
                "VIRTUAL_ENV": str(self.venv), "COLUMNS": "120"}

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=self.workdir,
                              env=self.env(), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def spawn(self, log: Path, *argv: str) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return subprocess.Popen([str(self.bin / argv[0]), *argv[1:]], cwd=self.workdir,
                                    env=self.env(), stdout=out, stderr=subprocess.STDOUT)


def build_wheel(out: Path) -> Path:
    """The project's wheel, built from a copy of the sources (nothing written to the checkout)."""
    src = out / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite*", "*.egg-info")
    for name in SOURCES:
        (shutil.copytree(ROOT / name, src / name, ignore=ignore) if (ROOT / name).is_dir()
         else shutil.copyfile(ROOT / name, src / name))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(out / "wheels"), str(src)],
                   check=True, capture_output=True, timeout=300)
    return next((out / "wheels").glob("hospital_consortium-*.whl"))


def flower_scripts(bin_dir: Path) -> None:
    """Flower's console scripts in ``bin_dir``, for that environment's interpreter."""
    for ep in importlib.metadata.distribution("flwr").entry_points:
        if ep.group != "console_scripts":
            continue
        module, _, attr = ep.value.partition(":")
        script = bin_dir / ep.name
        script.write_text(f"#!{bin_dir / 'python'}\nimport sys\nfrom {module} import {attr}\n"
                          f"sys.exit({attr}())\n", encoding="utf-8")
        script.chmod(0o755)


Deployed = tuple[Installed, Path, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("installed")
    wheel = build_wheel(base)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # The new environment's own pip, with no setting of the calling one that could redirect it.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "_PIP_", "PYTHON", "VIRTUAL_ENV"))}
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps",
                          "--no-index", "-q", str(wheel)],
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (venv / "bin" / "consortium").exists(), pip.stdout + pip.stderr
    purelib = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    # The test interpreter's libraries, after the environment's own (the wheel comes first).
    (purelib / "zz-test-interpreter.pth").write_text(sysconfig.get_paths()["purelib"] + "\n",
                                                     encoding="utf-8")
    flower_scripts(venv / "bin")
    workdir = base / "elsewhere"
    workdir.mkdir()
    return Installed(venv, workdir)


def test_the_installed_package_is_what_runs(installed: Installed) -> None:
    done = installed.run("python", "-c", "import consortium, site_node, policies, flwr; "
                         "print(consortium.__file__, site_node.__file__, policies.__file__)")
    assert done.returncode == 0, done.stderr
    assert all(path.startswith(str(installed.venv)) for path in done.stdout.split()), done.stdout
    for prog in ("consortium", "site-node"):
        shown = installed.run(prog, "--version")
        assert shown.stdout.strip() == f"{prog} {importlib.metadata.version('hospital-consortium')}"


def _wait_connected(log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Connected" in text:
            return
        if proc.poll() is not None:
            raise AssertionError(f"site-node start exited ({proc.returncode}): {text[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"site-node start not connected in {timeout_s} s: {text[-3000:]}")


@pytest.fixture(scope="module")
def deployed(installed: Installed) -> Iterator[Deployed]:
    """Coordinator and four sites through the installed CLIs; a 2-round run submitted."""
    work = installed.workdir
    home = work / "consortium"
    port = processes.free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        done = installed.run("consortium", "init", "--home", str(home), "--port", str(port))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "INFO" not in done.stdout + done.stderr
        link = installed.spawn(work / "serve.log", "consortium", "serve", "--home", str(home))
        started.append(link)
        assert processes.wait_for_port("127.0.0.1", port, 90, link), \
            (work / "serve.log").read_text(errors="replace")
        data = installed.run("python", "-c", "from policies.example import load_example; "
                             "print('\\n'.join(map(str, load_example('heart-disease')"
                             ".data.values())))").stdout.split()
        assert all(path.startswith(str(installed.venv)) for path in data), data
        for site, csv in zip(SITES, data, strict=True):
            site_home = work / "sites" / site
            done = installed.run("site-node", "init", "--site-id", site, "--home",
                                 str(site_home))
            assert done.returncode == 0, done.stdout + done.stderr
            assert "INFO" not in done.stdout + done.stderr
            done = installed.run("consortium", "enroll", site, "--node-key",
                                 str(site_home / "node.pub"), "--receipt-key",
                                 str(site_home / "state" / "receipt-key.pub.pem"),
                                 "--home", str(home))
            assert done.returncode == 0, done.stdout + done.stderr
            log = work / f"{site}.log"
            node = installed.spawn(
                log, "site-node", "start", "--superlink", f"localhost:{port}", "--data", csv,
                "--task", str(home / "task.yaml"), "--ca-cert", str(home / "tls" / "ca.crt"),
                "--home", str(site_home), "--port", str(processes.free_port()))
            started.append(node)
            _wait_connected(log, node)
            assert "INFO" not in log.read_text(errors="replace")  # the node's own log is a file
        submitted = installed.run("consortium", "submit", "--home", str(home), "--rounds", "2",
                                  timeout=900)
        yield installed, home, submitted
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
            processes.stop(proc)


def test_submit_from_the_installed_package_runs_two_rounds(
    deployed: Deployed,
) -> None:
    _, _, submitted = deployed
    out = submitted.stdout
    assert submitted.returncode == 0, out + submitted.stderr
    assert "pyproject.toml" not in submitted.stderr
    assert re.search(r"round 1 ok", out) and re.search(r"round 2 ok", out), out
    for site in SITES:
        assert re.search(rf"ε {site} \d+\.\d+", out), out
    assert "Run finished: completed" in out, out


def test_audit_verify_accepts_the_installed_runs_store(
    deployed: Deployed,
) -> None:
    installed, home, _ = deployed
    done = installed.run("consortium", "audit", "verify", "--store", str(home / "runs.sqlite"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in done.stdout and "8 receipts over 1 run(s)" in done.stdout

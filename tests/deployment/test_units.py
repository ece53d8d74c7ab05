"""``site-node unit`` and ``consortium unit``: the systemd service files a site admin and the
coordinator install.

The files are read back line by line (what systemd reads), and, where ``systemd-analyze`` is
installed, checked by ``systemd-analyze verify`` (which also checks that ExecStart is an
executable file); without it that check is skipped, saying why.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from consortium.cli import main as consortium_main
from consortium.home import HOME_ENV as CONSORTIUM_HOME_ENV
from policies.example import load_example
from site_node.cli import main as site_main
from site_node.deployment import units
from site_node.home import HOME_ENV as SITE_HOME_ENV
from site_node.home import init_site_home
from tests.cli.invoke import Outcome, invoke
from tests.site_node.data_files import example_file


def site_node(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
              *args: str) -> Outcome:
    return invoke(site_main, "site-node", list(args), capsys, monkeypatch)


def consortium(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
               *args: str) -> Outcome:
    return invoke(consortium_main, "consortium", list(args), capsys, monkeypatch)


def settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file, every value of a key in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def verify(path: Path) -> None:
    """``systemd-analyze verify`` accepts the unit (skipped where it is not installed)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here: systemd's own check of the file "
                    "cannot run (its content is checked above)")
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def _node_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[Path, Outcome]:
    root = tmp_path / "site home"  # a space: quoted in ExecStart
    init_site_home(root, "hungary")
    (tmp_path / "ca.crt").write_text("not read by `unit`", encoding="utf-8")
    data = tmp_path / "hungary 100%.csv"  # a % must reach the node as one %
    shutil.copyfile(example_file("hungary"), data)
    monkeypatch.chdir(tmp_path)  # relative paths given: absolute ones written
    result = site_node(capsys, monkeypatch, "unit", "--home", str(root), "--superlink",
                       "link.example.org:9093", "--ca-cert", "ca.crt", "--data", data.name,
                       "--task", str(load_example("heart-disease").task), "--port", "9101",
                       *extra)
    return root, result


def test_site_node_unit_runs_the_node_in_the_foreground_with_its_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, result = _node_unit(tmp_path, capsys, monkeypatch, "--user", "hospital")
    assert result.code == 0, result.output
    unit = settings(result.out)
    argv = shlex.split(unit["ExecStart"][0].replace("%%", "%"))
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "site-node"
    assert Path(argv[0]) == units.console_script("site-node")
    assert argv[1] == "start" and "--detach" not in argv and "--insecure" not in argv
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options == {
        "--home": str(root), "--superlink": "link.example.org:9093",
        "--ca-cert": str(tmp_path / "ca.crt"), "--data": str(tmp_path / "hungary 100%.csv"),
        "--task": str(load_example("heart-disease").task), "--port": "9101"}
    assert unit["Restart"] == ["on-failure"] and unit["User"] == ["hospital"]
    assert unit["StandardOutput"] == ["journal"] and unit["StandardError"] == ["journal"]
    assert [shlex.split(v) for v in unit["Environment"]] == [[f"{SITE_HOME_ENV}={root}"]]
    assert unit["WantedBy"] == ["multi-user.target"]
    secrets = [(root / "node.key").read_text(), (root / "state" / "receipt-key.pem").read_text()]
    assert "PRIVATE KEY" not in result.out and not any(s in result.out for s in secrets)


def test_site_node_unit_carries_the_node_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, result = _node_unit(tmp_path, capsys, monkeypatch, "--device", "cpu",
                           "--max-physical-batch", "64", "--features-dir", "models")
    assert result.code == 0, result.output
    argv = shlex.split(settings(result.out)["ExecStart"][0].replace("%%", "%"))
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options["--device"] == "cpu" and options["--max-physical-batch"] == "64"
    assert options["--features-dir"] == str(tmp_path / "models")  # relative given: absolute


def test_site_node_unit_written_to_a_file_passes_systemd_analyze(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "site-node.service"
    _, result = _node_unit(tmp_path, capsys, monkeypatch, "--no-warm", "--output", str(out))
    assert result.code == 0, result.output
    assert "systemctl enable --now site-node" in result.out
    text = out.read_text(encoding="utf-8")
    assert settings(text)["User"] == [units.current_user()] and "--no-warm" in text
    again = site_node(capsys, monkeypatch, "unit", "--superlink", "x:1", "--ca-cert", "ca.crt",
                      "--data", "d.csv", "--task", "t.yaml", "--home", str(tmp_path / "site home"),
                      "--output", str(out))
    assert again.code == 2 and "already exists" in again.err
    assert out.read_text(encoding="utf-8") == text
    verify(out)


def test_site_node_unit_refuses_a_node_without_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    init_site_home(tmp_path / "s", "hungary")
    out = tmp_path / "site-node.service"
    result = site_node(capsys, monkeypatch, "unit", "--home", str(tmp_path / "s"),
                       "--superlink", "x:1", "--data", "d.csv", "--task", "t.yaml",
                       "--output", str(out))
    assert result.code == 2 and "give --ca-cert" in result.err and not out.exists()
    insecure = site_node(capsys, monkeypatch, "unit", "--home", str(tmp_path / "s"),
                         "--superlink", "x:1", "--data", "d.csv", "--task", "t.yaml",
                         "--insecure")
    assert insecure.code == 2 and "--insecure" in insecure.err


def test_consortium_unit_serves_the_home_in_the_foreground(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "consortium"
    assert consortium(capsys, monkeypatch, "init", "--home", str(home), "--port", "1").code == 0
    out = tmp_path / "consortium-superlink.service"
    result = consortium(capsys, monkeypatch, "unit", "--home", str(home), "--output", str(out))
    assert result.code == 0, result.output
    text = out.read_text(encoding="utf-8")
    unit = settings(text)
    argv = shlex.split(unit["ExecStart"][0])
    assert argv == [str(units.console_script("consortium")), "serve", "--home", str(home)]
    assert unit["Restart"] == ["on-failure"] and unit["User"] == [units.current_user()]
    assert unit["StandardOutput"] == ["journal"] and unit["StandardError"] == ["journal"]
    assert [shlex.split(v) for v in unit["Environment"]] == [[f"{CONSORTIUM_HOME_ENV}={home}"]]
    assert "PRIVATE KEY" not in text and (home / "tls" / "ca.key").read_text() not in text
    verify(out)


def test_consortium_unit_needs_a_home_set_up_for_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = consortium(capsys, monkeypatch, "unit", "--home", str(tmp_path / "none"))
    assert result.code == 1 and "consortium init" in result.err

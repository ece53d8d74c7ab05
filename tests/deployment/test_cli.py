"""The coordinator's and the site admin's commands, without a running SuperLink."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from consortium import deploy_cli
from site_node.cli import app as site_app

runner = CliRunner()


def _consortium_app() -> typer.Typer:
    app = typer.Typer()
    deploy_cli.register_commands(app)
    return app


def test_site_init_prints_what_to_send(tmp_path: Path) -> None:
    args = ["init", "--site-id", "cleveland", "--home", str(tmp_path / "s")]
    result = runner.invoke(site_app, args)
    assert result.exit_code == 0, result.output
    assert "node.pub" in result.output and "receipt-key.pub.pem" in result.output
    assert result.output.count("SHA256:") == 1
    again = runner.invoke(site_app, args)
    assert again.exit_code == 1


def test_init_then_enroll_without_superlink_says_so(tmp_path: Path) -> None:
    app = _consortium_app()
    home = tmp_path / "c"
    result = runner.invoke(app, ["init", str(home), "--port", "1"])
    assert result.exit_code == 0, result.output
    assert (home / "tls" / "ca.crt").is_file()
    assert runner.invoke(app, ["init", str(home)]).exit_code == 1
    runner.invoke(site_app, ["init", "--site-id", "hungary", "--home", str(tmp_path / "s")])
    enroll = runner.invoke(app, [
        "enroll", "hungary", "--home", str(home),
        "--node-key", str(tmp_path / "s" / "node.pub"),
        "--receipt-key", str(tmp_path / "s" / "state" / "receipt-key.pub.pem"),
    ])
    assert enroll.exit_code == 1
    assert "not reachable" in enroll.output and "serve" in enroll.output
    listed = runner.invoke(app, ["sites", "--home", str(home)])
    assert listed.exit_code == 0 and "hungary" not in listed.output


def test_enroll_rejects_swapped_keys(tmp_path: Path) -> None:
    app = _consortium_app()
    runner.invoke(app, ["init", str(tmp_path / "c"), "--port", "1"])
    runner.invoke(site_app, ["init", "--site-id", "hungary", "--home", str(tmp_path / "s")])
    enroll = runner.invoke(app, [
        "enroll", "hungary", "--home", str(tmp_path / "c"),
        "--node-key", str(tmp_path / "s" / "state" / "receipt-key.pub.pem"),
        "--receipt-key", str(tmp_path / "s" / "node.pub"),
    ])
    assert enroll.exit_code == 1
    assert "not an OpenSSH public key" in enroll.output


def test_start_with_missing_data_is_named(tmp_path: Path) -> None:
    runner.invoke(site_app, ["init", "--site-id", "hungary", "--home", str(tmp_path / "s")])
    result = runner.invoke(site_app, [
        "start", "--home", str(tmp_path / "s"), "--superlink", "127.0.0.1:1",
        "--ca-cert", str(tmp_path / "none.crt"), "--data", str(tmp_path / "missing.csv"),
    ])
    assert result.exit_code == 1
    assert "data file not found" in result.output

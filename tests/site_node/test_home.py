"""The site home: created once with private keys, read back, never overwritten."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from policies.errors import InvalidSiteId
from site_node.errors import SiteHomeError
from site_node.home import (
    HOME_ENV,
    default_site_home,
    demo_site_home,
    ensure_site_home,
    init_site_home,
    load_site_home,
)
from site_node.protocol import keys


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("bad", ["../x", "", "x" * 300, "Hungary", "a/b", "a b"])
def test_init_refuses_invalid_site_ids(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidSiteId):
        init_site_home(tmp_path / "home", bad)
    assert not (tmp_path / "home").exists()


def test_init_creates_private_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    home = init_site_home(tmp_path / "home", "hungary")
    assert mode(home.root) == 0o700 and mode(home.state_dir) == 0o700
    assert mode(home.node_key) == 0o600 and mode(home.receipt_key) == 0o600
    assert home.node_pub.is_file() and home.receipt_pub.is_file()
    prints = home.fingerprints()
    assert prints["node"].startswith("SHA256:") and len(prints["receipt"]) == 64
    assert prints["receipt"] == keys.fingerprint(keys.load_signing_key(home.receipt_key)
                                                 .public_key())
    before = home.receipt_key.read_bytes()
    with pytest.raises(SiteHomeError, match="refusing to overwrite"):
        init_site_home(tmp_path / "home", "hungary")
    with pytest.raises(SiteHomeError, match="refusing to overwrite"):
        init_site_home(tmp_path / "home", "cleveland")
    assert home.receipt_key.read_bytes() == before


def test_load_reads_back_what_init_wrote(tmp_path: Path) -> None:
    made = init_site_home(tmp_path / "home", "long_beach")
    loaded = load_site_home(tmp_path / "home")
    assert loaded == made and loaded.site_id == "long_beach"
    assert ensure_site_home(tmp_path / "home", "long_beach") == made
    with pytest.raises(SiteHomeError, match="belongs to site 'long_beach'"):
        ensure_site_home(tmp_path / "home", "hungary")


@pytest.mark.parametrize("text", [
    "this is [not toml", "[site]\n", "[site]\nsite-id = 5\n", "[site]\nsite-id = '../x'\n",
    "site = 'hungary'\n", "",
])
def test_a_corrupt_site_toml_is_a_site_home_error(tmp_path: Path, text: str) -> None:
    home = init_site_home(tmp_path / "home", "hungary")
    (home.root / "site.toml").write_text(text, encoding="utf-8")
    with pytest.raises(SiteHomeError, match=r"site\.toml is unreadable or invalid"):
        load_site_home(home.root)


def test_a_directory_without_site_toml_is_not_a_site_home(tmp_path: Path) -> None:
    with pytest.raises(SiteHomeError, match="not a site home"):
        load_site_home(tmp_path)


def test_the_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "elsewhere"))
    assert default_site_home() == (tmp_path / "elsewhere").resolve()
    assert demo_site_home("hungary") == (tmp_path / "elsewhere" / "demo" / "hungary").resolve()
    with pytest.raises(InvalidSiteId):
        demo_site_home("../../etc")


def test_status_is_merged_and_a_bad_status_file_reads_as_empty(tmp_path: Path) -> None:
    home = init_site_home(tmp_path / "home", "hungary")
    assert home.read_status() == {}
    home.write_status(state="connected", pid=1)
    home.write_status(state="stopped")
    status = home.read_status()
    assert status["state"] == "stopped" and status["pid"] == 1 and "updated_at" in status
    home.status_file.write_text("[1, 2]")
    assert home.read_status() == {}
    home.status_file.write_text("{broken")
    assert home.read_status() == {}


def _provision(root: str, start: Barrier, results: mp.Queue[tuple[str, str]]) -> None:
    """One process of a race to create the same site home (two demo runs started together)."""
    start.wait(timeout=60)
    try:
        home = ensure_site_home(Path(root), "hungary")
        results.put(("ok", json.dumps(home.fingerprints(), sort_keys=True)))
    except Exception as exc:  # the race must not crash any process, with any error
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_processes_creating_one_site_home_at_once_all_get_the_same_keys(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    n = 4
    start = ctx.Barrier(n)
    results: mp.Queue[tuple[str, str]] = ctx.Queue()
    root = tmp_path / "demo" / "hungary"
    procs = [ctx.Process(target=_provision, args=(str(root), start, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    outcomes = [results.get(timeout=5) for _ in procs]
    assert {what for what, _ in outcomes} == {"ok"}, outcomes
    assert len({prints for _, prints in outcomes}) == 1  # one node key, one receipt key
    home = load_site_home(root)
    assert json.dumps(home.fingerprints(), sort_keys=True) == outcomes[0][1]
    assert mode(home.node_key) == 0o600 and mode(home.receipt_key) == 0o600
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no temp


def test_ensure_keys_load_the_key_already_there(tmp_path: Path) -> None:
    first = keys.ensure_signing_key(tmp_path / "k.pem")
    again = keys.ensure_signing_key(tmp_path / "k.pem")
    assert keys.fingerprint(first.public_key()) == keys.fingerprint(again.public_key())
    keys.ensure_node_key(tmp_path / "node.key", tmp_path / "node.pub", comment="c")
    line = (tmp_path / "node.pub").read_bytes()
    keys.ensure_node_key(tmp_path / "node.key", tmp_path / "node.pub", comment="c")
    assert (tmp_path / "node.pub").read_bytes() == line
    with pytest.raises(FileExistsError):
        keys.generate_node_key(tmp_path / "node.key", tmp_path / "node.pub", comment="c")

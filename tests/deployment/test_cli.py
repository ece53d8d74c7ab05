"""The coordinator's and the site admin's deployment commands, without a running SuperLink.

Commands run through their real entry points (``main()`` and its one error handler). Where a
refusal must come before any SuperLink call, the SuperLink calls are replaced by recorders and
the test asserts they were never made.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from consortium.audit.log import ENROLMENT, REVOCATION, AuditLog
from consortium.cli import main as consortium_main
from consortium.deployment import superlink
from consortium.home import open_home
from consortium.store.database import Database
from policies.example import load_example
from policies.identity import SITE_ID_RULE
from site_node.cli import main as site_main
from site_node.deployment import preflight, processes
from tests.cli.invoke import Outcome, invoke
from tests.site_node.data_files import example_file


@pytest.fixture
def consortium(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def run(*args: str) -> Outcome:
        return invoke(consortium_main, "consortium", list(args), capsys, monkeypatch)

    return run


@pytest.fixture
def site_node(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def run(*args: str) -> Outcome:
        return invoke(site_main, "site-node", list(args), capsys, monkeypatch)

    return run


class FakeSuperLink:
    """Records every SuperLink call instead of making it."""

    def __init__(self) -> None:
        self.registered: list[str] = []
        self.unregistered: list[int] = []

    def register_node(self, dep: object, public_key: Path, name: str) -> int:
        self.registered.append(name)
        return 100 + len(self.registered)

    def unregister_node(self, dep: object, node_id: int) -> None:
        self.unregistered.append(node_id)


@pytest.fixture
def fake_link(monkeypatch: pytest.MonkeyPatch) -> FakeSuperLink:
    fake = FakeSuperLink()
    monkeypatch.setattr(superlink, "register_node", fake.register_node)
    monkeypatch.setattr(superlink, "unregister_node", fake.unregister_node)

    def no_cli(*_: object, **__: object) -> dict[str, object]:
        raise AssertionError("the Flower CLI was called")

    monkeypatch.setattr(superlink, "flwr_cli", no_cli)
    return fake


def _site(site_node, root: Path, site: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    result = site_node("init", "--site-id", site, "--home", str(root))
    assert result.code == 0, result.output
    return str(root / "node.pub"), str(root / "state" / "receipt-key.pub.pem")


def _log(home: Path) -> list[tuple[str, dict[str, object]]]:
    with closing(Database(open_home(home).store, readonly=True)) as db:
        return [(e.kind, e.payload) for e in AuditLog(db).entries()]


def test_site_init_prints_what_to_send(site_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["init", "--site-id", "cleveland", "--home", str(tmp_path / "s")]
    result = site_node(*args)
    assert result.code == 0, result.output
    assert "node.pub" in result.out and "receipt-key.pub.pem" in result.out
    assert result.out.count("SHA256:") == 1  # the node key, as ssh-keygen prints it
    again = site_node(*args)
    assert again.code == 1 and "refusing to overwrite" in again.err


def test_init_then_enroll_without_superlink_says_so(  # type: ignore[no-untyped-def]
    consortium, site_node, tmp_path: Path
) -> None:
    home = tmp_path / "c"
    result = consortium("init", "--home", str(home), "--port", "1")
    assert result.code == 0, result.output
    assert (home / "tls" / "ca.crt").is_file() and (home / "consortium.toml").is_file()
    again = consortium("init", "--home", str(home))
    assert again.code == 1 and "refusing to overwrite" in again.err
    node_pub, receipt_pub = _site(site_node, tmp_path / "s", "hungary")
    enroll = consortium("enroll", "hungary", "--home", str(home), "--node-key", node_pub,
                        "--receipt-key", receipt_pub)
    assert enroll.code == 1
    assert "not reachable" in enroll.err and "consortium serve" in enroll.err
    listed = consortium("sites", "--home", str(home))
    assert listed.code == 0 and "hungary" not in listed.out
    assert [kind for kind, _ in _log(home)] == [ENROLMENT]  # the consortium key only


def test_enroll_rejects_swapped_keys(consortium, site_node, fake_link: FakeSuperLink,  # type: ignore[no-untyped-def]
                                     tmp_path: Path) -> None:
    consortium("init", "--home", str(tmp_path / "c"), "--port", "1")
    node_pub, receipt_pub = _site(site_node, tmp_path / "s", "hungary")
    enroll = consortium("enroll", "hungary", "--home", str(tmp_path / "c"),
                        "--node-key", receipt_pub, "--receipt-key", node_pub)
    assert enroll.code == 2
    assert "not an OpenSSH public key" in enroll.err
    assert fake_link.registered == []


def test_enroll_refuses_an_invalid_site_id_before_the_superlink(  # type: ignore[no-untyped-def]
    consortium, site_node, fake_link: FakeSuperLink, tmp_path: Path
) -> None:
    home = tmp_path / "c"
    consortium("init", "--home", str(home), "--port", "1")
    node_pub, receipt_pub = _site(site_node, tmp_path / "s", "hungary")
    enroll = consortium("enroll", "../hungary", "--home", str(home), "--node-key", node_pub,
                        "--receipt-key", receipt_pub)
    assert enroll.code == 2
    assert "'../hungary'" in enroll.err and SITE_ID_RULE in enroll.err
    assert len(enroll.err.strip().splitlines()) == 1 and "Traceback" not in enroll.output
    assert fake_link.registered == []


def test_enroll_refuses_a_receipt_key_enrolled_for_another_site(  # type: ignore[no-untyped-def]
    consortium, site_node, fake_link: FakeSuperLink, tmp_path: Path
) -> None:
    home = tmp_path / "c"
    consortium("init", "--home", str(home), "--port", "1")
    a_node, a_receipt = _site(site_node, tmp_path / "a", "cleveland")
    b_node, _ = _site(site_node, tmp_path / "b", "hungary")
    first = consortium("enroll", "cleveland", "--home", str(home), "--node-key", a_node,
                       "--receipt-key", a_receipt)
    assert first.code == 0, first.output
    assert "as node 101" in first.out
    stolen = consortium("enroll", "hungary", "--home", str(home), "--node-key", b_node,
                        "--receipt-key", a_receipt)
    assert stolen.code == 2
    assert "already enrolled for site 'cleveland'" in stolen.err
    assert fake_link.registered == ["cleveland"]  # never asked to register hungary
    again = consortium("enroll", "cleveland", "--home", str(home), "--node-key", a_node,
                       "--receipt-key", a_receipt)
    assert again.code == 2 and "already enrolled" in again.err
    assert fake_link.registered == ["cleveland"]
    enrolled = [p for kind, p in _log(home) if kind == ENROLMENT and p["role"] == "site"]
    assert [(p["subject"], p["node_id"], p["mode"]) for p in enrolled] == [
        ("cleveland", 101, "deployment")]


def test_revoke_logs_the_revocation_and_a_revoked_node_key_cannot_return(  # type: ignore[no-untyped-def]
    consortium, site_node, fake_link: FakeSuperLink, tmp_path: Path
) -> None:
    home = tmp_path / "c"
    consortium("init", "--home", str(home), "--port", "1")
    node, receipt = _site(site_node, tmp_path / "a", "cleveland")
    assert consortium("enroll", "cleveland", "--home", str(home), "--node-key", node,
                      "--receipt-key", receipt).code == 0
    revoked = consortium("revoke", "cleveland", "--home", str(home), "--reason", "left")
    assert revoked.code == 0, revoked.output
    assert fake_link.unregistered == [101]
    kinds = [(kind, p.get("subject"), p.get("reason")) for kind, p in _log(home)]
    assert kinds[-2:] == [(ENROLMENT, "cleveland", None), (REVOCATION, "cleveland", "left")]
    listed = consortium("sites", "--home", str(home))
    assert "cleveland" in listed.out and "revoked: left" in listed.out
    back = consortium("enroll", "cleveland", "--home", str(home), "--node-key", node,
                      "--receipt-key", receipt)
    assert back.code == 2 and "node key" in back.err and "already enrolled" in back.err
    assert fake_link.registered == ["cleveland"]
    twice = consortium("revoke", "cleveland", "--home", str(home))
    assert twice.code == 2 and "not an active member" in twice.err


class NoProcess:
    """Fails the test if anything is spawned or the SuperLink is probed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        monkeypatch.setattr(processes, "spawn", self._spawn)
        monkeypatch.setattr(preflight, "probe_superlink", self._probe)

    def _spawn(self, args: list[str], *_: object, **__: object) -> None:
        self.calls.append(args[0])
        raise AssertionError(f"started {args[0]}")

    def _probe(self, *_: object, **__: object) -> None:
        self.calls.append("probe")
        raise AssertionError("probed the SuperLink")


def _start(site_node, root: Path, data: Path,  # type: ignore[no-untyped-def]
           task: Path | None = None) -> Outcome:
    task = task or load_example("heart-disease").task
    result: Outcome = site_node("start", "--home", str(root), "--superlink", "127.0.0.1:1",
                     "--ca-cert", str(root / "none.crt"), "--data", str(data),
                     "--task", str(task))
    return result


def test_start_with_missing_data_is_named(site_node, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _site(site_node, tmp_path / "s", "hungary")
    guard = NoProcess(monkeypatch)
    result = _start(site_node, tmp_path / "s", tmp_path / "missing.csv")
    assert result.code == 1
    assert "data file or folder not found" in result.err
    assert guard.calls == []


def test_start_with_an_invalid_task_file_is_named(  # type: ignore[no-untyped-def]
        site_node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _site(site_node, tmp_path / "s", "hungary")
    guard = NoProcess(monkeypatch)
    task = tmp_path / "task.yaml"
    task.write_text("name: x\n", encoding="utf-8")
    result = _start(site_node, tmp_path / "s", example_file("hungary"), task)
    assert result.code == 1 and "the task file cannot be used" in result.err
    assert "task.yaml" in result.err and guard.calls == []


UNPARSEABLE = {
    "not-the-data": b"patient,outcome\n1,yes\n",
    "no-rows": example_file("hungary").read_bytes().splitlines(keepends=True)[0],
    "out-of-range": example_file("hungary").read_bytes().replace(b",63,", b",163,", 1),
    "not-utf8": "dataset,num\nHungary,1\n".encode("utf-16"),
}


@pytest.mark.parametrize("kind", list(UNPARSEABLE))
def test_start_with_unparseable_data_fails_before_the_supernode(  # type: ignore[no-untyped-def]
    site_node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    _site(site_node, tmp_path / "s", "hungary")
    data = tmp_path / "data.csv"
    data.write_bytes(UNPARSEABLE[kind])
    guard = NoProcess(monkeypatch)
    result = _start(site_node, tmp_path / "s", data)
    assert result.code in (1, 2), result.output
    assert "the data do not fit task heart-disease" in result.err and str(data) in result.err
    assert "Traceback" not in result.output
    assert guard.calls == []

"""A node whose earlier process ended without signing off is let back in once the SuperLink stops
counting it online; a node never admitted is refused at once (the real restart runs in
``tests/integration/test_restarts.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from site_node.deployment import supernode
from site_node.errors import NodeStartError
from site_node.home import SiteHome, init_site_home

STILL_ONLINE = "Exit Code: 305\n[code: 2004] Failed to activate SuperNode.\n"


class Attempts:
    """Stands in for one SuperNode start: refused ``refusals`` times, then admitted."""

    def __init__(self, refusals: int, output: str = STILL_ONLINE) -> None:
        self.refusals = refusals
        self.output = output
        self.calls = 0

    def __call__(self, home: SiteHome, settings: object, timeout_s: float) -> str:
        self.calls += 1
        if self.calls <= self.refusals:
            raise supernode._Refused(self.output, supernode.explain(self.output))
        return "admitted"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SiteHome:
    monkeypatch.setattr(supernode, "check", lambda home, settings: None)
    monkeypatch.setattr("site_node.deployment.supernode.time.sleep", lambda s: None)
    return init_site_home(tmp_path / "s", "hungary")


def test_a_node_admitted_before_is_retried_until_the_superlink_lets_it_in(
        home: SiteHome, monkeypatch: pytest.MonkeyPatch) -> None:
    home.write_status(state="connected", node_id=42)
    attempts = Attempts(refusals=3)
    monkeypatch.setattr(supernode, "_start_once", attempts)
    assert supernode.start(home, object()) == "admitted"  # type: ignore[arg-type,comparison-overlap]
    assert attempts.calls == 4


def test_a_node_never_admitted_is_refused_at_once_and_told_to_enrol(
        home: SiteHome, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = Attempts(refusals=3)
    monkeypatch.setattr(supernode, "_start_once", attempts)
    with pytest.raises(NodeStartError, match="consortium enroll"):
        supernode.start(home, object())  # type: ignore[arg-type]
    assert attempts.calls == 1
    assert home.read_status()["state"] == "refused"


def test_a_node_admitted_before_gives_up_after_the_superlinks_patience(
        home: SiteHome, monkeypatch: pytest.MonkeyPatch) -> None:
    home.write_status(state="connected", node_id=42)
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr("site_node.deployment.supernode.time.monotonic",
                        lambda: float(next(clock)))
    attempts = Attempts(refusals=10_000)
    monkeypatch.setattr(supernode, "_start_once", attempts)
    with pytest.raises(NodeStartError, match="without signing off"):
        supernode.start(home, object())  # type: ignore[arg-type]
    assert 1 < attempts.calls <= supernode.rejoin_wait_s() / 5 + 1


def test_another_refusal_is_never_retried(home: SiteHome, monkeypatch: pytest.MonkeyPatch) -> None:
    home.write_status(state="connected", node_id=42)
    attempts = Attempts(refusals=3, output="Exit Code: 303\n")
    monkeypatch.setattr(supernode, "_start_once", attempts)
    with pytest.raises(NodeStartError, match="needs TLS"):
        supernode.start(home, object())  # type: ignore[arg-type]
    assert attempts.calls == 1

"""The SuperLink's Control and Runtime APIs answer its own host only (consortium/deployment/
api_guard.py): the rule, the ASGI middleware, and its place in front of Flower's middleware."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from consortium import flower_compat
from consortium.deployment import api_guard
from consortium.deployment.api_guard import HostOnlyMiddleware, HostRule

HOST = frozenset({ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("fd00::1")})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rule(addresses: frozenset[Any] = HOST, clock: Clock | None = None) -> HostRule:
    return HostRule(read=lambda: addresses, clock=clock or Clock())


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.3.4.5", "::1", "10.0.0.1", "fd00::1",
                                  "::ffff:10.0.0.1", "fd00::1%eth0"])
def test_loopback_and_the_hosts_own_addresses_are_admitted(peer: str) -> None:
    assert rule().admits(peer)


@pytest.mark.parametrize("peer", ["10.0.0.2", "192.168.1.1", "fd00::2", "::ffff:10.0.0.2",
                                  "", None, "testclient", "10.0.0.1.5"])
def test_other_hosts_and_unreadable_peers_are_refused(peer: str | None) -> None:
    assert not rule().admits(peer)


def test_an_address_the_host_gains_is_admitted_after_the_next_read() -> None:
    clock, current = Clock(), {"now": HOST}
    guard = HostRule(read=lambda: current["now"], clock=clock)
    current["now"] = HOST | {ipaddress.ip_address("10.0.0.9")}
    assert not guard.admits("10.0.0.9")  # read less than REFRESH_S ago
    clock.now = api_guard.REFRESH_S
    assert guard.admits("10.0.0.9")
    assert not guard.admits("10.0.0.10")


def test_the_host_addresses_include_loopback() -> None:
    assert ipaddress.ip_address("127.0.0.1") in api_guard.host_addresses()


def _call(path: str, peer: str | None, scope_type: str = "http") -> tuple[bool, list[Any]]:
    reached: list[bool] = []
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": scope_type, "path": path,
             "client": (peer, 40000) if peer is not None else None}
    asyncio.run(HostOnlyMiddleware(app, rule())(scope, receive, send))
    return bool(reached), sent


@pytest.mark.parametrize("path", ["/v1/control/list-nodes", "/v1/control/start-run",
                                  "/v1/runtime/pull-messages"])
def test_control_and_runtime_requests_from_another_host_get_403_and_never_reach_flower(
        path: str, caplog: pytest.LogCaptureFixture) -> None:
    reached, sent = _call(path, "10.0.0.7")
    assert not reached
    assert sent[0]["status"] == 403
    assert b"own host only" in sent[1]["body"]
    assert "10.0.0.7" in caplog.text and path in caplog.text


def test_a_websocket_from_another_host_is_closed() -> None:
    reached, sent = _call("/v1/control/stream", "10.0.0.7", "websocket")
    assert not reached and sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.parametrize(("path", "peer"), [
    ("/v1/control/list-nodes", "127.0.0.1"), ("/v1/runtime/push-messages", "10.0.0.1"),
    ("/v1/fleet/pull-messages", "10.0.0.7"), ("/health", "10.0.0.7"),
    ("/v1/controlx", "10.0.0.7"),
])
def test_fleet_health_and_this_hosts_requests_pass(path: str, peer: str) -> None:
    reached, sent = _call(path, peer)
    assert reached and sent == []


def test_a_request_with_no_peer_address_is_refused() -> None:
    reached, sent = _call("/v1/control/list-nodes", None)
    assert not reached and sent[0]["status"] == 403


def test_the_guard_is_first_in_flowers_superlink_middleware(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import flwr.superlink.main as main

    monkeypatch.setattr(main, "_get_middleware", main._get_middleware)
    assert not flower_compat.superlink_guarded()
    flower_compat.guard_superlink_apis()
    flower_compat.guard_superlink_apis()  # idempotent
    assert flower_compat.superlink_guarded()
    stack = main._get_middleware()
    assert stack[0].cls is HostOnlyMiddleware
    assert [m.cls for m in stack].count(HostOnlyMiddleware) == 1


def test_the_guard_refuses_another_flower(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flower_compat, "version", lambda name: "1.99.0")
    with pytest.raises(flower_compat.FlowerVersionError, match=r"1\.99\.0"):
        flower_compat.guard_superlink_apis()

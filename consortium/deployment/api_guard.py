"""Who may call the SuperLink's Control and Runtime APIs: processes on the SuperLink's own host.

Flower 1.42 serves its Fleet, Control and Runtime APIs on one HTTPS port, and without its OIDC
plug-in (not in the open-source distribution) the Control API asks no account of its caller.
Every hospital must reach that port for the Fleet API, so without this guard any member could
list, register or unregister node keys, or submit a run whose app bundle every site would then
execute. The consortium's own callers of those APIs all run on the SuperLink's host: the
coordinator's commands (``enroll``, ``revoke``, ``sites``, ``submit``; the home with the CA and
the run store lives there) and the SuperLink's own SuperExec and ServerApps.

:class:`HostOnlyMiddleware` is an ASGI middleware, put in front of Flower's own by
:func:`consortium.flower_compat.guard_superlink_apis`: a request for a Control or Runtime path
(:data:`GUARDED_PREFIXES`) from an address that is not one of this host's (loopback or an
interface address, :func:`host_addresses`) is answered ``403`` before Flower sees it, and logged
with the caller's address. Fleet and health requests pass untouched. The address is the TCP
peer's, which a remote caller cannot choose without being on the path between the hosts.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import psutil

log = logging.getLogger(__name__)

#: The request paths served to this host only.
GUARDED_PREFIXES = ("/v1/control/", "/v1/runtime/")
#: How often, at most, the host's addresses are read again when a caller is not among them
#: (an address added while the SuperLink runs is admitted without a restart).
REFRESH_S = 5.0
REFUSAL = (
    "the SuperLink's Control and Runtime APIs are served to its own host only: run the "
    "consortium's commands on the SuperLink's host (docs/deployment.md, Ports and directions)"
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def parse_address(text: str | None) -> Address | None:
    """The IP address ``text`` names (an IPv4-mapped IPv6 address as IPv4; a zone dropped), or
    None when it names none."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def host_addresses() -> frozenset[Address]:
    """Every IP address of this host's network interfaces, now."""
    found = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                addr = parse_address(entry.address)
                if addr is not None:
                    found.add(addr)
    return frozenset(found)


class HostRule:
    """Admits loopback and this host's own addresses; re-reads the host's addresses at most
    every :data:`REFRESH_S` seconds when a caller is not among them."""

    def __init__(self, read: Callable[[], frozenset[Address]] = host_addresses,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read, self._clock = read, clock
        self._known, self._read_at = read(), clock()

    def admits(self, peer: str | None) -> bool:
        """Whether a caller at ``peer`` (the TCP peer's address) is on this host."""
        addr = parse_address(peer)
        if addr is None:
            return False
        if addr.is_loopback or addr in self._known:
            return True
        if self._clock() - self._read_at >= REFRESH_S:
            self._known, self._read_at = self._read(), self._clock()
            return addr in self._known
        return False


def guarded(path: str) -> bool:
    """Whether ``path`` belongs to the Control or the Runtime API."""
    return path.startswith(GUARDED_PREFIXES)


class HostOnlyMiddleware:
    """ASGI middleware: Control and Runtime requests from another host are refused (403)."""

    def __init__(self, app: ASGIApp, rule: HostRule | None = None) -> None:
        self.app = app
        self.rule = rule if rule is not None else HostRule()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and guarded(str(scope.get("path", ""))):
            client = scope.get("client")
            peer = str(client[0]) if client else None
            if not self.rule.admits(peer):
                log.warning("refused %s from %s: %s", scope.get("path"), peer or "an unknown "
                            "address", "Control and Runtime APIs are for this host only")
                await _refuse(scope, send)
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = REFUSAL.encode("utf-8")
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode("ascii"))]})
    await send({"type": "http.response.body", "body": body})

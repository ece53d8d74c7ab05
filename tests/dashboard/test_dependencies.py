"""The dashboard's web stack is a combination Streamlit does not warn about.

Flower pins uvicorn below 0.50. With such a uvicorn, websockets 16.1 and >= 17 decode request
headers as latin-1, which can abort the dashboard's /_stcore/stream handshake behind a reverse
proxy that forwards non-ASCII headers (Streamlit issue 16030); the project pins websockets to a
release that does not.
"""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version


def _latin1_headers(websockets: Version) -> bool:
    return websockets >= Version("17") or Version("16.1") <= websockets < Version("16.1.1")


def test_the_installed_uvicorn_and_websockets_keep_the_dashboard_stream_working() -> None:
    websockets, uvicorn = Version(version("websockets")), Version(version("uvicorn"))
    assert uvicorn >= Version("0.52.0") or not _latin1_headers(websockets), (
        f"websockets {websockets} with uvicorn {uvicorn}: see pyproject.toml")


def test_the_rule_names_the_affected_releases() -> None:
    assert _latin1_headers(Version("17.4")) and _latin1_headers(Version("16.1"))
    assert not _latin1_headers(Version("16.1.1")) and not _latin1_headers(Version("15.0.1"))

"""A SuperNode that stops is explained in words, whatever the transport's own message was."""

from __future__ import annotations

import pytest

from site_node.deployment.supernode import explain

# The shape Flower 1.42 prints when the first connection fails (copied from a real log),
# with the transport's detail left to fill in.
CONNECTION_FAILED = """\x1b[92mINFO \x1b[0m:      Starting Flower SuperNode
\x1b[93mWARNING \x1b[0m:   Option `--insecure` was set. Starting insecure channel to
 localhost:47159.
INFO:     Uvicorn running on http://127.0.0.1:56723 (Press CTRL+C to quit)
\x1b[93mWARNING \x1b[0m:   Giving up reconnection after 0.29 seconds and 2 tries.
\x1b[91mERROR \x1b[0m:     Exit Code: 305
Failed to initialize the connection to the SuperLink.
{detail}
The SuperNode could not establish a connection to the SuperLink.

For more information, visit: <https://flower.ai/docs/framework/1.42/en/ref-exit-codes/305.html>
INFO:     Shutting down
INFO:     Waiting for application shutdown.
\x1b[92mINFO \x1b[0m:      FastAPI lifespan: shutdown
INFO:     Application shutdown complete.
INFO:     Finished server process [11327]
"""


@pytest.mark.parametrize("detail", [
    "Server disconnected without sending a response.",
    "[Errno 104] Connection reset by peer",
    "[Errno 111] Connection refused",
])
def test_a_failed_first_connection_is_a_refusal_with_the_transport_detail(detail: str) -> None:
    reason = explain(CONNECTION_FAILED.format(detail=detail))
    assert reason.startswith("the SuperLink refused the connection (")
    assert detail.rstrip(".") in reason
    assert "--ca-cert" not in reason


def test_an_insecure_node_is_told_to_use_tls() -> None:
    reason = explain(CONNECTION_FAILED.format(detail="Server disconnected."), insecure=True)
    assert "refused the connection (Server disconnected)" in reason
    assert "give --ca-cert" in reason


def test_a_missing_detail_is_said_not_invented() -> None:
    output = CONNECTION_FAILED.replace("{detail}\n", "\n")
    assert "(no detail given)" in explain(output)


@pytest.mark.parametrize(("mark", "words"), [
    ("[code: 2004] Node not found", "not enrolled"),
    ("Exit Code: 303", "needs TLS"),
    ("ssl.SSLCertVerificationError: CERTIFICATE_VERIFY_FAILED", "does not verify"),
])
def test_known_refusals_are_named(mark: str, words: str) -> None:
    assert words in explain(f"INFO : Starting Flower SuperNode\nERROR : {mark}\n")


def test_an_unknown_stop_shows_the_error_not_the_shutdown_noise() -> None:
    output = ("INFO : Starting Flower SuperNode\n\x1b[91mERROR \x1b[0m: something new broke\n"
              "detail of it\nINFO:     Shutting down\n"
              + "INFO:     Finished server process [1]\n" * 6)
    reason = explain(output)
    assert reason.startswith("the SuperNode stopped; its output:\nERROR : something new broke\n")
    assert "detail of it" in reason and "\x1b[" not in reason


def test_an_unknown_stop_without_an_error_shows_the_last_lines() -> None:
    output = "\n".join(f"line {i}" for i in range(10))
    assert explain(output) == "the SuperNode stopped; its output:\n" + "\n".join(
        f"line {i}" for i in range(5, 10))

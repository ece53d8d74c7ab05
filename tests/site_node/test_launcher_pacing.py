"""The warm launcher's executor paces SuperExec's asks for a task: soon after a task started or
ended, rarely when the node has been idle long."""

from __future__ import annotations

import pytest

from site_node.deployment import launcher


def test_the_wait_grows_with_idle_time_within_bounds() -> None:
    assert launcher.idle_wait(0.0) == launcher.FIRST_WAIT_S
    assert launcher.idle_wait(1.0) == pytest.approx(launcher.IDLE_BACKOFF)
    assert launcher.idle_wait(3600.0) == launcher.MAX_WAIT_S


def test_reconcile_waits_by_the_time_since_the_last_task(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    now, slept = [10.0], []
    executor = launcher.ForkExecutor(sleep=slept.append, clock=lambda: now[0])
    executor.reconcile()  # just started: short
    now[0] += 2.0
    executor.reconcile()  # idle 2 s: longer
    monkeypatch.setattr(launcher.os, "waitpid", lambda pid, flags: (pid, 0))
    executor.children.add(12345)
    executor.reconcile()  # a child ended: short again
    assert executor.children == set()
    assert slept == pytest.approx([
        launcher.FIRST_WAIT_S - launcher.TASK_POLL_S,
        2.0 * launcher.IDLE_BACKOFF - launcher.TASK_POLL_S,
        launcher.FIRST_WAIT_S - launcher.TASK_POLL_S])

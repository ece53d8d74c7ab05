"""Ray started early in the background: it keeps working after its start, and is shut down again
when the run that asked for it is refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from consortium.run import ray_session

pytestmark = pytest.mark.slow


@pytest.fixture
def no_ray() -> Iterator[None]:
    import ray

    assert not ray.is_initialized()
    yield
    ray_session.stop()


def _starting_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ray-start"]


def test_a_background_start_keeps_ray_alive_for_the_simulation(no_ray: None) -> None:
    import ray

    config = ray_session.backend_config(4)
    ray_session.start_in_background(config)
    ray_session.start(config)  # waits for the background start
    assert ray.is_initialized()
    # Ray ties its processes to the thread that started them: they must outlive the start.
    time.sleep(2 * ray_session._KEEP_ALIVE_S + 0.5)

    @ray.remote(num_cpus=1)
    def answer() -> int:
        return 42

    assert ray.get(answer.remote(), timeout=60) == 42
    ray_session.stop()
    assert not ray.is_initialized()
    deadline = time.monotonic() + 5
    while _starting_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _starting_threads() == []  # the keeper thread ends once Ray is down


def test_a_refused_run_shuts_the_early_ray_down(no_ray: None) -> None:
    import ray

    ray_session.start_in_background(ray_session.backend_config(2))
    ray_session.stop()  # as the command line does when the plan or the data are refused
    assert not ray.is_initialized()


def test_start_without_a_background_start_starts_ray_itself(no_ray: None) -> None:
    import ray

    ray_session.start(ray_session.backend_config(3))
    assert ray.is_initialized()
    assert _starting_threads() == []

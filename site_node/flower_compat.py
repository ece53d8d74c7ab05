"""Every touch of Flower's internals on the site's side, in one place, for Flower 1.42.0.

- :func:`install_masking`: Flower's SecAgg+ client mod derives masks with a weak generator
  (``pseudo_rand_gen``: Mersenne Twister from a 32-bit fold of the shared secret) and
  quantises and masks with several full-size int64 copies per neighbour; its masked-vector
  step is replaced by :func:`collect_masked_vectors` (mask version 2:
  :mod:`site_node.protocol.masking`, :mod:`site_node.protocol.masked_vector`), the rest of the
  protocol (keys, shares, unmask) stays Flower's.
- :func:`run_superexec_with`: the warm launcher hands Flower's SuperExec its own executor
  (Flower picks one from a fixed list) and runs ClientApp tasks with Flower's
  ``run_clientapp``.
- :func:`pace_supernode`: Flower's SuperNode loop sleeps a fixed 3 s whenever the SuperLink
  had no message for it and polls its own reply queue every 0.5 s; a SecAgg+ round is five
  exchanges, so about 15 s of a deployed round was waiting. The loop's sleeps are shortened
  (:data:`WAIT_POLL_S`; the idle wait starts at :data:`IDLE_POLL_S` after a message and grows
  with the idle time, :func:`idle_wait`, so an idle node does not keep the SuperLink busy);
  nothing else of the protocol changes.
- :func:`pace_object_pulls`: a message becomes visible before its objects have all arrived
  (the sender pushes them after it), and whoever pulls it waits a fixed 1 s, then 2 s, 4 s ...
  before asking again for an object that is not there yet. The SuperNode pulls that way from
  the SuperLink and every ClientApp from its SuperNode (which creates the task before it has
  the objects), so most exchanges waited 1 s or 3 s. The first wait is shortened
  (:data:`OBJECT_PULL_FIRST_WAIT_S`); the doubling, its 10 s cap, the number of tries and the
  time limit stay Flower's.
- :func:`clear_telemetry_flag`: Flower's telemetry reads ``FLWR_TELEMETRY_ENABLED`` once, when
  it is imported; in a process where it was imported before :mod:`site_node.telemetry` set the
  variable, its flag is cleared.
- :func:`reuse_installed_fab`: every ClientApp process extracts the run's app bundle (FAB) into
  a temporary folder and checks the hash of every file in it, then finds the bundle already
  installed and uses the installed copy (Flower installs by bundle hash and never reinstalls).
  A bundle whose full SHA-256 was installed and verified before goes straight to its
  installed folder; any other bundle goes through Flower's own install.

Each function checks the installed version first and raises :class:`FlowerVersionError` with a
clear message on any other version: these patches reach into modules Flower may change.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from site_node import telemetry
from site_node.errors import FlowerVersionError
from site_node.protocol import masked_vector
from site_node.protocol.masking import masks

#: The Flower release these patches were written for and tested against.
FLWR_VERSION = "1.42.0"
CLIENT_MASK_MODULE = "flwr.client.mod.secure_aggregation.secaggplus_mod"

log = logging.getLogger(__name__)


def installed_version() -> str:
    """The installed Flower version."""
    from importlib.metadata import version

    return version("flwr")


def check_version() -> None:
    """Raise :class:`FlowerVersionError` unless Flower :data:`FLWR_VERSION` is installed."""
    found = installed_version()
    if found != FLWR_VERSION:
        raise FlowerVersionError(
            f"the site node patches Flower internals written for flwr {FLWR_VERSION}, but flwr "
            f"{found} is installed; install flwr=={FLWR_VERSION} or review "
            "site_node/flower_compat.py"
        )


def install_masking() -> None:
    """Make Flower's SecAgg+ client mod quantise and mask with mask version
    :data:`~site_node.protocol.masking.MASK_VERSION` (idempotent): its masked-vector step
    becomes :func:`collect_masked_vectors`, and its ``pseudo_rand_gen`` (no longer called)
    :func:`~site_node.protocol.masking.masks`, so the weak generator is never used."""
    check_version()
    module = importlib.import_module(CLIENT_MASK_MODULE)
    for name in ("pseudo_rand_gen", "_collect_masked_vectors"):
        if not hasattr(module, name):
            raise FlowerVersionError(f"{CLIENT_MASK_MODULE} has no {name}: review masking")
    module.pseudo_rand_gen = masks  # type: ignore[attr-defined]
    module._collect_masked_vectors = collect_masked_vectors  # type: ignore[attr-defined]


def masking_installed() -> bool:
    """Whether the client mod masks with this release's mask version."""
    module = importlib.import_module(CLIENT_MASK_MODULE)
    return (getattr(module, "pseudo_rand_gen", None) is masks
            and getattr(module, "_collect_masked_vectors", None) is collect_masked_vectors)


def _store_shares(state: Any, configs: Any) -> list[int]:
    """Decrypt the neighbours' key shares into ``state`` (as Flower does); their node ids."""
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import decrypt
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import share_keys_plaintext_separate

    srcs, ciphertexts = list(configs[Key.SOURCE_LIST]), list(configs[Key.CIPHERTEXT_LIST])
    if len(ciphertexts) + 1 < state.threshold:
        raise ValueError("Not enough available neighbour clients.")
    for src, ciphertext in zip(srcs, ciphertexts, strict=True):
        actual, dst, seed_share, sk1_share = share_keys_plaintext_separate(
            decrypt(state.ss2_dict[src], ciphertext))
        if (actual, dst) != (src, state.nid):
            raise ValueError(f"Node {state.nid}: a key share from {src} claims to come from "
                             f"{actual} for node {dst}")
        state.rd_seed_share_dict[src] = seed_share
        state.sk1_share_dict[src] = sk1_share
    return srcs


def collect_masked_vectors(state: Any, configs: Any, num_examples: int,
                           updated_parameters: Any) -> dict[str, Any]:
    """Flower's ``secaggplus_mod._collect_masked_vectors`` with mask version 2: the same
    shares and weights, quantised and masked by :func:`masked_vector.mask_update`."""
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

    neighbours = _store_shares(state, configs)
    if num_examples > state.max_weight:
        log.warning("SecAgg+ weight %s exceeds max_weight %s: the sum may overflow",
                    num_examples, state.max_weight)
    sk1 = bytes_to_private_key(state.sk1)
    pairwise = [(generate_shared_key(sk1, bytes_to_public_key(state.public_keys_dict[n][0])),
                 1 if state.nid > n else -1) for n in neighbours]
    q = masked_vector.Quantisation(clipping_range=state.clipping_range,
                                   target_range=state.target_range, mod_range=state.mod_range)
    upload = masked_vector.mask_update(
        [masked_vector.npy_view(t) for t in updated_parameters.tensors],
        weight=round(num_examples / state.max_weight * state.target_range), q=q,
        private_seed=state.rd_seed, pairwise=pairwise)
    return {Key.MASKED_PARAMETERS: upload}


#: How long the SuperNode first waits before asking the SuperLink again when it had no
#: message; the wait grows with the time it has been idle (:data:`IDLE_BACKOFF`) up to
#: :data:`IDLE_POLL_MAX_S`.
IDLE_POLL_S = 0.05
#: The idle wait as a fraction of the time since the node last had a message: a message that
#: comes after the node waited ``t`` is picked up at most about ``IDLE_BACKOFF * t`` late.
IDLE_BACKOFF = 0.2
#: The longest idle wait (Flower: 3 s always).
IDLE_POLL_MAX_S = 1.0
#: How long it waits between looks at its own reply queue (local, cheap).
WAIT_POLL_S = 0.02
SUPERNODE_LOOP_MODULE = "flwr.supernode.start_client_internal"


def idle_wait(idle_s: float) -> float:
    """The SuperNode's wait before asking again, after ``idle_s`` seconds without a message."""
    return min(max(IDLE_POLL_S, IDLE_BACKOFF * idle_s), IDLE_POLL_MAX_S)


class _PacedClock:
    """Stands in for the ``time`` module inside Flower's SuperNode loop, with shorter sleeps:
    short right after a message (the next stage of a round comes soon), longer the longer the
    node has been idle (every ask is a signed request the SuperLink answers)."""

    def __init__(self) -> None:
        self.idle_since: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if seconds >= 3:  # Flower's wait after the SuperLink had no message
            now = time.monotonic()
            if self.idle_since is None:
                self.idle_since = now
            time.sleep(idle_wait(now - self.idle_since))
        else:  # waiting for the ClientApp's reply: a message came
            self.idle_since = None
            time.sleep(min(seconds, WAIT_POLL_S))


def pace_supernode() -> None:
    """Shorten the fixed sleeps of Flower's SuperNode loop (call before starting it)."""
    check_version()
    module = importlib.import_module(SUPERNODE_LOOP_MODULE)
    if getattr(module, "time", None) is not time and not isinstance(module.time, _PacedClock):
        raise FlowerVersionError(f"{SUPERNODE_LOOP_MODULE} no longer sleeps through `time`")
    module.time = _PacedClock()  # type: ignore[attr-defined]


#: First wait before asking again for an object that has not arrived yet (Flower: 1 s); the
#: waits still double up to Flower's cap (10 s).
OBJECT_PULL_FIRST_WAIT_S = 0.02
INFLATABLE_MODULE = "flwr.supercore.inflatable.inflatable_utils"
_OBJECT_PULLERS = ("pull_objects", "pull_and_inflate_object_from_tree")


def pace_object_pulls() -> None:
    """Make Flower's object pulls wait :data:`OBJECT_PULL_FIRST_WAIT_S` before their first retry
    (idempotent; it changes the default of the ``initial_backoff`` argument, nothing else)."""
    check_version()
    module = importlib.import_module(INFLATABLE_MODULE)
    defaults = []
    for name in _OBJECT_PULLERS:
        kwdefaults = getattr(getattr(module, name, None), "__kwdefaults__", None)
        if not kwdefaults or "initial_backoff" not in kwdefaults:
            raise FlowerVersionError(f"{INFLATABLE_MODULE}.{name} has no initial_backoff")
        defaults.append(kwdefaults)
    for kwdefaults in defaults:
        kwdefaults["initial_backoff"] = OBJECT_PULL_FIRST_WAIT_S


def object_pull_first_wait() -> float:
    """The first retry wait Flower's ``pull_objects`` uses now."""
    module = importlib.import_module(INFLATABLE_MODULE)
    return float(module.pull_objects.__kwdefaults__["initial_backoff"])


def clear_telemetry_flag() -> None:
    """Clear the flag Flower's telemetry module read from ``FLWR_TELEMETRY_ENABLED`` when it
    was imported (its ``event`` checks it on every call)."""
    check_version()
    module = importlib.import_module(telemetry.FLOWER_TELEMETRY_MODULE)
    if not isinstance(getattr(module, "FLWR_TELEMETRY_ENABLED", None), str):
        raise FlowerVersionError(
            f"{telemetry.FLOWER_TELEMETRY_MODULE} has no FLWR_TELEMETRY_ENABLED flag")
    module.FLWR_TELEMETRY_ENABLED = "0"  # type: ignore[attr-defined]


def run_supernode() -> None:
    """Flower's ``flower-supernode`` entry point, with a paced loop and paced object pulls."""
    from flwr.supernode.cli import flower_supernode

    pace_supernode()
    pace_object_pulls()
    flower_supernode()


CLIENTAPP_MODULE = "flwr.supernode.runtime.run_clientapp"
#: Where, under Flower's app folder, the installed bundles are indexed by full SHA-256.
FAB_INDEX = ".verified-fabs"


def _fab_index(install_dir: Path | None) -> Path:
    from flwr.common.constant import APP_DIR
    from flwr.supercore.utils import get_flwr_home

    base = install_dir.expanduser() if install_dir else get_flwr_home()
    return Path(base) / APP_DIR / FAB_INDEX


def _installed_by_hash(flower_install: Any) -> Any:
    """``install_from_fab`` that goes straight to the installed folder of a bundle (by full
    SHA-256) that Flower installed and verified before."""

    def install_from_fab(fab_file: Path | bytes, install_dir: Path | None = None,
                         skip_prompt: bool = False) -> Path:
        if not (isinstance(fab_file, bytes) and skip_prompt):
            return Path(flower_install(fab_file, install_dir, skip_prompt))
        entry = _fab_index(install_dir) / hashlib.sha256(fab_file).hexdigest()
        try:
            installed = Path(entry.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            installed = None
        if installed is not None and installed.is_dir():
            return installed
        path = Path(flower_install(fab_file, install_dir, skip_prompt))
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        partial.write_text(str(path), encoding="utf-8")
        partial.replace(entry)
        return path

    install_from_fab.flower_install = flower_install  # type: ignore[attr-defined]
    return install_from_fab


def reuse_installed_fab() -> None:
    """Make every ClientApp reuse the installed copy of a bundle it installed before
    (idempotent; see the module docstring)."""
    check_version()
    module = importlib.import_module(CLIENTAPP_MODULE)
    current = getattr(module, "install_from_fab", None)
    if current is None:
        raise FlowerVersionError(f"{CLIENTAPP_MODULE} no longer installs with install_from_fab")
    if not hasattr(current, "flower_install"):
        module.install_from_fab = _installed_by_hash(current)  # type: ignore[attr-defined]


def fab_reuse_installed() -> bool:
    """Whether ClientApps reuse installed bundles."""
    module = importlib.import_module(CLIENTAPP_MODULE)
    return hasattr(getattr(module, "install_from_fab", None), "flower_install")


def launch_result_accepted() -> Any:
    """Flower's value for "task launched" (``LaunchResult.accepted()``)."""
    from flwr.supercore.superexec.executor.types import LaunchResult

    return LaunchResult.accepted()


def run_clientapp_task(spec: Any) -> None:
    """Run one ClientApp task with Flower's own ``run_clientapp`` (in a forked child)."""
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    run_clientapp(
        runtime_api_address=spec.runtime_api_address, token=spec.token,
        insecure=spec.insecure, certificates=None, parent_pid=spec.parent_pid,
        runtime_dependency_install=False,
    )


def run_superexec_with(executor: Any, runtime_api_address: str, parent_pid: int | None) -> None:
    """Run Flower's SuperExec loop with ``executor`` instead of its subprocess executor."""
    check_version()
    from flwr.supercore.superexec import run_superexec as superexec

    if not hasattr(superexec, "get_executor"):
        raise FlowerVersionError("flwr.supercore.superexec.run_superexec has no get_executor")
    superexec.get_executor = lambda *args, **kwargs: executor
    superexec.run_superexec(
        runtime_api_address=runtime_api_address,
        insecure=True,  # the SuperNode's runtime API listens on loopback only
        plugin_config=None, parent_pid=parent_pid, runtime_dependency_install=False,
    )

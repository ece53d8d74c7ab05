"""What a node knows about itself, parsed once from its configuration: never sent anywhere.

A deployed SuperNode gets ``site-id``, ``data-path``, ``state-dir`` (and optionally
``policy-path``, ``task-path``, ``device``, ``max-physical-batch`` and ``features-dir``) in
its own
``--node-config``; Flower hands them to the
ClientApp on that machine only. The local demonstration builds the same :class:`NodeSettings`
for each site it plays and hands them to the ClientApp it starts
(:func:`site_node.client_app.client_app_for`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from policies.errors import PolicyError
from policies.identity import check_site_id
from site_node.device import AUTO, parse_device
from site_node.errors import ConfigError

# -- node configuration keys (``flower-supernode --node-config``) ------------------------------
NODE_SITE_ID = "site-id"
NODE_DATA_PATH = "data-path"
NODE_STATE_DIR = "state-dir"
NODE_POLICY_PATH = "policy-path"
NODE_TASK_PATH = "task-path"
NODE_DEVICE = "device"
NODE_MAX_PHYSICAL_BATCH = "max-physical-batch"
NODE_FEATURES_DIR = "features-dir"
#: Largest ``max-physical-batch`` accepted (a bound on a typo, not on memory).
MAX_PHYSICAL_BATCH_LIMIT = 1_000_000


@dataclass(frozen=True, kw_only=True)
class NodeSettings:
    """One site node's identity and local paths.

    Attributes
    ----------
    site : str
        The site id (the one site id rule applies).
    data_path : Path or None
        The site's data file or folder (None: the node has no data and refuses to train).
    state_dir : Path
        The node's private state: ledger, receipt key, own policy.
    policy_path : Path or None
        The site's own policy file; None means ``<state_dir>/policy.yaml`` if it exists.
    task_path : Path or None
        The task file the site admin agreed to (``site-node start --task``): the node refuses
        an instruction for any other task. None: the node trains the task the instruction
        carries (the local demonstration).
    device : str
        Where the site trains: ``auto`` (a GPU when there is one), ``cpu`` or ``cuda[:N]``
        (:mod:`site_node.device`; checked at construction, resolved on this machine).
    max_physical_batch : int or None
        Largest batch the device computes at once: a Poisson batch above it is split into
        physical batches and the noisy step is taken once per logical batch (Opacus'
        ``BatchMemoryManager``); the mechanism and ε are unchanged. None: no cap.
    features_dir : Path or None
        The site's *features folder*: where an image task's pretrained backbone file
        (``features: {kind: pretrained, file: ...}``) is looked up and checked by its hash.
        None: the folder holding the data (beside the ``.npz`` file or the image folder).
        ``site-node start`` refuses one that is not a directory (:func:`features_folder`).
    """

    site: str
    data_path: Path | None
    state_dir: Path
    policy_path: Path | None = None
    task_path: Path | None = None
    device: str = AUTO
    max_physical_batch: int | None = None
    features_dir: Path | None = None

    def __post_init__(self) -> None:
        parse_device(self.device, field=f"node config {NODE_DEVICE}")
        if self.max_physical_batch is not None:
            _physical_batch(self.max_physical_batch)

    def node_config(self) -> dict[str, str]:
        """As ``--node-config`` entries."""
        values = {NODE_SITE_ID: self.site, NODE_STATE_DIR: str(self.state_dir)}
        if self.data_path is not None:
            values[NODE_DATA_PATH] = str(self.data_path)
        if self.policy_path is not None:
            values[NODE_POLICY_PATH] = str(self.policy_path)
        if self.task_path is not None:
            values[NODE_TASK_PATH] = str(self.task_path)
        if self.device != AUTO:
            values[NODE_DEVICE] = self.device
        if self.max_physical_batch is not None:
            values[NODE_MAX_PHYSICAL_BATCH] = str(self.max_physical_batch)
        if self.features_dir is not None:
            values[NODE_FEATURES_DIR] = str(self.features_dir)
        return values


def features_folder(path: Path | str, *, field: str = NODE_FEATURES_DIR) -> Path:
    """``path`` as an absolute features folder (``~`` expanded, a relative path resolved against
    the working directory, as the data path is), once it is an existing directory.

    Raises
    ------
    ConfigError
        Naming ``field`` and the path, if it is not an existing directory.
    """
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        what = "no such folder" if not folder.exists() else "not a folder"
        raise ConfigError(f"{field}: {what}: {folder} (the folder where the task's pretrained "
                          "backbone file is looked up)")
    return folder


def _physical_batch(value: object) -> int:
    """A positive whole number of examples (an int, or its ASCII decimal digits)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(text, str) or not text.isascii() or not text.isdigit()
            or not 1 <= int(text) <= MAX_PHYSICAL_BATCH_LIMIT):
        raise ConfigError(f"node config {NODE_MAX_PHYSICAL_BATCH}: expected a whole number of "
                          f"examples from 1 to {MAX_PHYSICAL_BATCH_LIMIT}, got {value!r}")
    return int(text)


def _path(config: Mapping[str, object], key: str) -> Path | None:
    value = config.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"node config {key}: expected a path, got {value!r}")
    return Path(value)


def settings_from_node_config(config: Mapping[str, object]) -> NodeSettings:
    """Parse a deployed node's configuration.

    Raises
    ------
    ConfigError
        If the site id or the state directory is missing or invalid.
    """
    if NODE_SITE_ID not in config:
        raise ConfigError(
            f"this node has no site identity: its node config lacks {NODE_SITE_ID!r} (start it "
            "with `site-node start`; simulations run through `consortium run`)"
        )
    try:
        site = check_site_id(config[NODE_SITE_ID], what=f"node config {NODE_SITE_ID}")
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    state_dir = _path(config, NODE_STATE_DIR)
    if state_dir is None:
        raise ConfigError(f"node config lacks {NODE_STATE_DIR!r}")
    device = parse_device(config.get(NODE_DEVICE) or AUTO, field=f"node config {NODE_DEVICE}")
    cap = config.get(NODE_MAX_PHYSICAL_BATCH)
    return NodeSettings(site=site, data_path=_path(config, NODE_DATA_PATH), state_dir=state_dir,
                        policy_path=_path(config, NODE_POLICY_PATH),
                        task_path=_path(config, NODE_TASK_PATH), device=device,
                        max_physical_batch=None if cap in (None, "") else _physical_batch(cap),
                        features_dir=_path(config, NODE_FEATURES_DIR))

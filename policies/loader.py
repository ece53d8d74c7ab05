"""Load a policy file once, at the edge: YAML -> validated frozen objects + content hash.

The content hash is the SHA-256 of the validated policy as canonical JSON (sorted keys, no
whitespace). Comments and formatting do not change it; any change of a value does. Every round
of a run records the hash of the policy it ran under.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from policies.schema import ConsortiumPolicy
from policies.site_schema import SitePolicy

_M = TypeVar("_M", bound=BaseModel)


class PolicyError(Exception):
    """A policy file is missing, unreadable or invalid; the message names file and field."""


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy with where it came from and its content hash."""

    policy: ConsortiumPolicy
    source: str
    sha256: str

    @property
    def canonical_json(self) -> str:
        """The policy as canonical JSON (what the hash is computed over)."""
        return canonical_json(self.policy)


def default_policy_path() -> Path:
    """The embedded consortium policy (``policies/consortium.yaml``)."""
    return Path(str(resources.files("policies") / "consortium.yaml"))


def canonical_json(policy: ConsortiumPolicy) -> str:
    """Canonical JSON of a policy: sorted keys, compact separators."""
    return json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def policy_sha256(policy: ConsortiumPolicy) -> str:
    """Content hash of a policy."""
    return hashlib.sha256(canonical_json(policy).encode()).hexdigest()


def site_policy_sha256(policy: SitePolicy) -> str:
    """Content hash of a site policy (canonical JSON, like the consortium policy's)."""
    text = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``FILE: field.path: message (got VALUE)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        shown = err["type"] != "missing" and loc != "(top level)"
        got = f" (got {err['input']!r})" if shown else ""
        lines.append(f"{source}: {loc}: {err['msg']}{got}")
    return "\n".join(lines)


def _validate(model: type[_M], data: Any, source: str) -> _M:
    """Validate a parsed mapping into ``model``; errors name the file and field."""
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise PolicyError(f"{source}: a policy must be a mapping of fields, got {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(format_validation_error(source, exc)) from None


def parse_policy(data: Any, source: str) -> LoadedPolicy:
    """Validate an already-parsed mapping."""
    policy = _validate(ConsortiumPolicy, data, source)
    return LoadedPolicy(policy=policy, source=source, sha256=policy_sha256(policy))


def load_policy(path: Path | str | None = None) -> LoadedPolicy:
    """Read and validate a consortium policy file (the embedded default when ``path`` is None).

    Raises
    ------
    PolicyError
        If the file cannot be read, is not YAML, or any field is invalid.
    """
    file = Path(path) if path else default_policy_path()
    try:
        text = file.read_text()
    except OSError as exc:
        raise PolicyError(f"{file}: cannot read policy file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{file}: not valid YAML: {exc}") from None
    return parse_policy(data, str(file))


def json_schema() -> dict[str, Any]:
    """The consortium policy's JSON Schema, for reviewers."""
    return ConsortiumPolicy.model_json_schema()


@dataclass(frozen=True)
class LoadedSitePolicy:
    """A validated site policy with where it came from and its content hash."""

    policy: SitePolicy
    source: str
    sha256: str


def _read_yaml(file: Path) -> Any:
    try:
        text = file.read_text()
    except OSError as exc:
        raise PolicyError(f"{file}: cannot read policy file: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{file}: not valid YAML: {exc}") from None


def parse_site_policy(data: Any, source: str) -> LoadedSitePolicy:
    """Validate an already-parsed site policy mapping."""
    policy = _validate(SitePolicy, data, source)
    return LoadedSitePolicy(policy=policy, source=source, sha256=site_policy_sha256(policy))


def load_site_policy(path: Path | str) -> LoadedSitePolicy:
    """Read and validate a site policy file (``policies/sites/<site>.yaml``).

    Raises
    ------
    PolicyError
        If the file cannot be read, is not YAML, or any field is invalid.
    """
    file = Path(path)
    return parse_site_policy(_read_yaml(file), str(file))


def load_any_policy(path: Path | str) -> LoadedPolicy | LoadedSitePolicy:
    """Load a consortium or a site policy; a mapping with a ``site`` key is a site policy."""
    file = Path(path)
    data = _read_yaml(file)
    if isinstance(data, dict) and "site" in data:
        return parse_site_policy(data, str(file))
    return parse_policy(data, str(file))


def site_json_schema() -> dict[str, Any]:
    """The site policy's JSON Schema, for reviewers."""
    return SitePolicy.model_json_schema()

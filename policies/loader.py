"""Load a policy file once, at the edge: YAML -> validated frozen objects + content hash.

The content hash is the SHA-256 of the validated policy as canonical JSON (sorted keys, no
whitespace). Comments and formatting do not change it; any change of a value does. Every round
of a run records the hash of the policy it ran under, and a site re-validates the canonical
JSON it receives against that hash (:func:`policy_from_canonical`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from policies import canonical
from policies.documents import read_document
from policies.errors import PolicyError
from policies.schema import ConsortiumPolicy, PrivacyTerms
from policies.site_schema import SitePolicy

_M = TypeVar("_M", bound=BaseModel)


class _HasCanonicalJSON(Protocol):
    @property
    def canonical_json(self) -> str: ...


_Canonical = TypeVar("_Canonical", bound=_HasCanonicalJSON)


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


@dataclass(frozen=True)
class LoadedTerms:
    """A validated policy of privacy terms only (no ``dp`` section): the consortium chooses
    the training settings (:mod:`policies.choice`) before a run."""

    terms: PrivacyTerms
    source: str
    sha256: str


@dataclass(frozen=True)
class LoadedSitePolicy:
    """A validated site policy with where it came from and its content hash."""

    policy: SitePolicy
    source: str
    sha256: str


def default_policy_path() -> Path:
    """The embedded consortium policy (``policies/consortium.yaml``)."""
    return Path(str(resources.files("policies") / "consortium.yaml"))


def example_site_policy_path(site: str) -> Path:
    """The embedded example policy of a demonstration site (``policies/sites/<site>.yaml``)."""
    return Path(str(resources.files("policies") / "sites" / f"{site}.yaml"))


def canonical_json(policy: BaseModel) -> str:
    """Canonical JSON of a policy (or task): :func:`policies.canonical.to_json` of its fields."""
    return canonical.to_json(policy.model_dump(mode="json"))


def policy_sha256(policy: BaseModel) -> str:
    """Content hash of a (consortium or site) policy."""
    return canonical.sha256(policy.model_dump(mode="json"))


_UNION_BRANCHES = {"float", "int", "str", "bool", "none", "function-after[_whole_batches(), float]"}


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``FILE: field.path: message (got VALUE)``.

    A field that accepts a float or an integer reports each branch of the union; only the first
    problem per field is kept, without the branch name.
    """
    lines, seen = [], set()
    for err in exc.errors():
        parts = [str(p) for p in err["loc"] if str(p) not in _UNION_BRANCHES
                 and not str(p).startswith(("constrained-", "function-"))]
        loc = ".".join(parts) or "(top level)"
        if loc in seen:
            continue
        seen.add(loc)
        msg = err["msg"].removeprefix("Value error, ")
        # Our own rules quote the value themselves; a whole section is not "a value".
        shown = (err["type"] != "missing" and loc != "(top level)" and "(got " not in msg
                 and not isinstance(err["input"], dict))
        got = repr(err["input"]) if shown else ""
        got = f" (got {got[:60]}{'...' if len(got) > 60 else ''})" if shown else ""
        lines.append(f"{source}: {loc}: {msg}{got}")
    return "\n".join(lines)


def validate(model: type[_M], data: Any, source: str) -> _M:
    """Validate a parsed mapping into ``model``; errors name the file and field."""
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise PolicyError(f"{source}: a policy must be a mapping of fields, got {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(format_validation_error(source, exc)) from None


def parse_policy(data: Any, source: str) -> LoadedPolicy:
    """Validate an already-parsed consortium policy mapping."""
    policy = validate(ConsortiumPolicy, data, source)
    return LoadedPolicy(policy=policy, source=source, sha256=policy_sha256(policy))


def parse_policy_document(data: Any, source: str) -> LoadedPolicy | LoadedTerms:
    """Validate a consortium policy mapping: a full policy, or privacy terms only (no ``dp``)."""
    if isinstance(data, dict) and "dp" not in data:
        terms = validate(PrivacyTerms, data, source)
        return LoadedTerms(terms=terms, source=source, sha256=policy_sha256(terms))
    return parse_policy(data, source)


def parse_site_policy(data: Any, source: str) -> LoadedSitePolicy:
    """Validate an already-parsed site policy mapping."""
    policy = validate(SitePolicy, data, source)
    return LoadedSitePolicy(policy=policy, source=source, sha256=policy_sha256(policy))


def load_policy(path: Path | str | None = None) -> LoadedPolicy:
    """Read and validate a consortium policy file (the embedded default when ``path`` is None).

    Raises
    ------
    PolicyError
        If the file cannot be read, is not strict YAML, or any field is invalid.
    """
    loaded = load_policy_document(path)
    if isinstance(loaded, LoadedTerms):
        raise PolicyError(f"{loaded.source}: this policy states only the privacy terms (no dp "
                          "section); its training settings are chosen from the sites' numbers "
                          "of training examples, which only a local run knows beforehand "
                          "(consortium run/compare --task FILE --data SITE=PATH ...): give a "
                          "full policy here")
    return loaded


def load_policy_document(path: Path | str | None = None) -> LoadedPolicy | LoadedTerms:
    """Read and validate a consortium policy file: a full policy, or privacy terms only.

    Raises
    ------
    PolicyError
        If the file cannot be read, is not strict YAML, or any field is invalid.
    """
    file = Path(path) if path else default_policy_path()
    data = read_document(file)
    if "site" in data:
        raise PolicyError(f"{file}: this is a site policy (it names a site), not the "
                          "consortium's policy")
    return parse_policy_document(data, str(file))


def load_site_policy(path: Path | str) -> LoadedSitePolicy:
    """Read and validate a site policy file.

    Raises
    ------
    PolicyError
        If the file cannot be read, is not strict YAML, or any field is invalid.
    """
    file = Path(path)
    return parse_site_policy(read_document(file), str(file))


def load_any_policy(path: Path | str) -> LoadedPolicy | LoadedTerms | LoadedSitePolicy:
    """Load a consortium policy (full, or privacy terms only) or a site policy; a mapping with
    a ``site`` key is a site policy."""
    file = Path(path)
    data = read_document(file)
    if "site" in data:
        return parse_site_policy(data, str(file))
    return parse_policy_document(data, str(file))


def from_canonical(text: str, expected_sha256: str, source: str, *, kind: str,
                   parse: Callable[[Any, str], _Canonical]) -> _Canonical:
    """Re-validate a document (a ``kind``) received as canonical JSON with ``parse``, and check
    it against its hash and its canonical form.

    Raises
    ------
    PolicyError
        If the text is not JSON, not valid, or does not hash to ``expected_sha256``.
    """
    if hashlib.sha256(text.encode()).hexdigest() != expected_sha256:
        raise PolicyError(f"{source}: the {kind} does not match its hash {expected_sha256[:16]}…")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PolicyError(f"{source}: the {kind} is not JSON: {exc}") from None
    loaded = parse(data, source)
    if loaded.canonical_json != text:
        raise PolicyError(f"{source}: the {kind} is not in canonical form")
    return loaded


def policy_from_canonical(text: str, expected_sha256: str, source: str) -> LoadedPolicy:
    """Re-validate a policy received as canonical JSON and check it against its hash
    (:func:`from_canonical`)."""
    return from_canonical(text, expected_sha256, source, kind="policy", parse=parse_policy)


def with_sites(loaded: LoadedPolicy, sites: tuple[str, ...], source: str) -> LoadedPolicy:
    """The policy with its member ``sites`` replaced, validated again (``min_sites``, SecAgg+
    shares and capacity must still fit) and hashed anew: the policy a run with those sites is
    recorded under. Unchanged (same hash) when the sites are the policy's own.

    Raises
    ------
    PolicyError
        Naming ``source`` and the field that no longer fits.
    """
    if tuple(sites) == loaded.policy.sites:
        return loaded
    data = loaded.policy.model_dump(mode="json")
    data["sites"] = list(sites)
    return parse_policy(data, source)


def terms_with_sites(loaded: LoadedTerms, sites: tuple[str, ...], source: str, *,
                     rounds: int | None = None) -> LoadedTerms:
    """Privacy terms with their member ``sites`` replaced (as :func:`with_sites`), and their
    ``rounds`` when given."""
    if tuple(sites) == loaded.terms.sites and rounds is None:
        return loaded
    data = loaded.terms.model_dump(mode="json", exclude_none=True)
    data["sites"] = list(sites)
    if rounds is not None:
        data["rounds"] = rounds
    parsed = parse_policy_document(data, source)
    assert isinstance(parsed, LoadedTerms)  # no dp section was added
    return parsed


def json_schema() -> dict[str, Any]:
    """The consortium policy's JSON Schema, for reviewers: a full policy, or privacy terms
    only (the training settings then chosen, :mod:`policies.choice`)."""
    schema: dict[str, Any] = TypeAdapter(ConsortiumPolicy | PrivacyTerms).json_schema()
    schema["title"] = "ConsortiumPolicy"
    return schema


def site_json_schema() -> dict[str, Any]:
    """The site policy's JSON Schema, for reviewers."""
    return SitePolicy.model_json_schema()

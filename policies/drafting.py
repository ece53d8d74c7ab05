"""A draft consortium policy for given member sites, written from a reviewed policy file.

A coordinator whose consortium is not the embedded example's four hospitals needs a policy that
names its own members, with ``min_sites`` and SecAgg+'s shares that fit them. The draft is the
reviewed base file (by default the packaged ``consortium.yaml``) with only those lines changed,
so every comment a reviewer reads stays; it is parsed and validated like any policy before it
is returned, and nothing is written when it does not validate.

- ``sites`` becomes the given members (site ids checked by :mod:`policies.identity`);
- ``min_sites`` becomes the given value, or every member by default (a round needs all sites);
- ``secagg.num_shares`` and ``secagg.reconstruction_threshold`` become fractions of the sampled
  sites (1.0 and 0.67: every site holds a share of every other's mask, any two thirds can
  rebuild a dropped site's), unless the base's whole numbers still fit ``min_sites``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from policies.documents import parse_document
from policies.errors import PolicyError
from policies.identity import check_site_id
from policies.loader import LoadedPolicy, parse_policy

#: Fractions of the sampled sites used when the base's whole numbers do not fit ``min_sites``.
FRACTIONAL_SHARES = 1.0
FRACTIONAL_THRESHOLD = 0.67


@dataclass(frozen=True)
class Draft:
    """The draft policy's text and what it parses to."""

    text: str
    policy: LoadedPolicy
    changed: tuple[str, ...]


def _set(text: str, key: str, value: str, *, indent: str = "") -> str:
    """``text`` with the value of the one line ``{indent}{key}: …`` replaced (comment kept)."""
    pattern = re.compile(rf"^({re.escape(indent)}{re.escape(key)}:[ \t]*)([^#\n]*?)([ \t]*#.*)?$",
                         re.MULTILINE)
    found = pattern.findall(text)
    if len(found) != 1:
        raise PolicyError(f"the base policy has {len(found)} lines '{indent}{key}:' "
                          "(expected exactly one): draft from a file laid out like "
                          "policies/consortium.yaml")
    return pattern.sub(lambda m: f"{m.group(1)}{value}{m.group(3) or ''}", text, count=1)


def _whole_shares_fit(base: LoadedPolicy, min_sites: int) -> bool:
    shares = base.policy.secagg.num_shares
    return not isinstance(shares, int) or shares <= min_sites


def draft_policy(base_text: str, base: LoadedPolicy, *, sites: Sequence[str],
                 min_sites: int | None = None, source: str = "draft policy") -> Draft:
    """The base policy with ``sites``, ``min_sites`` and (where needed) SecAgg+'s shares set.

    Raises
    ------
    PolicyError
        Naming the site id or the field that does not validate.
    """
    members = [check_site_id(s, what="--sites entry") for s in sites]
    if len(set(members)) != len(members):
        raise PolicyError(f"--sites names a site twice: {', '.join(members)}")
    need = len(members) if min_sites is None else min_sites
    text = _set(base_text, "sites", "[" + ", ".join(members) + "]")
    text = _set(text, "min_sites", str(need))
    changed = ["sites", "min_sites"]
    if not _whole_shares_fit(base, need):
        text = _set(text, "num_shares", str(FRACTIONAL_SHARES), indent="  ")
        text = _set(text, "reconstruction_threshold", str(FRACTIONAL_THRESHOLD), indent="  ")
        changed += ["secagg.num_shares", "secagg.reconstruction_threshold"]
    loaded = parse_policy(parse_document(text.encode("utf-8"), source), source)
    return Draft(text=text, policy=loaded, changed=tuple(changed))

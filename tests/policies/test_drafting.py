"""A draft policy for the coordinator's own members: only members, min_sites and (where they no
longer fit) SecAgg+'s shares change; it validates before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.cli import main as consortium_main
from policies.drafting import FRACTIONAL_SHARES, draft_policy
from policies.errors import PolicyError
from policies.loader import default_policy_path, load_policy
from tests.cli.invoke import invoke

BASE = default_policy_path().read_text(encoding="utf-8")
SITE = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)


def draft(sites: list[str], min_sites: int | None = None):  # type: ignore[no-untyped-def]
    return draft_policy(BASE, load_policy(), sites=sites, min_sites=min_sites)


@settings(max_examples=40, deadline=None)
@given(sites=st.lists(SITE, min_size=2, max_size=12, unique=True), data=st.data())
def test_a_draft_names_the_members_and_keeps_every_other_value(
        sites: list[str], data: st.DataObject) -> None:
    need = data.draw(st.one_of(st.none(), st.integers(2, len(sites))))
    result = draft(sites, need)
    p, base = result.policy.policy, load_policy().policy
    assert list(p.sites) == sites and p.min_sites == (need or len(sites))
    assert (p.dp, p.delta, p.epsilon_ceiling, p.rounds) == (base.dp, base.delta,
                                                             base.epsilon_ceiling, base.rounds)
    shares = p.secagg.num_shares
    assert shares == base.secagg.num_shares or shares == FRACTIONAL_SHARES
    assert not isinstance(shares, int) or shares <= p.min_sites


def test_the_reviewers_comments_stay() -> None:
    text = draft(["north", "south"]).text
    comments = [line for line in BASE.splitlines() if line.lstrip().startswith("#")]
    assert all(c in text.splitlines() for c in comments)


@pytest.mark.parametrize(("sites", "min_sites", "message"), [
    (["north", "North"], None, "invalid site id 'North'"),
    (["north", "north"], None, "names a site twice"),
    (["north", "south"], 3, "min_sites (3) exceeds the number of member sites (2)"),
])
def test_a_draft_that_would_not_validate_is_refused(sites: list[str], min_sites: int | None,
                                                    message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        draft(sites, min_sites)


def test_a_base_laid_out_otherwise_is_refused_naming_the_line() -> None:
    with pytest.raises(PolicyError, match="0 lines 'min_sites:'"):
        draft_policy(BASE.replace("min_sites:", "min_sites :"), load_policy(),
                     sites=["a", "b"])


def test_the_command_writes_once_and_never_over_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "p.yaml"
    args = ["policy", "new", "--sites", "north,south,east", "--output", str(out)]
    assert invoke(consortium_main, "consortium", args, capsys, monkeypatch).code == 0
    assert list(load_policy(out).policy.sites) == ["north", "south", "east"]
    before = out.read_bytes()
    again = invoke(consortium_main, "consortium", [*args[:3], "north,south", *args[4:]],
                   capsys, monkeypatch)
    assert again.code == 2 and "already exists" in again.err and out.read_bytes() == before
    bad = invoke(consortium_main, "consortium", ["policy", "new", "--sites", "north,South",
                                                 "--output", str(tmp_path / "q.yaml")],
                 capsys, monkeypatch)
    assert bad.code == 2 and "'South'" in bad.err and not (tmp_path / "q.yaml").exists()
    assert not list(tmp_path.glob(".*.tmp"))


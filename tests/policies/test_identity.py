"""The one site id rule: safe as a path component, unambiguous, used everywhere."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.errors import InvalidSiteId, PolicyError
from policies.identity import SITE_ID_PATTERN, check_site_id


@pytest.mark.parametrize("site", ["cleveland", "long_beach", "site-2", "a", "0", "x" * 63])
def test_valid_site_ids_are_returned(site: str) -> None:
    assert check_site_id(site) == site


@pytest.mark.parametrize("site", [
    "../x", "..", ".", "", "x" * 64, "x" * 300, "Cleveland", "CLEVELAND", "a b", "-a", "_a",
    "a/b", "a\\b", "a.b", "caf\u00e9", "a\n", "a\x00", None, 5, b"cleveland", ["cleveland"],
])
def test_invalid_site_ids_are_refused_naming_what(site: object) -> None:
    with pytest.raises(InvalidSiteId) as info:
        check_site_id(site, what="peers[3]")
    msg = str(info.value)
    assert msg.startswith("peers[3]: invalid site id") and "lower-case letters" in msg
    assert isinstance(info.value, PolicyError) and isinstance(info.value, ValueError)


def test_a_long_id_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidSiteId) as info:
        check_site_id("y" * 300)
    assert len(str(info.value)) < 250 and "..." in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80),
                 st.from_regex(SITE_ID_PATTERN, fullmatch=True),
                 st.text(alphabet="abcXYZ019_-./\\ ", max_size=70)))
def test_an_accepted_id_is_always_a_plain_path_component(value: str) -> None:
    try:
        check_site_id(value)
    except InvalidSiteId:
        assert SITE_ID_PATTERN.fullmatch(value) is None
        return
    assert 1 <= len(value) <= 63 and value == value.lower()
    assert PurePosixPath(value).name == value and value not in (".", "..")
    assert value.isascii() and "/" not in value and "\\" not in value

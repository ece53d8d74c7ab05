"""Strict YAML: what a reviewed policy file may not hold, each refusal one line naming the file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from policies.documents import MAX_BYTES, parse_document, read_document
from policies.errors import PolicyError
from policies.loader import load_policy, load_site_policy
from tests.policies.policy_data import write


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: ``levels`` anchors, each nine aliases of the previous one."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        aliases = ", ".join([f"*l{i - 1}"] * 9)
        lines.append(f"l{i}: &l{i} [{aliases}]")
    return "\n".join(lines) + "\n"


def one_line_error(exc: pytest.ExceptionInfo[PolicyError], source: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{source}: "), msg
    return msg


@pytest.mark.parametrize(("text", "line"), [
    ("delta: 1.0e-5\ndelta: 1.0e-3\n", 2),
    ("dp:\n  sample_rate: 0.2\n  sample_rate: 1.0\n", 3),
    ("site: hungary\nsite: cleveland\n", 2),
])
def test_duplicate_keys_are_refused_naming_the_file(tmp_path: Path, text: str, line: int
                                                    ) -> None:
    file = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        read_document(file)
    msg = one_line_error(info, str(file))
    assert "duplicate key" in msg and f"(line {line}," in msg


def test_duplicate_key_in_a_site_policy_is_refused_by_the_loader(tmp_path: Path) -> None:
    file = write(tmp_path, "site: hungary\nepsilon_ceiling: 1.0\nepsilon_ceiling: 9.0\n")
    with pytest.raises(PolicyError, match="duplicate key 'epsilon_ceiling'"):
        load_site_policy(file)


@pytest.mark.parametrize("load", [read_document, load_policy, load_site_policy])
def test_an_alias_bomb_is_refused_quickly_in_one_line(tmp_path: Path, load: object) -> None:
    file = write(tmp_path, billion_laughs())
    start = time.monotonic()
    with pytest.raises(PolicyError) as info:
        load(file)  # type: ignore[operator]
    assert time.monotonic() - start < 3.0
    msg = one_line_error(info, str(file))
    assert "anchors" in msg or "aliases" in msg
    assert len(msg) < 300


@pytest.mark.parametrize(("text", "what"), [
    ("a: *undefined\n", "aliases"),
    ("a: &x 1\n", "anchors"),
    ("a: &x {b: 1}\nc: *x\n", "anchors"),
    ("a: &x [1]\n", "anchors"),
])
def test_anchors_and_aliases_are_refused(text: str, what: str) -> None:
    with pytest.raises(PolicyError, match=f"f.yaml: not valid YAML: {what}"):
        parse_document(text.encode(), "f.yaml")


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "site: h\u00f4pital\n".encode("latin-1"))
    with pytest.raises(PolicyError) as info:
        read_document(file)
    assert "not UTF-8" in one_line_error(info, str(file))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32_are_refused(tmp_path: Path, encoding: str) -> None:
    data = "delta: 1.0e-5\n".encode(encoding)
    if encoding == "utf-16":
        assert data[:2] in (b"\xff\xfe", b"\xfe\xff")  # with a byte-order mark
    file = write(tmp_path, data)
    with pytest.raises(PolicyError) as info:
        read_document(file)
    assert "not UTF-8" in one_line_error(info, str(file))


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    assert parse_document(b"\xef\xbb\xbfdelta: 0.5\n", "f") == {"delta": 0.5}


def test_an_oversized_file_is_refused_without_parsing_it(tmp_path: Path) -> None:
    file = write(tmp_path, b"# " + b"x" * MAX_BYTES + b"\na: 1\n")
    with pytest.raises(PolicyError, match="larger than"):
        read_document(file)


@pytest.mark.parametrize(("text", "value"), [
    ("delta: 1e-5\n", 1e-5),
    ("delta: 1E-5\n", 1e-5),
    ("delta: 1.0e-5\n", 1e-5),
    ("delta: -2e+3\n", -2000.0),
    ("delta: .5e-1\n", 0.05),
])
def test_exponent_without_a_dot_is_a_float(text: str, value: float) -> None:
    got = parse_document(text.encode(), "f")["delta"]
    assert isinstance(got, float) and got == value


def test_delta_1e_minus_5_loads_as_a_policy_float(tmp_path: Path) -> None:
    text = load_policy().source
    body = Path(text).read_text(encoding="utf-8").replace("delta: 1.0e-5", "delta: 1e-5")
    assert "delta: 1e-5" in body
    loaded = load_policy(write(tmp_path, body))
    assert loaded.policy.delta == 1e-5
    assert loaded.sha256 == load_policy().sha256


@pytest.mark.parametrize(("text", "expected"), [
    (b"- 1\n- 2\n", "must be a mapping"),
    (b"", "must be a mapping"),
    (b"just a string\n", "must be a mapping"),
    (b"a: [1,\n", "not valid YAML"),
    (b"a: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    (b"a: 1\n---\nb: 2\n", "not valid YAML"),
    (b"? [1, 2]\n: x\n", "a key must be a plain value"),
    (b"? {a: 1}\n: x\n", "a key must be a plain value"),
    (b"? !!set {a: null}\n: x\n", "tags (!name) are not allowed"),
    (b"a: !!float\n", "tags (!name) are not allowed"),
    (b"a: !!timestamp x\n", "tags (!name) are not allowed"),
    (b"a: !!str 0123\n", "tags (!name) are not allowed"),
    (b"a: !local x\n", "tags (!name) are not allowed"),
    (b"a: 2001-02-30\n", "a value cannot be read"),
    (b"a: 1\x00\n", "NUL"),
    (b"a: " + b"[" * 20000 + b"]" * 20000 + b"\n", ""),
])
def test_other_malformed_documents_are_one_line_policy_errors(text: bytes, expected: str
                                                              ) -> None:
    with pytest.raises(PolicyError) as info:
        parse_document(text, "f.yaml")
    assert expected in one_line_error(info, "f.yaml")


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.yaml: cannot read file"):
        read_document(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="cannot read file"):
        read_document(tmp_path)

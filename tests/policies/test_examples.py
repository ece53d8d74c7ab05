"""The shipped example site policies are valid, tighten the default, and pass `policy check`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from consortium.cli import main
from policies.effective import effective_policy
from policies.loader import example_site_policy_path, load_policy, load_site_policy
from policies.schema import DEFAULT_SITES
from tests.policies.policy_data import write

SITE_FILES = [example_site_policy_path(s) for s in DEFAULT_SITES]


def test_example_site_policies_are_valid_and_tighten() -> None:
    c = load_policy().policy
    assert all(f.is_file() for f in SITE_FILES)
    for file in SITE_FILES:
        eff = effective_policy(c, load_site_policy(file).policy)
        assert eff.site == file.stem
        assert eff.epsilon_ceiling <= c.epsilon_ceiling
        assert eff.delta <= c.delta
        assert len(eff.sha256) == 64 and eff.consortium_sha256 != eff.sha256


def check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          *files: Path) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["consortium", "policy", "check", *map(str, files)])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out + out.err


def test_policy_check_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    code, output = check(monkeypatch, capsys, *SITE_FILES)
    assert code == 0, output
    for site in DEFAULT_SITES:
        assert site in output
    bad = write(tmp_path, "site: hungary\ndp:\n  max_grad_norm: 4.0\n", "loose.yaml")
    code, output = check(monkeypatch, capsys, bad)
    assert code == 2
    assert "loose.yaml" in output and "dp.max_grad_norm" in output and "Traceback" not in output

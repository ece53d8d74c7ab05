"""The architecture holds: layers, import hygiene, the size of the consortium's top level, and
the house rules (mypy --strict, ruff) over the whole project."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.child import printed_json

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("consortium", "site_node", "dashboard", "policies")


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable} (pip install -e '.[test]')")
    return str(path)


def _imports(package: str) -> Iterator[tuple[Path, str]]:
    """Every module a package's source imports (absolute names; relative ones resolved)."""
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        here = list(parts[:-1])  # the package the module is in
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - node.level + 1]
                    yield path, ".".join([*base, *([node.module] if node.module else [])])
                else:
                    yield path, node.module or ""


def test_import_linter_contracts_are_kept() -> None:
    done = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    assert "Layers: consortium -> site_node -> policies KEPT" in done.stdout


@pytest.mark.parametrize(("package", "forbidden"), [
    ("site_node", {"consortium", "dashboard"}),
    ("policies", {"consortium", "site_node", "dashboard"}),
])
def test_lower_layers_never_import_higher_ones(package: str, forbidden: set[str]) -> None:
    found = [(str(path.relative_to(ROOT)), name) for path, name in _imports(package)
             if name.split(".")[0] in forbidden]
    assert found == []
    assert any(True for _ in _imports(package))  # the walk saw the package's sources


def test_the_import_walk_sees_relative_and_absolute_imports() -> None:
    names = {name for _, name in _imports("consortium")}
    assert "site_node.protocol.keys" in names and "consortium.store.run_store" in names


def test_the_consortium_top_level_stays_small() -> None:
    top = sorted(p.name for p in (ROOT / "consortium").iterdir()
                 if (p.suffix == ".py" and p.name != "__init__.py")
                 or (p.is_dir() and (p / "__init__.py").is_file()))
    assert len(top) <= 10, top


def test_the_dashboard_never_imports_torch_flower_or_opacus() -> None:
    code = (
        "import sys, json\n"
        "import dashboard.app, dashboard.data, dashboard.charts, dashboard.frames\n"
        "import dashboard.ui, dashboard.config\n"
        "import dashboard.views.overview, dashboard.views.privacy\n"
        "import dashboard.views.participation, dashboard.views.audit\n"
        "import dashboard.views.comparison\n"
        "import consortium.audit.report, consortium.audit.html\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch', 'flwr', 'opacus', 'ray'})\n"
        "ours = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'consortium', 'site_node'})\n"
        "print(json.dumps({'bad': bad, 'ours': ours}))\n"
    )
    result = printed_json(code)
    assert result["bad"] == []
    assert "consortium.store.run_store" in result["ours"]  # it did import what it reads
    assert not [m for m in result["ours"] if m.startswith(("site_node.privacy",
                                                           "site_node.training"))]


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    done = subprocess.run([_tool("mypy"), "--strict", *PACKAGES], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_ruff_is_clean() -> None:
    done = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]

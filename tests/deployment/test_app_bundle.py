"""The Flower App bundle ``consortium submit`` sends comes from the installed packages.

Its configuration ships as package data (``consortium/deployment/flower-app.toml``), so an
installation without the repository's pyproject.toml (``pip install .`` into site-packages) can
submit; the repository's ``[tool.flwr.app]`` (for ``flwr run .`` in a checkout) stays equal to
it. The whole deployed flow from an installed wheel is tests/integration/test_installed.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from consortium.deployment import submit
from site_node.protocol import run_config
from tests.child import ROOT

PACKAGES = ("consortium", "site_node", "policies")


def test_the_packaged_app_is_the_repositorys() -> None:
    packaged = tomllib.loads(submit.app_config_file().read_text(encoding="utf-8"))
    repo = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert packaged["tool"]["flwr"] == repo["tool"]["flwr"]
    for key in ("name", "version", "description"):
        assert packaged["project"][key] == repo["project"][key], key


def test_the_app_declares_exactly_the_run_config_keys_both_sides_read() -> None:
    assert submit.app_config_keys() == set(run_config.KEYS)


def test_the_app_is_staged_from_packages_that_have_no_pyproject_beside_them(
    tmp_path: Path,
) -> None:
    """As after ``pip install .``: the packages in a site-packages of their own, run elsewhere."""
    site_packages = tmp_path / "site-packages"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, site_packages / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import json, pathlib, consortium\n"
        "from consortium.deployment.submit import stage_app\n"
        "from flwr.cli.build import build_fab_from_disk\n"
        "from flwr.common.config import get_fab_config, validate_config\n"
        "app = stage_app(pathlib.Path('app'))\n"
        "fab = build_fab_from_disk(app)\n"
        "ok, errors, _ = validate_config(get_fab_config(fab), check_module=True,"
        " project_dir=app)\n"
        "print(json.dumps({'from': consortium.__file__, 'ok': ok, 'errors': errors,"
        " 'files': sorted(str(p.relative_to(app)) for p in app.rglob('*.py'))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**env, "PYTHONPATH": str(site_packages)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["from"].startswith(str(site_packages))
    assert result["ok"], result["errors"]
    assert "consortium/server_app.py" in result["files"]
    assert "site_node/client_app.py" in result["files"]
    staged = tomllib.loads((tmp_path / "app" / "pyproject.toml").read_text(encoding="utf-8"))
    assert set(staged["tool"]["flwr"]["app"]["config"]) == set(run_config.KEYS)

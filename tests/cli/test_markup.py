"""What a user wrote (file names, patterns, columns) is printed as written, never read as
Rich markup: ``[a-z]`` in a pattern or ``x[1]`` in a path survives on screen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from site_node.cli import app
from tests.site_node.data.images import class_folders, image_task


def test_a_data_report_shows_brackets_it_quotes(tmp_path: Path) -> None:
    image_task(tmp_path)
    task = tmp_path / "tiny-scans.yaml"
    task.write_text(task.read_text(encoding="utf-8") + "privacy_unit: {unit: patient, "
                    "patient_file_pattern: '^(?P<patient>[a-z]+)-'}\n", encoding="utf-8")
    data = class_folders(tmp_path / "site", 2)
    result = CliRunner().invoke(app, ["check-data", "--task", str(task), "--data", str(data)])
    assert result.exit_code == 2
    assert "(?P<patient>[a-z]+)" in result.output


def test_an_error_shows_brackets_of_the_path_it_names(tmp_path: Path) -> None:
    missing = tmp_path / "task[draft].yaml"
    for module in ("site_node", "consortium"):
        args = (["check-data", "--task", str(missing), "--data", str(tmp_path)]
                if module == "site_node" else ["task", "check", str(missing)])
        entry = f"from {module}.cli import main; main()"
        done = subprocess.run([sys.executable, "-c", entry, *args], capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode != 0
        assert "task[draft].yaml" in done.stderr + done.stdout, (module, done.stderr)

"""A fresh Python interpreter for what one test process cannot show (imports, environment)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def printed_json(code: str) -> Any:
    """Run ``code`` in a new interpreter in the repository root; the JSON of its last line."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])

"""Render the auditor's report as one self-contained HTML page (Jinja2, autoescaped).

The page holds no script and no external asset; every value is escaped by Jinja2's autoescape.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_ENV = Environment(
    loader=PackageLoader("consortium.audit", "templates"),
    autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
    trim_blocks=True, lstrip_blocks=True,
)


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


_ENV.filters["num"] = _num
_ENV.filters["tojson_sorted"] = lambda v: json.dumps(v, indent=2, sort_keys=True)


def render_html(report: dict[str, Any]) -> str:
    """The report as a complete HTML document."""
    return _ENV.get_template("report.html.j2").render(r=report)

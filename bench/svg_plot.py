"""A dependency-free SVG line chart for benchmark results (no plotting library is installed)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")


def line_chart(
    series: dict[str, Sequence[float]], *, title: str, x_label: str, y_label: str,
    width: int = 640, height: int = 360,
) -> str:
    """An SVG document with one polyline per series (x = 1, 2, ... n)."""
    left, right, top, bottom = 60, 130, 40, 50
    values = [v for vs in series.values() for v in vs]
    lo, hi = min(values), max(values)
    lo, hi = (lo - 0.01, hi + 0.01) if hi > lo else (lo - 0.05, hi + 0.05)
    n = max(len(vs) for vs in series.values())
    pw, ph = width - left - right, height - top - bottom

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (pw * i / (n - 1) if n > 1 else pw / 2)
        return x, top + ph * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="20" font-size="14">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        _, y = xy(0, v)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.3f}</text>')
    for i in range(n):
        x, _ = xy(i, lo)
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{i + 1}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{top + ph / 2}" transform="rotate(-90 14 {top + ph / 2})" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for j, (name, vs) in enumerate(series.items()):
        colour = COLOURS[j % len(COLOURS)]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(vs)))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{points}"/>')
        ly = top + 16 * j + 10
        parts.append(f'<line x1="{left + pw + 10}" y1="{ly}" x2="{left + pw + 30}" y2="{ly}" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + pw + 35}" y="{ly + 4}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)

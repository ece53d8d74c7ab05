"""Render the auditor's report as one self-contained HTML page (inline CSS, no external assets).

Every value is HTML-escaped; the page holds no script.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:70rem;
color:#1b1f24;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font-size:.8rem;word-break:break-all}
.ok{background:#dafbe1;border:1px solid #2da44e;padding:.6rem;border-radius:6px}
.bad{background:#ffebe9;border:1px solid #cf222e;padding:.6rem;border-radius:6px}
.over{color:#cf222e;font-weight:bold}
"""


def _e(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return escape(f"{value:.6g}")
    return escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _verification(v: dict[str, Any]) -> str:
    if v["ok"]:
        return (f'<div class="ok" id="verification"><b>Verified.</b> {_e(v.get("entries"))} '
                f"log entries: hash chain and every signature intact; {_e(v.get('checks'))} "
                f"receipt ε values reproduced by Google's dp_accounting within "
                f"{v['tolerance']:.0%}; no ceiling passed.</div>")
    return (f'<div class="bad" id="verification"><b>Verification FAILED</b> '
            f"({_e(v['error_kind'])}): {_e(v['error'])}</div>")


def _epsilon_table(report: dict[str, Any]) -> str:
    rows = []
    for r in report["receipts"]:
        if "malformed" in r:
            rows.append([_e(r["site"]), _e(r["round"]), f"malformed: {_e(r['malformed'])}"]
                        + [""] * 8)
            continue
        over = r["epsilon"] > r["epsilon_ceiling"]
        eps = f'<span class="over">{_e(r["epsilon"])}</span>' if over else _e(r["epsilon"])
        rows.append([_e(r["site"]), _e(r["round"]), eps, _e(r["independent_epsilon"]),
                     _e(r["epsilon_ceiling"]), _e(r["lifetime_epsilon"]),
                     _e(r["lifetime_epsilon_ceiling"]), _e(r["delta"]),
                     f"σ={_e(r['noise_multiplier'])}, q={_e(r['sample_rate'])}, "
                     f"steps={_e(r['steps'])}, C={_e(r['max_grad_norm'])}, {_e(r['accountant'])}",
                     _e(r["num_examples"]), f"<code>{_e(r['update_sha256'])}</code>"])
    return _table(["Site", "Round", "ε (run, claimed)", "ε (dp_accounting)", "ε ceiling",
                   "ε lifetime", "lifetime ceiling", "δ", "Mechanism", "Examples",
                   "Update SHA-256"], rows)


def _participants(report: dict[str, Any]) -> str:
    fps = report["fingerprints"]["sites"]
    return _table(["Site", "Rounds with a verified receipt", "Receipt key fingerprint"], [
        [_e(p["site"]), _e(", ".join(map(str, p["rounds"])) or "none"),
         f"<code>{_e(fps.get(p['site']))}</code>"] for p in report["participants"]])


def _rounds(report: dict[str, Any]) -> str:
    return _table(["Round", "Status", "Sites trained", "Policy SHA-256", "Failure"], [
        [_e(r["round"]), _e(r["status"]), _e(", ".join(r["trained"])),
         f"<code>{_e(r['policy_sha256'])}</code>", _e(r["failure_reason"])]
        for r in report["rounds"]])


def _threat_model(tm: dict[str, Any]) -> str:
    def items(xs: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in xs) + "</ul>"

    return (f"<h3>What the consortium server sees in clear</h3>{items(tm['in_clear'])}"
            f"<h3>What is masked</h3>{items(tm['masked'])}<h3>Notes</h3>{items(tm['notes'])}")


def _events(report: dict[str, Any]) -> str:
    if not report["events"]:
        return "<p>None.</p>"
    return _table(["Seq", "Kind", "Time", "Detail"], [
        [_e(e["seq"]), _e(e["kind"]), _e(e["created_at"]),
         f"<code>{escape(json.dumps(e['payload'], sort_keys=True))}</code>"]
        for e in report["events"]])


def render_html(report: dict[str, Any]) -> str:
    """The report as a complete HTML document."""
    run = report["run"]
    fps = report["fingerprints"]
    policy = escape(json.dumps(run["policy"], indent=2, sort_keys=True))
    body = [
        f"<h1>Privacy audit report — run <code>{_e(run['run_id'])}</code></h1>",
        f"<p>Generated {_e(report['generated_at'])} from <code>{_e(report['store'])}</code>. "
        f"Run {_e(run['status'])} ({_e(run['stop_reason'])}), engine {_e(run['engine'])}, "
        f"{_e(run['rounds_planned'])} rounds planned, started {_e(run['started_at'])}.</p>",
        "<h2>Verification</h2>", _verification(report["verification"]),
        "<h2>Who took part</h2>", _participants(report),
        "<h2>Policy</h2>",
        f"<p>SHA-256 of the consortium policy (canonical JSON): <code>{_e(run['policy_sha256'])}"
        f"</code>. δ = {_e(run['delta'])}, per-run ε ceiling {_e(run['epsilon_ceiling'])}.</p>",
        f"<details><summary>Policy (canonical JSON)</summary><pre>{policy}</pre></details>",
        "<h2>ε per site per round</h2>",
        "<p>ε is each site's cumulative ε in this run after the round, at its δ; the "
        "independent value is recomputed from the receipts' mechanisms.</p>",
        _epsilon_table(report), "<h2>Rounds</h2>", _rounds(report),
        "<h2>Security and failure events</h2>", _events(report),
        "<h2>Threat model</h2>", _threat_model(report["threat_model"]),
        "<h2>Fingerprints</h2>",
        f"<p>{_e(fps['definition'])}. Compare them with fingerprints obtained out of band.</p>",
        _table(["Key", "Fingerprint"],
               [["consortium", f"<code>{_e(fp)}</code>"] for fp in fps["consortium"]]
               + [[_e(s), f"<code>{_e(fp)}</code>"] for s, fp in sorted(fps["sites"].items())]),
    ]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Privacy audit — {_e(run['run_id'])}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")

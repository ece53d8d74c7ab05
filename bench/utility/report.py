"""Markdown tables of the latest results (what README.md shows), read from the result files.

Usage: python bench/utility/report.py [--results bench/utility/results]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def pm(d: dict[str, Any]) -> str:
    """'mean ± sd' with 3 decimals."""
    return f"{d['mean']:.3f} ± {d['sd']:.3f}"


def utility_tables(r: dict[str, Any]) -> str:
    """Headline table and the other-splits table."""
    ref = r["references"]["product_split"]
    other = r["references"]["other_splits"]
    lines = [
        f"Product split (seed {r['primary_split']}), mean ± sd over seeds {r['seeds']} "
        "(Opacus; acc and AUC are means over the four hospitals):",
        "",
        "| ε (δ=1e-5) | federated DP acc | federated AUC | local-only DP acc | local-only AUC "
        "| current policy acc (untuned) | pooled non-private acc / AUC | floor acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e, v in r["curve"].items():
        lines.append(
            f"| {'∞' if e == 'inf' else e} | {pm(v['federated']['acc'])} | "
            f"{pm(v['federated']['auc'])} | {pm(v['local']['acc'])} | {pm(v['local']['auc'])} | "
            f"{pm(v['product_policy']['acc'])} | {ref['pooled']['acc']:.3f} / "
            f"{ref['pooled']['auc']:.3f} | {ref['floor']['acc']:.3f} |")
    lines += [
        "",
        f"Other random 75/25 splits (seeds {r['other_split_seeds']}), same selected "
        "configurations; mean ± sd over splits of the per-split mean over seeds "
        "[min, max over splits]:",
        "",
        "| ε | federated DP acc | federated AUC | local-only DP acc | current policy acc |",
        "|---|---|---|---|---|",
    ]
    for e, v in r["curve"].items():
        cells = []
        for m in ("federated", "local", "product_policy"):
            o = v[m]["other_splits"]
            cells.append(f"{pm(o['acc'])} [{min(o['acc_per_split']):.3f}, "
                         f"{max(o['acc_per_split']):.3f}]")
        lines.append(f"| {'∞' if e == 'inf' else e} | {cells[0]} | "
                     f"{pm(v['federated']['other_splits']['auc'])} | {cells[1]} | {cells[2]} |")
    lines += ["", f"Pooled non-private over the other splits: acc {pm(other['pooled_acc'])}, "
                  f"AUC {pm(other['pooled_auc'])}; majority floor {pm(other['floor_acc'])}."]
    return "\n".join(lines)


def selected_table(sel: dict[str, Any], r: dict[str, Any]) -> str:
    """The federated configuration selected per ε."""
    lines = ["| ε | model | features (gain, site one-hot) | q | rounds × local steps | C | lr "
             "| server | σ | ε spent (Opacus max) | val acc (stage 2) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e, v in sel["epsilons"].items():
        f = v["federated"]
        c = f["config"]
        server = c["server"] if c["server"] == "fedavg" else (
            f"{c['server']} (η={c['server_lr']}, τ={c['tau']})")
        spent = r["curve"][e]["federated"].get("epsilon_spent_max", math.inf)
        lines.append(
            f"| {'∞' if e == 'inf' else e} | {c['model']} | {c['features']} "
            f"({c['gain']:g}, {'yes' if c['site_onehot'] else 'no'}) | {c['q']:g} | "
            f"{c['rounds']} × {c['local_steps']} | {c['clip']} | {c['lr']:.3g} | {server} | "
            f"{f['sigma']:.3f} | {'∞' if math.isinf(spent) else f'{spent:.4f}'} | "
            f"{f['val_acc_stage2']:.4f} |")
    return "\n".join(lines)


def flamby_table(f: dict[str, Any]) -> str:
    """Our numbers beside the published ones."""
    pub = f["published"]
    rec, ours = f["flamby_recipes"], f["ours"]
    lo, hi = pub["local_only_range"]
    rows = [
        ("pooled", f"{pub['pooled']:.3f}", pm(rec["pooled"]["acc"]),
         pm(ours["pooled"]["acc"]) + " (deterministic)"),
        ("FedAvg", f"{pub['fedavg']:.3f}", pm(rec["fedavg"]["acc"]), pm(ours["fedavg"]["acc"])),
        ("best federated", f"{pub['best_federated (FedYogi)']:.3f} (FedYogi)",
         pm(rec["fedyogi"]["acc"]) + " (FedYogi)",
         pm(ours["best_federated"]["acc"]) + f" ({ours['best_federated']['selected']['server']})"),
        ("DP-FedAvg ε=1, δ=1e-3", f"{pub['dp_fedavg_eps1_delta1e-3']:.3f}", "—",
         pm(ours["dp_fedavg_eps1_delta1e-3"]["acc"])),
        ("best DP federated ε=1, δ=1e-3", "—", "—",
         pm(ours["best_dp_federated_eps1_delta1e-3"]["acc"])
         + f" ({ours['best_dp_federated_eps1_delta1e-3']['selected']['server']})"),
        ("DP-FedAvg ε=1, δ=1e-5", "—", "—", pm(ours["dp_fedavg_eps1_delta1e-5"]["acc"])),
        ("best DP federated ε=1, δ=1e-5", "—", "—",
         pm(ours["best_dp_federated_eps1_delta1e-5"]["acc"])
         + f" ({ours['best_dp_federated_eps1_delta1e-5']['selected']['server']})"),
        ("local-only, own test (mean of 4)", "—", pm(rec["local_own_test"]["acc"]),
         pm(ours["local_only"]["acc"])),
        ("local-only, all 4 tests (range over the 4 models)", f"{lo:.3f}–{hi:.3f}",
         "{:.3f}–{:.3f}".format(*rec["local_all_tests"]["range"]),
         "{:.3f}–{:.3f}".format(*ours["local_only"]["local_all_tests"]["range"])),
    ]
    lines = ["| method | published (FLamby) | FLamby's recipe, rerun here | ours (task-fixed "
             "features, site-local selection, Opacus) |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path,
                        default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    r = json.loads((args.results / "utility_curve.json").read_text())
    sel = json.loads((args.results / "selected.json").read_text())
    print("## Utility curve\n")
    print(utility_tables(r))
    print("\n## Selected federated configurations\n")
    print(selected_table(sel, r))
    fl = args.results / "flamby_protocol.json"
    if fl.exists():
        print("\n## FLamby protocol\n")
        print(flamby_table(json.loads(fl.read_text())))
    eq = args.results / "equivalence.json"
    if eq.exists():
        v = json.loads(eq.read_text())["verdict"]
        print(f"\n## NumPy vs Opacus\n\n{json.dumps(v)}")


if __name__ == "__main__":
    main()

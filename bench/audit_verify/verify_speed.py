"""How fast ``consortium audit verify`` checks a store: receipts verified per second.

Builds run stores through the consortium's real writers (run store, signed audit log, key
registry, ``RunAudit``), each run with 4 sites whose every round's receipt is a real signed
:class:`~site_node.protocol.receipt.Receipt` with the ε Opacus gives (the site's accountant),
then times :func:`consortium.audit.verify.verify_store` on each: the whole chain, the signed head,
every receipt, every row against the log, every ε recomputed with ``dp_accounting``. Each store
is verified in a fresh process (cold caches) and once more in the same process (warm). Prints
JSON and writes ``results/audit_verify.json`` and ``results/audit_verify.png``.

Usage: ``python bench/audit_verify/verify_speed.py [--sizes 7x9 28x9 70x9] [--accountant rdp]``
(``RUNSxROUNDS``; 4 sites a run, so 7x9 is 252 receipts, about the issue's 7 runs and 250).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SITES = ("cleveland", "hungary", "long_beach", "switzerland")
SIGMAS = (7.0, 8.0, 9.0, 10.0)  # one per site; with q = 0.25, 4 steps a round, 9 rounds stay < ε 1


def build(path: Path, runs: int, rounds: int, accountant: str) -> int:
    """Write a store of ``runs`` completed runs; returns how many receipts it holds."""
    from consortium.audit import registry
    from consortium.audit.log import AuditLog
    from consortium.audit.trail import RunAudit
    from consortium.home import open_home
    from consortium.run import rounds as rr
    from consortium.run.attribution import FitJudgement, Trained
    from consortium.store.records import RUN_COMPLETED, RUN_RUNNING, RunRecord
    from consortium.store.run_store import RunStore
    from policies.loader import load_policy
    from site_node.privacy import accountant as site_accountant
    from site_node.protocol.mechanism import Mechanism
    from site_node.protocol.receipt import Receipt
    from tests.consortium.audit_fixture import TASK, default_site_keys

    loaded, keys = load_policy(), default_site_keys(SITES)
    p = loaded.policy
    count = 0
    with RunStore(path) as store:
        log = AuditLog(store.db, key=open_home(path.parent).signing_key())
        enrolled = {s: registry.enrol(log, s, keys[s].public_key(), mode="deployment")
                    for s in SITES}
        for k in range(runs):
            run = RunRecord(run_id=f"run-{k:04d}", started_at=rr.utc_now(), status=RUN_RUNNING,
                            engine="simulation", policy_sha256=loaded.sha256,
                            policy_json=loaded.canonical_json, delta=p.delta,
                            epsilon_ceiling=p.epsilon_ceiling, rounds_planned=rounds, seed=k,
                            sites=SITES, secagg_json="{}", task_sha256=TASK.sha256,
                            task_json=TASK.canonical_json)
            audit = RunAudit(log, run)
            with store.db.transaction():
                store.start_run(run)
                audit.start()
            for rnd in range(1, rounds + 1):
                trained = []
                for i, site in enumerate(SITES):
                    m = Mechanism(noise_multiplier=SIGMAS[i], sample_rate=0.25, steps=4,
                                  max_grad_norm=1.0, accountant=accountant)
                    eps = site_accountant.epsilon([m] * rnd, delta=p.delta,
                                                  accountant=accountant)
                    receipt = Receipt(
                        run_id=run.run_id, round=rnd, site=site, policy_sha256=loaded.sha256,
                        site_policy_sha256="", task_sha256=TASK.sha256,
                        noise_multiplier=m.noise_multiplier, sample_rate=m.sample_rate,
                        steps=m.steps, max_grad_norm=1.0, accountant=accountant,
                        delta=p.delta, epsilon=eps, lifetime_epsilon=eps,
                        epsilon_ceiling=float(p.epsilon_ceiling),
                        lifetime_epsilon_ceiling=float(p.lifetime_epsilon_ceiling),
                        num_examples=100 + i, update_sha256=f"{rnd:064x}",
                        issued_at=rr.utc_now())
                    trained.append(Trained(site=site, signed=receipt.sign(keys[site]),
                                           key=enrolled[site], num_examples=100 + i))
                judgement = FitJudgement(trained=trained)
                evals = [rr.EvalFigure(site=t.site, loss=0.5, accuracy=0.8, num_examples=50)
                         for t in trained]
                record = rr.make_round(rnd, judgement=judgement, evals=evals,
                                       started_at=rr.utc_now(), duration_s=1.0,
                                       policy_sha256=loaded.sha256, failure=None)
                blob, digest = rr.checkpoint_bytes([])
                with store.db.transaction():
                    store.record_round(run.run_id, record, checkpoint=blob,
                                       checkpoint_sha256=digest)
                    audit.round(rnd, judgement, failures=0, status=record.status, reason=None,
                                record=record, checkpoint_sha256=digest)
                count += len(trained)
            with store.db.transaction():
                store.finish_run(run.run_id, status=RUN_COMPLETED, reason="done",
                                 finished_at=rr.utc_now())
                audit.finish(RUN_COMPLETED, "done")
    return count


def measure(path: Path) -> dict[str, Any]:
    """Verify ``path`` twice in this process: cold (first) and warm; wall and CPU seconds."""
    from consortium.audit.verify import verify_store

    out: dict[str, Any] = {}
    for label in ("cold", "warm"):
        wall, cpu = time.perf_counter(), time.process_time()
        result = verify_store(path)
        out[label] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
        out["receipts"] = len(result.checks)
    return out


def _child(path: Path, src: Path = ROOT) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, __file__, "--measure", str(path)], env=env,
                          capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"verification of {path} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Receipts verified per second against store size, cold and warm, with the goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [r["receipts"] for r in rows]
    for label in ("cold", "warm"):
        ax.plot(xs, [r[f"{label}_receipts_per_s"] for r in rows], marker="o",
                label=f"{label} ({'fresh process' if label == 'cold' else 'caches warm'})")
    ax.axhline(1000, color="gray", linestyle="--", label="goal: 1,000 receipts/s")
    ax.set_xscale("log")
    ax.set_xlabel("receipts in the store (4 sites a run)")
    ax.set_ylabel("receipts verified per second (wall)")
    ax.set_title("consortium audit verify: whole store, every check")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["7x9", "28x9", "70x9"])
    parser.add_argument("--accountant", default="rdp", choices=["rdp", "prv"])
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--baseline-src", type=Path, help="Also time the verifier of this "
                        "source tree (e.g. `git archive 18273e9 consortium site_node policies`"
                        " unpacked) on the same stores.")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    rows = []
    for size in args.sizes:
        runs, rounds = (int(x) for x in size.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp) / "home" / "runs.sqlite"
            t0 = time.perf_counter()
            receipts = build(store, runs, rounds, args.accountant)
            built = time.perf_counter() - t0
            m = _child(store)
            base = _child(store, args.baseline_src) if args.baseline_src else None
        row = {"runs": runs, "rounds": rounds, "receipts": receipts, "build_s": built,
               **{f"{k}_{v}": m[k][v] for k in ("cold", "warm") for v in ("wall_s", "cpu_s")}}
        for k in ("cold", "warm"):
            row[f"{k}_receipts_per_s"] = receipts / m[k]["wall_s"]
            if base is not None:
                row[f"baseline_{k}_wall_s"] = base[k]["wall_s"]
                row[f"baseline_{k}_cpu_s"] = base[k]["cpu_s"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    result = {"accountant": args.accountant, "results": rows,
              "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "audit_verify" + ("" if args.accountant == "rdp" else "_prv") + (
        "_vs_baseline" if args.baseline_src else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, args.out / f"{name}.png")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

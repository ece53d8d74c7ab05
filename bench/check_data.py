"""``site-node check-data`` on a large table: rows per second and peak memory.

Writes ROWS rows of heart-disease-like records (valid for the embedded heart-disease task,
generated on the fly with a fixed seed) as CSV and as Parquet into a temporary folder, then runs
the check that ``check-data`` runs (:func:`site_node.data.load_site_data`) on each in a fresh
process, and prints JSON: rows, wall and CPU seconds (CPU time is the steadier figure on a
shared machine), rows per second and the child's peak RSS (VmHWM) per format.

    python bench/check_data.py [--rows 200000] [--out bench/results/check_data.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

HEADER = ["id", "age", "sex", "dataset", "cp", "trestbps", "chol", "fbs", "restecg", "thalch",
          "exang", "oldpeak", "slope", "ca", "thal", "num"]
CHILD = """
import json, sys, time
from policies.example import load_example
from policies.task_loader import load_task
from site_node.data import load_site_data

def peak_mib():  # this process's own peak (ru_maxrss would count the parent's before exec)
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024

loaded = load_task(load_example("heart-disease").task)
before = peak_mib()
start, cpu = time.perf_counter(), time.process_time()
data = load_site_data(loaded, sys.argv[1])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"rows": data.num_train + data.num_test, "seconds": round(seconds, 2),
                  "cpu_seconds": round(cpu, 2),
                  "peak_rss_mib": round(peak_mib(), 1), "rss_before_mib": round(before, 1)}))
"""


def write_rows(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` valid records (some missing values), written in blocks of 50 000."""
    rng = np.random.default_rng(seed)
    cps = np.array(["typical angina", "atypical angina", "non-anginal", "asymptomatic"])
    ecg = np.array(["normal", "st-t abnormality", "lv hypertrophy", ""])
    slopes = np.array(["upsloping", "flat", "downsloping", ""])
    thals = np.array(["normal", "fixed defect", "reversable defect", ""])
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        for start in range(0, rows, 50_000):
            n = min(50_000, rows - start)
            cols = [np.arange(start, start + n).astype(str), rng.integers(28, 78, n).astype(str),
                    rng.choice(["Male", "Female"], n), np.full(n, "Bench"), rng.choice(cps, n),
                    rng.integers(90, 200, n).astype(str), rng.integers(100, 600, n).astype(str),
                    rng.choice(["TRUE", "FALSE", ""], n), rng.choice(ecg, n),
                    rng.integers(70, 200, n).astype(str), rng.choice(["TRUE", "FALSE"], n),
                    np.round(rng.uniform(-2, 6, n), 1).astype(str), rng.choice(slopes, n),
                    rng.choice(["0", "1", "2", "3", ""], n), rng.choice(thals, n),
                    rng.integers(0, 5, n).astype(str)]
            out.writerows(zip(*cols, strict=True))


def run_child(path: Path) -> dict[str, float]:
    """The check in a fresh interpreter (its own peak RSS)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True,
                          capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = round(time.perf_counter() - start, 2)
    result["rows_per_second"] = round(result["rows"] / result["seconds"])
    result["rows_per_cpu_second"] = round(result["rows"] / result["cpu_seconds"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, object] = {"rows": args.rows}
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "site.csv"
        write_rows(table, args.rows)
        results["csv_mib"] = round(table.stat().st_size / 2**20, 1)
        parquet = Path(tmp) / "site.parquet"
        options = pacsv.ConvertOptions(column_types={c: pa.string() for c in HEADER})
        pq.write_table(pacsv.read_csv(table, convert_options=options), parquet)
        results["csv"] = run_child(table)
        results["parquet"] = run_child(parquet)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""Build the multi-record example ``heart-visits`` from the embedded UCI Heart Disease files.

Each real patient of ``site_node/data/examples/heart-disease/`` becomes a patient with one or
more records ("visits"): the first is the original row; each later one repeats it with the
measurements that vary between visits (resting blood pressure, cholesterol, maximum heart rate,
ST depression) moved by a small random amount, kept within the task's declared ranges; a missing
value stays missing, and the diagnosis is the patient's. The number of records per patient is
1 + Poisson(1.2), and about 3% of patients (chosen at random) have 10 to 20 records, so a few
patients hold many records, as in real registries. Fixed seed: the files are reproducible.

    python bench/patient_unit/make_heart_visits.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "site_node/data/examples/heart-disease"
TARGET = ROOT / "site_node/data/examples/heart-visits"
SITES = ("cleveland", "hungary", "long_beach", "switzerland")
SEED = 20261205
#: column: (largest move, lowest, highest, decimals)
JITTER = {"trestbps": (6, 80, 220, 0), "chol": (15, 50, 700, 0), "thalch": (8, 60, 220, 0),
          "oldpeak": (0.3, -3, 7, 1)}


def _visits(rng: random.Random) -> int:
    if rng.random() < 0.03:
        return rng.randint(10, 20)
    k, p, limit = 1, 1.0, pow(2.718281828459045, -1.2)
    while True:  # Knuth's Poisson(1.2)
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _moved(row: dict[str, str], rng: random.Random) -> dict[str, str]:
    out = dict(row)
    for col, (step, lo, hi, dec) in JITTER.items():
        cell = row[col]
        if cell == "" or (float(cell) == 0 and col in ("trestbps", "chol")):
            continue  # missing (or 0 = missing) stays missing
        value = min(hi, max(lo, float(cell) + rng.uniform(-step, step)))
        text = f"{value:.{dec}f}" if dec else str(round(value))
        out[col] = "0.0" if float(text) == 0 and dec else text  # never "-0.0"
    return out


def main() -> None:
    rng = random.Random(SEED)
    TARGET.mkdir(parents=True, exist_ok=True)
    for site in SITES:
        with (SOURCE / f"{site}.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        fields = ["patient_id", *[c for c in rows[0] if c != "id"]]
        with (TARGET / f"{site}_pt.csv").open("w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            out.writeheader()
            for row in rows:
                patient = f"{site[:2]}-{row['id']}"
                for visit in range(_visits(rng)):
                    record = row if visit == 0 else _moved(row, rng)
                    out.writerow({"patient_id": patient,
                                  **{k: v for k, v in record.items() if k != "id"}})


if __name__ == "__main__":
    main()

"""Make the digits example's data files (run once; needs scikit-learn, which is NOT a dependency).

    pip install scikit-learn && python bench/make_digits_example.py

Reads scikit-learn's copy of the UCI "Optical Recognition of Handwritten Digits" test set (1797
8×8 images, 16 grey levels; Alpaydin & Kaynak 1998, CC BY 4.0) and writes three MedMNIST-format
files, one per site, to ``site_node/data/examples/digits/``:

- every image goes to one site: per class, the images are shuffled (seed 20240601) and dealt to
  the sites in turn, so each site holds about a third of every class;
- each site's test split is a quarter of its images of every class (all ten classes);
- each site's training split is the rest, without the classes that site lacks: ``clinic_a``
  has no 1, 3 or 7; ``clinic_b`` no 2, 5 or 8; ``clinic_c`` no 4, 6 or 9 (those images are
  dropped, not given to another site);
- pixels are rescaled from 0–16 to 8-bit (``round(v * 255 / 16)``), labels are ``uint8`` of
  shape ``(N, 1)`` as in MedMNIST.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parents[1] / "site_node" / "data" / "examples" / "digits"
SEED = 20240601
MISSING = {"clinic_a": (1, 3, 7), "clinic_b": (2, 5, 8), "clinic_c": (4, 6, 9)}
TEST_FRACTION = 0.25


def main() -> None:
    digits = load_digits()
    images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    rng = np.random.default_rng(SEED)
    sites = list(MISSING)
    held: dict[str, list[int]] = {s: [] for s in sites}
    for cls in range(10):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            held[sites[j % len(sites)]].append(int(i))
    OUT.mkdir(parents=True, exist_ok=True)
    for site in sites:
        idx = np.array(held[site])
        train, test = [], []
        for cls in range(10):
            of_cls = idx[labels[idx] == cls]
            n_test = round(len(of_cls) * TEST_FRACTION)
            test += of_cls[:n_test].tolist()
            if cls not in MISSING[site]:
                train += of_cls[n_test:].tolist()
        path = OUT / f"{site}.npz"
        np.savez_compressed(path, train_images=images[train], train_labels=labels[train, None],
                            test_images=images[test], test_labels=labels[test, None])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path.name}: train {len(train)}, test {len(test)}, sha256 {digest}")


if __name__ == "__main__":
    main()

"""The bench's figure: accuracy against ε per task, beside the pooled reference and the floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot(result: dict[str, Any], path: Path) -> None:
    """One panel per task: mean accuracy (each seed a dot, the mean a line) against ε."""
    tasks = result["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, t in zip(axes[0], tasks, strict=True):
        eps = sorted({r["epsilon_ceiling"] for r in t["runs"]})
        means = [np.mean([r["mean_accuracy"] for r in t["runs"] if r["epsilon_ceiling"] == e])
                 for e in eps]
        for r in t["runs"]:
            ax.scatter(r["epsilon_ceiling"], r["mean_accuracy"], color="tab:blue", s=12,
                       alpha=0.5)
        ax.plot(eps, means, "o-", color="tab:blue", label="federated DP, terms-only policy")
        ax.axhline(t["pooled_reference"]["mean_accuracy"], color="tab:green", ls="--",
                   label="pooled, non-private")
        ax.axhline(t["majority_mean"], color="tab:red", ls=":", label="majority class (floor)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(eps, [f"{e:g}" for e in eps])
        ax.set_xlabel(f"ε ceiling per site (δ = {result['delta']:g}); choice cost 0 ε")
        ax.set_ylabel("mean test accuracy over sites")
        ax.set_ylim(0, 1)
        ax.set_title(t["task"])
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

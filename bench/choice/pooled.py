"""The non-private reference: the task's model trained on the pooled training splits (no DP),
scored on each site's own test split (mean over the sites, as the federated figures are)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from policies.task_loader import LoadedTask
from site_node.data import SiteData
from site_node.model import build_model, get_weights
from site_node.training import evaluate


def reference(task: LoadedTask, data: dict[str, SiteData], *, seed: int) -> dict[str, Any]:
    """Adam on the pooled training rows; L2 (weight decay) 1e-3; full batch for tables."""
    model_task = task.task.for_members(tuple(data))
    torch.manual_seed(seed)
    model = build_model(model_task)
    x = torch.from_numpy(np.concatenate([d.x_train for d in data.values()]))
    y = torch.from_numpy(np.concatenate([d.y_train for d in data.values()]))
    image = x.dim() > 2
    opt = torch.optim.Adam(model.parameters(), lr=3e-3 if image else 0.05, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(60 if image else 300):
        order = torch.randperm(len(y), generator=gen) if image else torch.arange(len(y))
        for start in range(0, len(y), 32 if image else len(y)):
            batch = order[start:start + (32 if image else len(y))]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    weights = get_weights(model)
    accs = {s: evaluate(weights, d.x_test, d.y_test, model_task)[1] for s, d in data.items()}
    return {"accuracy": accs, "mean_accuracy": float(np.mean(list(accs.values())))}

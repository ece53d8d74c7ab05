"""Prototype: book-keeping DP-SGD with per-layer ghost/direct norms (one backward pass).

Opacus' modes pay for per-sample gradients on top of a full ordinary backward: "hooks",
"functorch" and "ew" materialise every parameter's per-sample gradient (batch × parameters
floats: 2.9 GB for an 11M-parameter ResNet at batch 64) *and* let autograd compute the batched
weight gradient that the DP optimizer then overwrites; "ghost" avoids the storage but runs
the backward twice. Book-keeping (Bu et al., 2023, "Differentially private optimization on
large model at small cost") does neither:

1. forward with the parameters frozen, capturing each layer's input ``A``; one backward for
   the *input* gradients only, capturing each layer's output gradient ``G`` (autograd never
   computes a weight gradient);
2. per-sample gradient norms per layer from ``A`` and ``G``. A convolution has three exact
   ways, autotuned per layer on the first training step (the fastest is kept): the
   ghost-norm identity ``‖G_n A_nᵀ‖² = ⟨A_nᵀA_n, G_nᵀG_n⟩`` on unfolded inputs (``T²`` floats
   per sample, T = output positions: cheap for late, low-resolution layers; mixed ghost
   clipping, Bu et al., 2022), or the per-sample gradient itself (``o·p`` floats) by a
   batched matmul on unfolded inputs or by one convolution grouped by sample (cheap for
   early, high-resolution layers). Linear: ``‖a‖²‖g‖²``; GroupNorm: Opacus' own per-sample
   gradient (2·channels floats);
3. clip factors ``c_n = min(1, C / (‖g_n‖ + 1e-6))`` (Opacus' flat clipping), then the clipped
   sum per layer: ``Σ c_n g_n`` from the kept per-sample gradients (direct layers) or one
   ordinary weight-gradient call on ``c``-scaled output gradients (ghost layers);
4. Gaussian noise N(0, (σC)²) from Opacus' own ``_generate_noise``, divided by the expected
   batch size (``loss_reduction="mean"``), then the wrapped optimizer's step.

Same mechanism as Opacus' ``DPOptimizer`` with flat clipping (so the same accounting); the test
checks the clipped, noise-free gradient against Opacus' hooks mode. Supports Conv2d
(groups=1, numeric padding), Linear on 2-D inputs and GroupNorm; anything else raises
``NotImplementedError`` (the selector then drops the mode). A prototype: no Poisson
empty-batch handling, no gradient accumulation, no secure_mode check beyond passing it on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from opacus.grad_sample.group_norm import compute_group_norm_grad_sample
from opacus.optimizers.optimizer import _generate_noise
from torch import nn
from torch.nn.grad import conv2d_weight

__all__ = ["BookKeepingDPSGD"]


class _Layer:
    """One trainable layer's captured tensors and its plan for the clipped sum."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.act: torch.Tensor | None = None
        self.grad_out: torch.Tensor | None = None
        self.kept: dict[torch.Tensor, torch.Tensor] = {}  # per-sample grads (direct layers)
        self.ghost = False
        self.impl: str | None = None  # conv: "ghost" | "unfold" | "grouped", once tuned


class BookKeepingDPSGD:
    """DP-SGD for ``model`` with one input-gradient backward per step (see module docstring).

    Parameters
    ----------
    model : nn.Module
        The model (hooks are attached to its Conv2d, Linear and GroupNorm layers).
    optimizer : torch.optim.Optimizer
        A plain optimizer over ``model``'s parameters; it receives the noised gradient.
    noise_multiplier, max_grad_norm : float
        σ and C.
    expected_batch_size : int
        Divisor of the noised sum (Opacus' ``loss_reduction="mean"``).
    noise_generator : torch.Generator, optional
        Passed to Opacus' noise function.
    conv_impl : {"ghost", "unfold", "grouped"}, optional
        Force one way of computing convolution norms (tests); default: autotuned per layer.
    autotune : bool
        False: no timing, the flop rule picks ghost or unfold per layer.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        noise_generator: torch.Generator | None = None,
        conv_impl: str | None = None,
        autotune: bool = True,
    ) -> None:
        if conv_impl is not None and conv_impl not in self.CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {self.CONV_IMPLS} or None")
        self.conv_impl = conv_impl  # None: autotune on the first training step (or flop rule)
        self.autotune = autotune
        self._tuning = False
        self.autotune_costs: dict[int, dict[str, float]] = {}
        self.model = model
        self.optimizer = optimizer
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.expected_batch_size = expected_batch_size
        self.generator = noise_generator
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.layers: list[_Layer] = []
        covered: set[int] = set()
        for module in model.modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            if isinstance(module, nn.Conv2d):
                if module.groups != 1 or isinstance(module.padding, str):
                    raise NotImplementedError("bk: Conv2d needs groups=1 and numeric padding")
                if module.padding_mode != "zeros":
                    raise NotImplementedError("bk: Conv2d needs padding_mode='zeros'")
            elif not isinstance(module, (nn.Linear, nn.GroupNorm)):
                raise NotImplementedError(f"bk: unsupported layer {type(module).__name__}")
            layer = _Layer(module)
            self.layers.append(layer)
            module.register_forward_hook(self._make_hook(layer))
            covered.update(id(p) for p in own)
        if covered != {id(p) for p in self.params}:
            raise NotImplementedError("bk: some trainable parameters are not in a known layer")
        self._capturing = False
        self.last_norms: torch.Tensor | None = None

    # ---------------------------------------------------------------- capture
    def _make_hook(self, layer: _Layer) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            if not self._capturing:
                return
            if layer.act is not None:
                raise NotImplementedError("bk: a layer ran twice in one forward (tied weights)")
            layer.act = inputs[0].detach()

            def store(grad: torch.Tensor) -> None:
                layer.grad_out = grad.detach()

            output.register_hook(store)

        return hook

    def _capture(
        self, x: torch.Tensor, y: torch.Tensor, criterion: Callable[..., torch.Tensor]
    ) -> torch.Tensor:
        """Forward + input-gradient backward; fills every layer's ``act`` and ``grad_out``."""
        for layer in self.layers:
            layer.act = layer.grad_out = None
            layer.kept = {}
        for p in self.params:
            p.requires_grad_(False)
        self._capturing = True
        try:
            x_in = x.detach().requires_grad_(True)
            loss = criterion(self.model(x_in), y)
            torch.autograd.grad(loss, x_in)
        finally:
            self._capturing = False
            for p in self.params:
                p.requires_grad_(True)
        return loss.detach()

    # ---------------------------------------------------------------- norms
    def _norms2(self, layer: _Layer, n: int) -> torch.Tensor:
        """Squared per-sample gradient norm of this layer's parameters (÷ n², see below)."""
        m, a = layer.module, layer.act
        if a is None or layer.grad_out is None:
            raise RuntimeError(f"bk: {type(m).__name__} got no activation/gradient")
        # ``g`` is the gradient of the *mean* loss: per-sample gradients are n × (what ``g``
        # gives). The factor is applied to the scalars (norms, clip coefficients), not to g.
        g = layer.grad_out
        if isinstance(m, nn.Conv2d):
            return self._conv_norms2(layer, a, g, n)
        if isinstance(m, nn.Linear):
            if a.dim() != 2:
                raise NotImplementedError("bk: Linear on >2-D inputs")
            out = a.pow(2).sum(1) * g.pow(2).sum(1)
            layer.ghost = True
            if m.bias is not None and m.bias.requires_grad:
                out = out + g.pow(2).sum(1)
                layer.kept[m.bias] = g
            return out
        # GroupNorm: Opacus' per-sample gradient (2 × channels floats per sample)
        per_sample = compute_group_norm_grad_sample(m, [a], g)  # type: ignore[arg-type]
        layer.kept.update(per_sample)
        return sum(
            (gs.reshape(n, -1).pow(2).sum(1) for gs in per_sample.values()),
            torch.zeros(n, dtype=g.dtype, device=g.device),
        )

    # Three ways to get a convolution's per-sample gradient norms (all exact):
    #   "ghost":   ‖G_n A_nᵀ‖² = ⟨A_nᵀA_n, G_nᵀG_n⟩ on unfolded inputs (n·T² floats); the
    #              clipped sum is then one ordinary weight-gradient call on c-scaled G;
    #   "unfold":  per-sample gradients G_n A_nᵀ by a batched matmul on unfolded inputs;
    #   "grouped": per-sample gradients as the weight gradient of a convolution grouped by
    #              sample (batch folded into channels), one oneDNN/cuDNN call.
    # The direct ones keep n·o·p floats until the clip factors are known. Which is fastest
    # depends on the layer's shape and the hardware, so the first training step times all
    # three per layer and keeps the fastest ("autotune"); per_sample_norms() alone never
    # decides, it uses the flop rule.
    CONV_IMPLS = ("ghost", "unfold", "grouped")

    def _conv_norms2(self, layer: _Layer, a: torch.Tensor, g: torch.Tensor, n: int) -> torch.Tensor:
        m = cast(nn.Conv2d, layer.module)
        impl = layer.impl or self.conv_impl
        if impl is None and self._tuning:
            impl = layer.impl = self._autotune(m, a, g, n)
        if impl is None:  # flop rule: ghost when T·(p+o) < o·p
            t_dim = g.shape[2] * g.shape[3]
            p_dim = a.shape[1] * m.kernel_size[0] * m.kernel_size[1]
            impl = (
                "ghost" if t_dim * (p_dim + m.out_channels) < m.out_channels * p_dim else "unfold"
            )
        layer.ghost = impl == "ghost"
        if layer.ghost:
            out = self._conv_ghost_norm2(m, a, g, n)
        else:
            gs = self._conv_per_sample(m, a, g, n, impl)
            out = gs.reshape(n, -1).pow(2).sum(1)
            layer.kept[m.weight] = gs
        if m.bias is not None and m.bias.requires_grad:
            gb = g.sum(dim=(2, 3))
            out = out + gb.pow(2).sum(1)
            layer.kept[m.bias] = gb
        return out

    @staticmethod
    def _unfold(m: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
        padding = cast(tuple[int, ...], m.padding)  # numeric: checked in __init__
        return F.unfold(a, m.kernel_size, m.dilation, padding, m.stride)  # n, p, T

    def _conv_ghost_norm2(
        self, m: nn.Conv2d, a: torch.Tensor, g: torch.Tensor, n: int
    ) -> torch.Tensor:
        cols = self._unfold(m, a)
        gf = g.reshape(n, g.shape[1], -1)
        aat = torch.bmm(cols.transpose(1, 2), cols)
        ggt = torch.bmm(gf.transpose(1, 2), gf)
        return (aat * ggt).sum(dim=(1, 2)).clamp_min(0)

    def _conv_per_sample(
        self, m: nn.Conv2d, a: torch.Tensor, g: torch.Tensor, n: int, impl: str
    ) -> torch.Tensor:
        if impl == "grouped":
            cin, h, w = a.shape[1:]
            gs = conv2d_weight(
                a.reshape(1, n * cin, h, w),
                (n * m.out_channels, cin, *m.kernel_size),
                g.reshape(1, n * m.out_channels, *g.shape[2:]),
                m.stride,
                m.padding,
                m.dilation,
                n,
            )
            return gs.reshape(n, *m.weight.shape)
        gf = g.reshape(n, g.shape[1], -1)
        return torch.bmm(gf, self._unfold(m, a).transpose(1, 2)).reshape(n, *m.weight.shape)

    def _autotune(self, m: nn.Conv2d, a: torch.Tensor, g: torch.Tensor, n: int) -> str:
        """Time each allowed way (norms + its share of the clipped sum); return the fastest."""

        def clock() -> float:
            if a.device.type == "cuda":
                torch.cuda.synchronize(a.device)
                return time.perf_counter()
            return time.process_time()  # CPU: not inflated by other jobs on the machine

        # Memory guard: a direct path keeps n·o·p floats until the clip factors are known;
        # allow it only where that is no more than the ghost path's n·T·(p+o) working set
        # (at least one of the two conditions always holds)
        t_dim = g.shape[2] * g.shape[3]
        p_dim = a.shape[1] * m.kernel_size[0] * m.kernel_size[1]
        o_dim = m.out_channels
        direct_ok = o_dim * p_dim <= t_dim * (p_dim + o_dim)
        # and skip the ghost path where it needs over 4× the direct path's flops (T² blows up
        # at high resolution: 64×1024² floats for a 7×7 stem on 64 px)
        ghost_ok = t_dim * (p_dim + o_dim) <= 4 * o_dim * p_dim
        candidates = [i for i in self.CONV_IMPLS if (ghost_ok if i == "ghost" else direct_ok)]
        costs: dict[str, float] = {}
        coef = torch.ones(n, dtype=g.dtype, device=g.device)
        for impl in candidates:
            try:
                start = clock()
                if impl == "ghost":
                    self._conv_ghost_norm2(m, a, g, n)
                    conv2d_weight(a, m.weight.shape, g, m.stride, m.padding, m.dilation, 1)
                else:
                    gs = self._conv_per_sample(m, a, g, n, impl)
                    gs.reshape(n, -1).pow(2).sum(1)
                    torch.einsum("n,n...->...", coef, gs)
                    del gs
                costs[impl] = clock() - start
            except RuntimeError:  # e.g. out of memory: not a candidate
                continue
        self.autotune_costs[id(m)] = costs
        return min(costs, key=costs.__getitem__)

    def per_sample_norms(
        self, x: torch.Tensor, y: torch.Tensor, criterion: Callable[..., torch.Tensor]
    ) -> torch.Tensor:
        """Per-sample gradient norms of one batch (no step, nothing kept)."""
        self._capture(x, y, criterion)
        n = x.shape[0]
        total = sum(
            (self._norms2(layer, n) for layer in self.layers), torch.zeros(n, device=x.device)
        )
        self._release()
        return total.sqrt() * n

    def _release(self) -> None:
        for layer in self.layers:
            layer.act = layer.grad_out = None
            layer.kept = {}

    # ---------------------------------------------------------------- step
    def clipped_sum(
        self, x: torch.Tensor, y: torch.Tensor, criterion: Callable[..., torch.Tensor]
    ) -> tuple[torch.Tensor, dict[torch.Tensor, torch.Tensor]]:
        """(loss, {param: Σ_n c_n g_n}) for one batch."""
        loss = self._capture(x, y, criterion)
        n = x.shape[0]
        norms2 = torch.zeros(n, device=x.device)
        self._tuning = self.conv_impl is None and self.autotune
        try:
            for layer in self.layers:
                norms2 += self._norms2(layer, n)
        finally:
            self._tuning = False
        norms = norms2.sqrt() * n  # per-sample gradient norms
        self.last_norms = norms
        # clip factor × n: turns the mean-loss gradients g into clipped per-sample gradients
        coef = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * n
        sums: dict[torch.Tensor, torch.Tensor] = {}
        for layer in self.layers:
            m, a, g = layer.module, layer.act, layer.grad_out
            assert a is not None and g is not None
            for p, gs in layer.kept.items():
                sums[p] = torch.einsum("n,n...->...", coef, gs).reshape(p.shape)
            if isinstance(m, nn.Conv2d) and layer.ghost:
                scaled = g * coef.view(-1, *([1] * (g.dim() - 1)))
                sums[m.weight] = conv2d_weight(
                    a, m.weight.shape, scaled, m.stride, m.padding, m.dilation, m.groups
                )
            elif isinstance(m, nn.Linear):
                sums[m.weight] = (g * coef[:, None]).t() @ a
        self._release()
        return loss, sums

    def step(
        self, x: torch.Tensor, y: torch.Tensor, criterion: Callable[..., torch.Tensor]
    ) -> torch.Tensor:
        """One DP-SGD step on batch ``(x, y)``; returns the (non-private) mean loss."""
        loss, sums = self.clipped_sum(x, y, criterion)
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            summed = sums[p]
            noise = _generate_noise(std=std, reference=summed, generator=self.generator)
            p.grad = ((summed + noise) / self.expected_batch_size).view_as(p)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

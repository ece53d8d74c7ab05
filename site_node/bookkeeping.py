"""Book-keeping per-sample clipping: DP-SGD with one backward pass and no per-sample weights.

Opacus' per-sample modes pay on top of an ordinary backward: ``hooks``, ``functorch`` and
``ew`` keep every parameter's per-sample gradient (batch × parameters floats), and ``ghost``
runs the backward twice. Book-keeping (Bu et al. 2023, *Differentially private optimization on
large model at small cost*) does neither:

1. the forward runs with the parameters frozen and keeps each layer's input ``A``; one backward
   computes only the gradient of the input and keeps each layer's output gradient ``G``;
2. each sample's gradient norm, layer by layer, from ``A`` and ``G``: a Linear layer's is
   ``‖a‖·‖g‖`` (plus the bias' ``‖g‖``); a convolution's by the ghost-norm identity
   ``‖G_n A_nᵀ‖² = ⟨A_nᵀA_n, G_nᵀG_n⟩`` on unfolded inputs where that is cheaper, else from its
   per-sample gradient (a batched matrix product; mixed ghost clipping, Bu et al. 2022); a
   GroupNorm's from Opacus' own per-sample gradient (2 × channels floats);
3. Opacus' flat clip factors ``c_n = min(1, C / (‖g_n‖ + 1e-6))``, and the clipped sum
   ``Σ c_n g_n`` of each parameter, put in ``p.grad``;
4. Opacus' ``DPOptimizerFastGradientClipping`` (the optimizer of its ghost mode) then adds the
   Gaussian noise ``N(0, (σC)²)``, divides by the expected batch size, steps, and calls the
   accountant's hook: the mechanism and its accounting are Opacus', only the clipped sum is
   computed here.

Supported layers: ``Conv2d`` (``groups=1``, numeric zero padding), ``Linear`` on 2-D inputs and
``GroupNorm``; a model with any other trainable layer, or a layer run twice in one forward,
raises :class:`NotImplementedError` and the mode selector (:mod:`site_node.grad_mode`) drops the
mode. The selector also checks this mode's per-sample norms against an exact reference before
it may be chosen, as it does every mode's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from opacus.grad_sample.group_norm import compute_group_norm_grad_sample
from opacus.optimizers import DPOptimizerFastGradientClipping
from torch import nn
from torch.nn.grad import conv2d_weight

#: The mode's name among Opacus' (``grad_sample_mode``) in the selector.
MODE = "bk"
#: Opacus' flat-clipping guard against a zero norm.
_EPS = 1e-6


class _Layer:
    """One trainable layer's captured input and output gradient, and what it keeps."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.act: torch.Tensor | None = None
        self.grad_out: torch.Tensor | None = None
        self.kept: dict[torch.Tensor, torch.Tensor] = {}  # per-sample gradients
        self.ghost = False


def _check_layer(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or isinstance(module.padding, str) or \
                module.padding_mode != "zeros":
            raise NotImplementedError("bk: Conv2d needs groups=1 and numeric zero padding")
    elif not isinstance(module, nn.Linear | nn.GroupNorm):
        raise NotImplementedError(f"bk: unsupported trainable layer {type(module).__name__}")


class BookKeeping(nn.Module):
    """``model`` whose training forward keeps what :meth:`clip_backward` needs.

    In training with gradients enabled and a non-empty batch, the forward freezes the
    parameters and captures each layer's input and output gradient; :meth:`clip_backward` then
    puts each parameter's clipped sum in ``p.grad`` and the norms in
    :attr:`per_sample_gradient_norms`. Otherwise (evaluation, an empty Poisson batch) it is the
    plain model.
    """

    def __init__(self, model: nn.Module, *, max_grad_norm: float) -> None:
        super().__init__()
        self._module = model
        self.max_grad_norm = max_grad_norm
        self.per_sample_gradient_norms: torch.Tensor | None = None
        self._layers: list[_Layer] = []
        self._input: torch.Tensor | None = None
        self._capturing = False
        covered: set[int] = set()
        for module in model.modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if own:
                _check_layer(module)
                layer = _Layer(module)
                self._layers.append(layer)
                module.register_forward_hook(self._hook(layer))
                covered.update(id(p) for p in own)
        if covered != {id(p) for p in model.parameters() if p.requires_grad}:
            raise NotImplementedError("bk: a trainable parameter is outside a known layer")
        self._params = [p for p in model.parameters() if p.requires_grad]

    def _hook(self, layer: _Layer) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            if not self._capturing:
                return
            if layer.act is not None:
                raise NotImplementedError("bk: a layer ran twice in one forward")
            layer.act = inputs[0].detach()

            def keep(grad: torch.Tensor) -> None:
                layer.grad_out = grad.detach()

            output.register_hook(keep)
        return hook

    def forward(self, x: torch.Tensor) -> Any:
        """The model's output; captured for :meth:`clip_backward` when training."""
        if not (self.training and torch.is_grad_enabled() and len(x)):
            self._input = None
            return self._module(x)
        self._release()
        for p in self._params:
            p.requires_grad_(False)
        self._capturing = True
        try:
            self._input = x.detach().requires_grad_(True)
            return self._module(self._input)
        finally:
            self._capturing = False

    def clip_backward(self, loss: torch.Tensor) -> None:
        """From the batch's mean loss (of the last forward): each parameter's clipped sum
        ``Σ c_n g_n`` into ``p.grad``."""
        x = self._input
        if x is None:
            raise RuntimeError("bk: clip_backward needs a training forward first")
        try:
            torch.autograd.grad(loss, x)
        finally:
            for p in self._params:
                p.requires_grad_(True)
        n = x.shape[0]
        norms2 = torch.zeros(n, device=x.device)
        for layer in self._layers:
            norms2 = norms2 + _norms2(layer, n)
        norms = norms2.sqrt() * n  # g is the mean loss's: a sample's own gradient is n·g
        self.per_sample_gradient_norms = norms.detach()
        coef = (self.max_grad_norm / (norms + _EPS)).clamp(max=1.0) * n
        for layer in self._layers:
            for param, summed in _clipped_sums(layer, coef).items():
                param.grad = summed.reshape(param.shape).to(param.dtype)
        self._release()

    def _release(self) -> None:
        for layer in self._layers:
            layer.act = layer.grad_out = None
            layer.kept = {}
        self._input = None


def _norms2(layer: _Layer, n: int) -> torch.Tensor:
    """Squared per-sample norms of the layer's gradient of the mean loss (÷ n² of the
    samples' own)."""
    m, a, g = layer.module, layer.act, layer.grad_out
    if a is None or g is None:
        raise RuntimeError(f"bk: {type(m).__name__} got no input or output gradient")
    if isinstance(m, nn.Conv2d):
        return _conv_norms2(layer, m, a, g, n)
    if isinstance(m, nn.Linear):
        if a.dim() != 2:
            raise NotImplementedError("bk: Linear on inputs of more than 2 dimensions")
        layer.ghost = True
        out = a.pow(2).sum(1) * g.pow(2).sum(1)
        if m.bias is not None and m.bias.requires_grad:
            layer.kept[m.bias] = g
            out = out + g.pow(2).sum(1)
        return out
    per_sample = compute_group_norm_grad_sample(cast(nn.GroupNorm, m), [a], g)
    layer.kept.update(per_sample.items())
    return sum((gs.reshape(n, -1).pow(2).sum(1) for gs in per_sample.values()),
               torch.zeros(n, dtype=g.dtype, device=g.device))


def _unfold(m: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    padding = cast(tuple[int, ...], m.padding)  # numeric: checked when wrapped
    return F.unfold(a, m.kernel_size, m.dilation, padding, m.stride)  # n, p, T


def _conv_norms2(layer: _Layer, m: nn.Conv2d, a: torch.Tensor, g: torch.Tensor, n: int
                 ) -> torch.Tensor:
    """Ghost norms where ``T·(p+o) < o·p`` (few output positions), else per-sample gradients
    by one batched matrix product (kept for the clipped sum)."""
    t_dim, p_dim = g.shape[2] * g.shape[3], a.shape[1] * m.kernel_size[0] * m.kernel_size[1]
    layer.ghost = t_dim * (p_dim + m.out_channels) < m.out_channels * p_dim
    cols, gf = _unfold(m, a), g.reshape(n, g.shape[1], -1)
    if layer.ghost:
        out = (torch.bmm(cols.transpose(1, 2), cols) * torch.bmm(gf.transpose(1, 2), gf)
               ).sum(dim=(1, 2)).clamp_min(0)
    else:
        gs = torch.bmm(gf, cols.transpose(1, 2)).reshape(n, *m.weight.shape)
        layer.kept[m.weight] = gs
        out = gs.reshape(n, -1).pow(2).sum(1)
    if m.bias is not None and m.bias.requires_grad:
        gb = g.sum(dim=(2, 3))
        layer.kept[m.bias] = gb
        out = out + gb.pow(2).sum(1)
    return out


def _clipped_sums(layer: _Layer, coef: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """``Σ_n coef_n · g_n`` of each of the layer's parameters."""
    m, a, g = layer.module, layer.act, layer.grad_out
    assert a is not None and g is not None
    sums = {p: torch.einsum("n,n...->...", coef, gs) for p, gs in layer.kept.items()}
    if isinstance(m, nn.Conv2d) and layer.ghost:
        scaled = g * coef.view(-1, *([1] * (g.dim() - 1)))
        sums[m.weight] = conv2d_weight(  # type: ignore[no-untyped-call]
            a, m.weight.shape, scaled, m.stride, m.padding, m.dilation, m.groups)
    elif isinstance(m, nn.Linear):
        sums[m.weight] = (g * coef[:, None]).t() @ a
    return sums


class _ClippedLoss:
    """A batch's loss whose ``backward`` is :meth:`BookKeeping.clip_backward`."""

    def __init__(self, model: BookKeeping, loss: torch.Tensor) -> None:
        self.model, self.loss = model, loss

    def backward(self) -> None:
        self.model.clip_backward(self.loss)

    def item(self) -> float:
        return float(self.loss.detach())


class ClippedCrossEntropy:
    """Cross-entropy (mean over the batch) for a :class:`BookKeeping` model."""

    def __init__(self, model: BookKeeping) -> None:
        self.model = model

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> _ClippedLoss:
        return _ClippedLoss(self.model, F.cross_entropy(out, y))


def make_private(model: nn.Module, optimizer: torch.optim.Optimizer, *, noise_multiplier: float,
                 max_grad_norm: float, expected_batch_size: int,
                 generator: torch.Generator | None = None
                 ) -> tuple[BookKeeping, DPOptimizerFastGradientClipping, ClippedCrossEntropy]:
    """The book-keeping model, Opacus' optimizer for clipped sums, and the loss.

    Raises
    ------
    NotImplementedError
        If the model has a layer this mode does not support.
    """
    wrapped = BookKeeping(model, max_grad_norm=max_grad_norm)
    dp_optimizer = DPOptimizerFastGradientClipping(
        optimizer, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        expected_batch_size=expected_batch_size, loss_reduction="mean", generator=generator)
    return wrapped, dp_optimizer, ClippedCrossEntropy(wrapped)

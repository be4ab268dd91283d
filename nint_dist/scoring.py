"""Residuals and NTK scores over a block of coordinates, in passes of at most ``pass_size``
coordinates, so that memory is set by the pass size and not by the number of coordinates. Pure
tensor functions: the all-reduce that turns a shard's ``J_wᵀ r_w`` into the global ``v`` happens
in the caller.

NTK score of coordinate i (``docs/method.md``): s_i = ‖(J Jᵀ r)_i‖² summed over channels, computed as
v = Jᵀ r (a VJP, accumulated pass by pass) and w = J v (a JVP per pass); K = J Jᵀ is never
formed.

Legend: n coordinates in the block, m in a pass, D coordinate dims, C channels.
``coords_of(lo, hi)`` returns coordinates [m, D] and ``targets_of(lo, hi)`` targets [m, C] of
the block's entries lo..hi-1.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp

from nint_dist.models import is_dense

RangeFn = Callable[[int, int], torch.Tensor]
Params = dict[str, torch.Tensor]


def pass_bounds(n: int, pass_size: int) -> Iterator[tuple[int, int]]:
    """[lo, hi) of each pass over n coordinates, ``pass_size`` at a time (the last one shorter)."""
    for lo in range(0, n, pass_size):
        yield lo, min(lo + pass_size, n)


def detached_params(model: nn.Module) -> Params:
    return {name: p.detach() for name, p in model.named_parameters()}


def _as_function(model: nn.Module, coords: torch.Tensor) -> Callable[[Params], torch.Tensor]:
    buffers = dict(model.named_buffers())
    return lambda params: functional_call(model, {**params, **buffers}, (coords,))


def _per_pass(n: int, pass_size: int, compute: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """Results of ``compute(lo, hi)`` over passes, written into one tensor allocated up front.

    Collecting small per-pass results in a list between large short-lived pass buffers
    fragments the CPU heap: its peak then grows with the number of passes (measured: +0.85 GB
    over 8M coordinates), which defeats passing in pieces."""
    out = None
    for lo, hi in pass_bounds(n, pass_size):
        value = compute(lo, hi)
        if out is None:
            out = torch.empty((n, *value.shape[1:]), dtype=value.dtype, device=value.device)
        out[lo:hi] = value
    return torch.empty(0) if out is None else out


PRECISIONS = ("full", "tf32", "half", "bf16")
"""How a ranking pass may compute (training keeps its own): 'full' (the model's dtype), 'tf32'
(TensorFloat-32 matrix products, CUDA), 'half' (float16 autocast, CUDA), 'bf16' (bfloat16
autocast, devices with autocast). None of the last three changes anything where it does not apply."""


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # absent in some builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def ranking_precision(
    setting: str, device: torch.device, model: nn.Module, bf16_in_hardware: bool | None = None
) -> str:
    """The precision of ``model``'s ranking passes: ``setting`` itself, or for 'auto' 'bf16' on a
    CPU with bfloat16 in hardware when the model is mostly dense matrix products (its class
    is ``models.is_dense``: SIREN and Fourier features, whose pool pass runs about 3× faster
    there and keeps its top sets), and 'full' elsewhere (a hash grid's pass is gathers and small
    products: no faster in bfloat16, and its NTK top set changes; on GPUs reduced-precision
    ranking saved no time: BENCHMARKS.md)."""
    if setting != "auto":
        return setting
    if bf16_in_hardware is None:
        bf16_in_hardware = native_bf16()
    dense = is_dense(model)
    return "bf16" if device.type == "cpu" and bf16_in_hardware and dense else "full"


@contextmanager
def reduced_precision(precision: str, device: torch.device) -> Iterator[None]:
    """The block's forward passes in ``precision`` (``PRECISIONS``), the previous settings after."""
    cuda = device.type == "cuda"
    previous = torch.backends.cuda.matmul.allow_tf32
    if cuda and precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with ExitStack() as stack:
            if cuda and precision == "half":
                stack.enter_context(torch.autocast("cuda", dtype=torch.float16))
            if precision == "bf16" and torch.amp.is_autocast_available(device.type):
                stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


@torch.no_grad()
def predict(model: nn.Module, coords_of: RangeFn, n: int, pass_size: int) -> torch.Tensor:
    """f(x) for the block, [n, C], ``pass_size`` coordinates per forward pass: the one way a
    model is evaluated over more coordinates than fit in one pass (evaluation, export, preview,
    render)."""
    return _per_pass(n, pass_size, lambda lo, hi: model(coords_of(lo, hi)))


@torch.no_grad()
def residual_l1(
    model: nn.Module,
    coords_of: RangeFn,
    targets_of: RangeFn,
    n: int,
    pass_size: int,
    precision: str = "full",
) -> torch.Tensor:
    """Σ_c |f(x_i) − y_i| for the block, [n] (the error criterion of INT and NINT), the forward
    pass in ``precision`` (``PRECISIONS``)."""

    def compute(lo: int, hi: int) -> torch.Tensor:
        coords = coords_of(lo, hi)
        with reduced_precision(precision, coords.device):
            prediction = model(coords)
        return (prediction.to(coords.dtype) - targets_of(lo, hi)).abs().sum(dim=-1)

    return _per_pass(n, pass_size, compute)


@torch.no_grad()
def squared_error_sum(
    model: nn.Module, coords_of: RangeFn, targets_of: RangeFn, n: int, pass_size: int
) -> torch.Tensor:
    """Σ_i Σ_c (f(x_i) − y_i)² over the block, a float64 scalar on the model's device (summed
    there: no host round trip per pass)."""
    total = None
    for lo, hi in pass_bounds(n, pass_size):
        err = model(coords_of(lo, hi)) - targets_of(lo, hi)
        part = err.double().pow(2).sum()
        total = part if total is None else total + part
    return torch.zeros((), dtype=torch.float64) if total is None else total


@torch.no_grad()
def error_and_moment_sums(
    model: nn.Module, coords_of: RangeFn, targets_of: RangeFn, n: int, pass_size: int
) -> torch.Tensor:
    """[Σ(f−y)², Σf, Σy, Σf·y, Σf², Σy²] over the block and its channels, float64: sums over
    workers give the global MSE and SI-SNR (``metrics.si_snr_from_sums``) in one pass."""
    total = torch.zeros(6, dtype=torch.float64)
    for lo, hi in pass_bounds(n, pass_size):
        f, y = model(coords_of(lo, hi)).double(), targets_of(lo, hi).double()
        sums = [(f - y).pow(2).sum(), f.sum(), y.sum(), (f * y).sum(), f.pow(2).sum(), y.pow(2).sum()]
        total += torch.stack(sums).cpu()
    return total


def residual_vjp(
    model: nn.Module, coords_of: RangeFn, targets_of: RangeFn, n: int, pass_size: int, precision: str = "full"
) -> Params:
    """v_block = J_blockᵀ r_block with r = f(x) − y (detached), accumulated over passes, the
    forward passes in ``precision``.

    Returns a parameter-shaped dict. Summing it over all blocks of the signal gives the global
    v = Jᵀ r exactly.
    """
    params = detached_params(model)
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for lo, hi in pass_bounds(n, pass_size):
        coords = coords_of(lo, hi)
        with reduced_precision(precision, coords.device):
            out, pullback = vjp(_as_function(model, coords), params)
        (grads,) = pullback((out - targets_of(lo, hi)).detach().to(out.dtype))
        for name, g in grads.items():
            total[name] += g
    return total


def ntk_scores(
    model: nn.Module, v: Params, coords_of: RangeFn, n: int, pass_size: int, precision: str = "full"
) -> torch.Tensor:
    """s_i = Σ_c (J v)_ic² for the block, [n], with v the global Jᵀ r; J v in ``precision``."""
    params = detached_params(model)

    @torch.no_grad()
    def compute(lo: int, hi: int) -> torch.Tensor:
        coords = coords_of(lo, hi)
        with reduced_precision(precision, coords.device):
            _, tangent = jvp(_as_function(model, coords), (params,), (v,))
        return tangent.to(coords.dtype).pow(2).sum(dim=-1)

    return _per_pass(n, pass_size, compute)


@torch.no_grad()
def output_sq_norm(
    model: nn.Module, coords_of: RangeFn, n: int, pass_size: int, precision: str = "full"
) -> torch.Tensor:
    """Σ_c f(x_i)² for the block, [n]: what the reference code ranks as its NTK score (it keeps
    the primal output of ``torch.func.jvp``, f(x), where the paper's rule uses the tangent J v)."""

    def compute(lo: int, hi: int) -> torch.Tensor:
        coords = coords_of(lo, hi)
        with reduced_precision(precision, coords.device):
            out = model(coords)
        return out.to(coords.dtype).pow(2).sum(dim=-1)

    return _per_pass(n, pass_size, compute)


def point_stats(model: nn.Module, coords: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-point error statistics and the gradient of the squared error with respect to the
    input coordinate (soft mining's Langevin drift). Parameters are not touched.

    Args: coords [m, D], targets [m, C]. Returns [m, 2 + D]: mean_c |r|, mean_c r², ∂(mean_c r²)/∂x.
    """
    x = coords.detach().requires_grad_(True)
    with torch.enable_grad():
        residual = model(x) - targets
        squared = residual.pow(2).mean(dim=-1)
        (grad,) = torch.autograd.grad(squared.sum(), x) if x.numel() else (torch.zeros_like(x),)
    return torch.cat([residual.detach().abs().mean(dim=-1, keepdim=True), squared.detach()[:, None], grad], 1)

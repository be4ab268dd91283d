"""Triton kernels for the multiresolution hash encoding of ``nint_dist.models.hashgrid``.

They compute exactly what the PyTorch grid computes (same dense/hashed row of each corner, same
multilinear weights, same clamp at the domain's edge), but in one pass per level instead of a
dozen [N, 2^D, ...] intermediate tensors: the forward pass, the backward pass into the tables
(atomic adds) and into the coordinates, and the forward-mode derivative. ``encode`` wraps them in
an ``autograd.Function`` with ``backward`` and ``jvp`` rules, so ``loss.backward()``,
``torch.func.vjp`` and ``torch.func.jvp`` (NINT's J·v) all run through the kernels; under
``torch.compile`` (which cannot trace a jvp rule) the encoding is one differentiable operator
with the same backward.

Triton is optional (``nint_dist.triton_support``): on a CPU the kernels run only under Triton's
interpreter, which is how the tests check them without a GPU.

Legend: N points, D coordinate dims (1–3), L levels, R rows of all levels' entries, F features.
``level_info`` [L, 4] int64 holds each level's resolution, whether it is indexed densely, its
first row and its row count (a power of two where it is hashed).
"""

import torch

from nint_dist.models.hashgrid import HASH_PRIMES
from nint_dist.triton_support import available, runs_on

BLOCK = 128


if available():
    import triton
    import triton.language as tl

    _PRIME_1 = tl.constexpr(HASH_PRIMES[1])
    _PRIME_2 = tl.constexpr(HASH_PRIMES[2])

    @triton.jit
    def _axis(coords_ptr, n, mask, d: tl.constexpr, D: tl.constexpr, res):
        """Cell (integer), fraction within it and d(fraction)/d(coordinate) along dim d."""
        x = tl.load(coords_ptr + n * D + d, mask=mask, other=0.0)
        unit = (x + 1) * 0.5
        inside = (unit >= 0) & (unit <= 1)  # where clamp passes its gradient on
        unit = tl.minimum(tl.maximum(unit, 0.0), 1.0)
        position = unit * res
        base = tl.minimum(tl.floor(position), res - 1)
        frac = position - base
        slope = tl.where(inside, res * 0.5, 0.0).to(frac.dtype)
        return base.to(tl.int64), frac, slope

    @triton.jit
    def _row(c: tl.constexpr, b0, b1, b2, D: tl.constexpr, side, dense, size_mask):
        """Row of corner c (bit d of c: +1 along dim d) of the cells b0, b1, b2 within its
        level's entries."""
        c0 = b0 + (c & 1)
        c1 = b1 + ((c >> 1) & 1)
        c2 = b2 + ((c >> 2) & 1)
        if D == 1:
            flat = c0
            hashed = c0.to(tl.uint32)
        elif D == 2:
            flat = c1 * side + c0
            hashed = c0.to(tl.uint32) ^ (c1.to(tl.uint32) * _PRIME_1)
        else:
            flat = (c2 * side + c1) * side + c0
            hashed = c0.to(tl.uint32) ^ (c1.to(tl.uint32) * _PRIME_1) ^ (c2.to(tl.uint32) * _PRIME_2)
        # Only the low bits of the hash survive the power-of-two modulus, so 32-bit wrap-around
        # products give the PyTorch grid's int64 rows.
        hashed = hashed.to(tl.int64) & size_mask
        return tl.where(dense != 0, flat, hashed)

    @triton.jit
    def _factor(c: tl.constexpr, d: tl.constexpr, frac):
        """Corner c's weight factor along dim d: frac on its far side, 1 − frac on its near side."""
        if ((c >> d) & 1) == 1:
            out = frac
        else:
            out = 1 - frac
        return out

    @triton.jit
    def _slope(c: tl.constexpr, d: tl.constexpr, frac):
        """d(_factor)/d(frac): +1 or −1, shaped like frac."""
        if ((c >> d) & 1) == 1:
            out = frac * 0 + 1
        else:
            out = frac * 0 - 1
        return out

    @triton.jit
    def _weight(c: tl.constexpr, f0, f1, f2, D: tl.constexpr):
        w = _factor(c, 0, f0)
        if D > 1:
            w = w * _factor(c, 1, f1)
        if D > 2:
            w = w * _factor(c, 2, f2)
        return w

    @triton.jit
    def _weight_slopes(c: tl.constexpr, f0, f1, f2, D: tl.constexpr):
        """d(weight of corner c)/d(fraction) along dims 0, 1, 2."""
        g0 = _slope(c, 0, f0)
        g1 = 0 * f0
        g2 = 0 * f0
        if D > 1:
            g1 = _factor(c, 0, f0) * _slope(c, 1, f1)
            g0 = g0 * _factor(c, 1, f1)
        if D > 2:
            g2 = _factor(c, 0, f0) * _factor(c, 1, f1) * _slope(c, 2, f2)
            g0 = g0 * _factor(c, 2, f2)
            g1 = g1 * _factor(c, 2, f2)
        return g0, g1, g2

    @triton.jit
    def _cell(coords_ptr, level_ptr, n, mask, level, D: tl.constexpr):
        """Resolution-dependent geometry of the points n at one level, and the level's rows:
        the first, and the mask of a hashed row (the row count less one)."""
        res_int = tl.load(level_ptr + level * 4)
        dense = tl.load(level_ptr + level * 4 + 1)
        start = tl.load(level_ptr + level * 4 + 2)
        size_mask = tl.load(level_ptr + level * 4 + 3) - 1
        res = res_int.to(coords_ptr.dtype.element_ty)
        b0, f0, s0 = _axis(coords_ptr, n, mask, 0, D, res)
        b1, f1, s1 = b0, f0, s0
        b2, f2, s2 = b0, f0, s0
        if D > 1:
            b1, f1, s1 = _axis(coords_ptr, n, mask, 1, D, res)
        if D > 2:
            b2, f2, s2 = _axis(coords_ptr, n, mask, 2, D, res)
        side = res_int.to(tl.int64) + 1
        return b0, b1, b2, f0, f1, f2, s0, s1, s2, side, dense, start, size_mask

    @triton.jit
    def _add(a, b):
        # tl.sum would do, but it is a jit function of triton itself: compiled, not interpreted,
        # when triton was imported before TRITON_INTERPRET was set (tests reload this module)
        return a + b

    @triton.jit
    def _features_tile(n, mask, level, F: tl.constexpr, FP: tl.constexpr, L: tl.constexpr):
        """Offsets of out[n, level·F + f] and the mask of the [BLOCK, FP] tile of features
        (FP: F rounded up to a power of two)."""
        f = tl.arange(0, FP)
        offsets = n[:, None] * (L * F) + level * F + f[None, :]
        return f, offsets, mask[:, None] & (f[None, :] < F)

    @triton.jit
    def _forward_kernel(
        coords_ptr, tables_ptr, level_ptr, out_ptr, tangent_ptr, out_tangent_ptr,
        N,
        D: tl.constexpr, F: tl.constexpr, FP: tl.constexpr, L: tl.constexpr, HAS_TANGENT: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        """out[n, level·F + f] = Σ_c w_c · tables[start + row_c, f]; with HAS_TANGENT also the
        derivative of that along the coordinate tangent (dx[n, D])."""
        n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        level = tl.program_id(1)
        mask = n < N
        b0, b1, b2, f0, f1, f2, s0, s1, s2, side, dense, base, size_mask = _cell(
            coords_ptr, level_ptr, n, mask, level, D
        )
        f, out_offsets, tile_mask = _features_tile(n, mask, level, F, FP, L)
        if HAS_TANGENT:
            t0 = tl.load(tangent_ptr + n * D, mask=mask, other=0.0) * s0
            t1 = t0
            t2 = t0
            if D > 1:
                t1 = tl.load(tangent_ptr + n * D + 1, mask=mask, other=0.0) * s1
            if D > 2:
                t2 = tl.load(tangent_ptr + n * D + 2, mask=mask, other=0.0) * s2
        acc = tl.full([BLOCK, FP], 0, f0.dtype)
        acc_tangent = tl.full([BLOCK, FP], 0, f0.dtype)
        for c in tl.static_range(1 << D):
            row = _row(c, b0, b1, b2, D, side, dense, size_mask)
            entries = tables_ptr + ((base + row) * F)[:, None] + f[None, :]
            value = tl.load(entries, mask=tile_mask, other=0.0).to(f0.dtype)
            acc += _weight(c, f0, f1, f2, D)[:, None] * value
            if HAS_TANGENT:
                g0, g1, g2 = _weight_slopes(c, f0, f1, f2, D)
                dw = g0 * t0
                if D > 1:
                    dw += g1 * t1
                if D > 2:
                    dw += g2 * t2
                acc_tangent += dw[:, None] * value
        tl.store(out_ptr + out_offsets, acc, mask=tile_mask)
        if HAS_TANGENT:
            tl.store(out_tangent_ptr + out_offsets, acc_tangent, mask=tile_mask)

    @triton.jit
    def _table_grad_kernel(
        coords_ptr, grad_ptr, level_ptr, grad_tables_ptr,
        N,
        D: tl.constexpr, F: tl.constexpr, FP: tl.constexpr, L: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        """grad_tables[start + row_c, f] += w_c · grad_out[n, level·F + f] (atomic scatter)."""
        n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        level = tl.program_id(1)
        mask = n < N
        b0, b1, b2, f0, f1, f2, s0, s1, s2, side, dense, base, size_mask = _cell(
            coords_ptr, level_ptr, n, mask, level, D
        )
        f, out_offsets, tile_mask = _features_tile(n, mask, level, F, FP, L)
        g = tl.load(grad_ptr + out_offsets, mask=tile_mask, other=0.0).to(f0.dtype)
        for c in tl.static_range(1 << D):
            row = _row(c, b0, b1, b2, D, side, dense, size_mask)
            contribution = (_weight(c, f0, f1, f2, D)[:, None] * g).to(grad_tables_ptr.dtype.element_ty)
            entries = grad_tables_ptr + ((base + row) * F)[:, None] + f[None, :]
            tl.atomic_add(entries, contribution, mask=tile_mask)

    @triton.jit
    def _coords_grad_kernel(
        coords_ptr, tables_ptr, grad_ptr, level_ptr, grad_coords_ptr,
        N,
        D: tl.constexpr, F: tl.constexpr, FP: tl.constexpr, L: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        """Per-level share of d(Σ grad_out · out)/d(coordinates): [L, N, D], summed by the caller."""
        n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        level = tl.program_id(1)
        mask = n < N
        b0, b1, b2, f0, f1, f2, s0, s1, s2, side, dense, base, size_mask = _cell(
            coords_ptr, level_ptr, n, mask, level, D
        )
        f, out_offsets, tile_mask = _features_tile(n, mask, level, F, FP, L)
        g = tl.load(grad_ptr + out_offsets, mask=tile_mask, other=0.0).to(f0.dtype)
        a0 = tl.full([BLOCK], 0, f0.dtype)
        a1 = tl.full([BLOCK], 0, f0.dtype)
        a2 = tl.full([BLOCK], 0, f0.dtype)
        for c in tl.static_range(1 << D):
            row = _row(c, b0, b1, b2, D, side, dense, size_mask)
            entries = tables_ptr + ((base + row) * F)[:, None] + f[None, :]
            value = tl.load(entries, mask=tile_mask, other=0.0).to(f0.dtype)
            gv = tl.reduce(g * value, 1, _add)  # Σ_f grad_out · value at this corner
            g0, g1, g2 = _weight_slopes(c, f0, f1, f2, D)
            a0 += g0 * gv
            a1 += g1 * gv
            a2 += g2 * gv
        out = grad_coords_ptr + level.to(tl.int64) * N * D + n * D
        tl.store(out, a0 * s0, mask=mask)
        if D > 1:
            tl.store(out + 1, a1 * s1, mask=mask)
        if D > 2:
            tl.store(out + 2, a2 * s2, mask=mask)


def _launch_args(coords: torch.Tensor, tables: torch.Tensor, level_info: torch.Tensor) -> tuple:
    n, d = coords.shape
    levels, features = level_info.shape[0], tables.shape[1]
    padded = triton.next_power_of_2(features)
    return (triton.cdiv(n, BLOCK), levels), n, d, features, padded, levels


def _launch_forward(coords, tables, level_info, coord_tangent=None):
    """Encoded features [N, L·F] in the coordinates' dtype or, given ``coord_tangent``, their
    derivative along it."""
    coords, tables = coords.contiguous(), tables.contiguous()
    grid, n, d, features, padded, levels = _launch_args(coords, tables, level_info)
    out = torch.empty(n, levels * features, dtype=coords.dtype, device=coords.device)
    along = coord_tangent is not None
    tangent = coord_tangent.to(coords.dtype).contiguous() if along else coords
    if n:
        _forward_kernel[grid](
            coords, tables, level_info, torch.empty_like(out) if along else out, tangent, out,
            n, D=d, F=features, FP=padded, L=levels, HAS_TANGENT=along, BLOCK=BLOCK,
        )  # fmt: skip
    return out


def _launch_table_grad(coords, grad, level_info, tables):
    coords = coords.contiguous()
    grid, n, d, features, padded, levels = _launch_args(coords, tables, level_info)
    # Atomic adds in half precision lose small contributions: accumulate in float32 at least.
    accumulate = torch.promote_types(tables.dtype, torch.float32)
    out = torch.zeros(tables.shape, dtype=accumulate, device=tables.device)
    if n:
        _table_grad_kernel[grid](
            coords, grad.contiguous(), level_info, out, n,
            D=d, F=features, FP=padded, L=levels, BLOCK=BLOCK,
        )  # fmt: skip
    return out.to(tables.dtype)


def _launch_coords_grad(coords, tables, grad, level_info):
    coords, tables = coords.contiguous(), tables.contiguous()
    grid, n, d, features, padded, levels = _launch_args(coords, tables, level_info)
    per_level = torch.empty(levels, n, d, dtype=coords.dtype, device=coords.device)
    if n:
        _coords_grad_kernel[grid](
            coords, tables, grad.contiguous(), level_info, per_level, n,
            D=d, F=features, FP=padded, L=levels, BLOCK=BLOCK,
        )  # fmt: skip
    return per_level.sum(0)


def _define_ops() -> None:
    """The launches as torch operators (``torch.ops.nint_dist.hash_*``): the backward and jvp
    rules run on functorch's wrapped tensors, which only operators can unwrap for a kernel; a
    fake (shape-only) version of each lets ``torch.compile`` trace through them. Defined once
    per process (a reload of this module keeps them); their bodies look the launchers up when
    called."""
    if hasattr(torch.ops.nint_dist, "hash_encode"):
        return
    Tensor = torch.Tensor

    @torch.library.custom_op("nint_dist::hash_encode", mutates_args=())
    def hash_encode(coords: Tensor, tables: Tensor, level_info: Tensor) -> Tensor:
        return _launch_forward(coords, tables, level_info)

    @torch.library.custom_op("nint_dist::hash_encode_along", mutates_args=())
    def hash_encode_along(coords: Tensor, tables: Tensor, level_info: Tensor, tangent: Tensor) -> Tensor:
        return _launch_forward(coords, tables, level_info, tangent)

    @torch.library.custom_op("nint_dist::hash_table_grad", mutates_args=())
    def hash_table_grad(coords: Tensor, grad: Tensor, level_info: Tensor, tables: Tensor) -> Tensor:
        return _launch_table_grad(coords, grad, level_info, tables)

    @torch.library.custom_op("nint_dist::hash_coords_grad", mutates_args=())
    def hash_coords_grad(coords: Tensor, tables: Tensor, grad: Tensor, level_info: Tensor) -> Tensor:
        return _launch_coords_grad(coords, tables, grad, level_info)

    @torch.library.custom_op("nint_dist::hash_grid", mutates_args=())
    def hash_grid(coords: Tensor, tables: Tensor, level_info: Tensor, half_reads: bool) -> Tensor:
        """The encoding as one differentiable operator, for ``torch.compile`` (which cannot
        trace an autograd.Function with a jvp rule)."""
        return _launch_forward(coords, _read_copy(tables, _read_dtype(half_reads)), level_info)

    def features_like(coords, tables, level_info, *_):
        return coords.new_empty(coords.shape[0], level_info.shape[0] * tables.shape[1])

    def setup_context(ctx, inputs, output):
        coords, tables, level_info, half_reads = inputs
        ctx.save_for_backward(coords, tables, level_info)
        ctx.read_dtype = _read_dtype(half_reads)

    def backward(ctx, grad):
        return (*_backward(ctx, grad), None)

    hash_grid.register_fake(features_like)
    hash_grid.register_autograd(backward, setup_context=setup_context)
    hash_encode.register_fake(features_like)
    hash_encode_along.register_fake(features_like)
    hash_table_grad.register_fake(lambda coords, grad, level_info, tables: torch.empty_like(tables))
    hash_coords_grad.register_fake(lambda coords, *_: torch.empty_like(coords))


def _read_dtype(half_reads: bool) -> torch.dtype | None:
    return torch.float16 if half_reads else None


def _read_copy(tables: torch.Tensor, read_dtype: torch.dtype | None) -> torch.Tensor:
    """The tables at the precision they are read at. A fresh copy per call (a pass over the
    table, small beside the gathers): a cached one would go stale inside a captured CUDA graph."""
    return tables if read_dtype is None or read_dtype == tables.dtype else tables.to(read_dtype)


def _backward(ctx, grad: torch.Tensor) -> tuple:
    """Gradients of the coordinates and tables (None where not needed), shared by both paths."""
    coords, tables, level_info = ctx.saved_tensors
    grad_coords = grad_tables = None
    if ctx.needs_input_grad[0]:
        read = _read_copy(tables, ctx.read_dtype)
        grad_coords = torch.ops.nint_dist.hash_coords_grad(coords, read, grad, level_info)
    if ctx.needs_input_grad[1]:
        grad_tables = torch.ops.nint_dist.hash_table_grad(coords, grad, level_info, tables)
    return grad_coords, grad_tables, None


if available():
    _define_ops()


class _Encode(torch.autograd.Function):
    """features = encode(coords [N, D], tables [R, F], level_info [L, 4]); entries are read at
    ``read_dtype`` (None: the tables' own), gradients and tangents stay at full precision."""

    @staticmethod
    def forward(coords, tables, level_info, read_dtype):
        return torch.ops.nint_dist.hash_encode(coords, _read_copy(tables, read_dtype), level_info)

    @staticmethod
    def setup_context(ctx, inputs, output):
        coords, tables, level_info, read_dtype = inputs
        ctx.save_for_backward(coords, tables, level_info)
        ctx.save_for_forward(coords, tables, level_info)
        ctx.read_dtype = read_dtype

    @staticmethod
    def backward(ctx, grad):
        return (*_backward(ctx, grad), None)

    @staticmethod
    def jvp(ctx, coords_tangent, tables_tangent, _level_info, _read_dtype):
        coords, tables, level_info = ctx.saved_tensors
        out = None
        if tables_tangent is not None:  # the encoding is linear in the tables
            out = torch.ops.nint_dist.hash_encode(coords, tables_tangent, level_info)
        if coords_tangent is not None:
            read = _read_copy(tables, ctx.read_dtype)
            along = torch.ops.nint_dist.hash_encode_along(coords, read, level_info, coords_tangent)
            out = along if out is None else out + along
        if out is None:
            out = torch.zeros(coords.shape[0], level_info.shape[0] * tables.shape[1], dtype=coords.dtype,
                              device=coords.device)  # fmt: skip
        return out


def encode(
    coords: torch.Tensor,
    tables: torch.Tensor,
    level_info: torch.Tensor,
    read_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Hash-grid features [N, L·F] of coordinates [N, D] in [-1, 1] (see ``_Encode``)."""
    if not available():
        raise RuntimeError("the triton hash-grid backend needs the triton package")
    if not runs_on(coords):
        raise RuntimeError(
            "the triton hash-grid backend runs on CUDA tensors (on a CPU only under TRITON_INTERPRET=1); "
            "use model.hashgrid.backend=torch or auto"
        )
    coords, tables = coords.contiguous(), tables.contiguous()
    if torch.compiler.is_compiling():  # no jvp rule then (torch.func.jvp is not compiled anyway)
        return torch.ops.nint_dist.hash_grid(coords, tables, level_info, read_dtype == torch.float16)
    return _Encode.apply(coords, tables, level_info, read_dtype)

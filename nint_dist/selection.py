"""Selection arithmetic: canonical top-k, exact merge, seeded random picks, balanced split, loss
scale. Pure functions of tensors; the collectives that feed them live in ``comm``/``shard``.

Canonical order of a top-k list: score descending, global index ascending on ties. Because
every worker uses the same rule, the union of local top-k lists contains the global top-k and
merging it with the same rule gives the selection one process would make.

Shapes: ``[n]`` one entry per candidate coordinate, ``[k]`` one per selected coordinate.
"""

import torch

_SEED_MIX = 0x9E3779B97F4A7C15


def topk_canonical(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best (score, index) pairs in canonical order.

    Ties at the k-th score are broken by the smaller global index, so the result does not
    depend on how candidates were partitioned or ordered.
    Args: scores [n] floating, indices [n] int64 (distinct). Returns (scores [k'], indices [k'])
    with k' = min(k, n).
    """
    k = min(int(k), scores.numel())
    if k <= 0:
        return scores[:0], indices[:0]
    kth = torch.topk(scores, k, sorted=False).values.min()
    keep = scores > kth
    num_ties_needed = k - int(keep.sum())
    if num_ties_needed > 0:
        tie_pos = (scores == kth).nonzero().squeeze(1)
        tie_pos = tie_pos[torch.argsort(indices[tie_pos])[:num_ties_needed]]
        keep[tie_pos] = True
    s, i = scores[keep], indices[keep]
    by_index = torch.argsort(i)
    s, i = s[by_index], i[by_index]
    by_score = torch.sort(s, descending=True, stable=True).indices
    return s[by_score], i[by_score]


def isin_sorted(values: torch.Tensor, sorted_set: torch.Tensor) -> torch.Tensor:
    """Membership of ``values`` in an ascending int64 tensor, without an O(N) mask."""
    if sorted_set.numel() == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    pos = torch.searchsorted(sorted_set, values).clamp(max=sorted_set.numel() - 1)
    return sorted_set[pos] == values


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator that depends only on (seed, step) and the device type: identical on every
    worker of a run (all workers of a run share one device type)."""
    mixed = (int(seed) * _SEED_MIX + int(step) * 0x632BE59BD9B4E019 + 1) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(mixed)


def random_picks(
    num_points: int, count: int, exclude: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``count`` distinct global indices drawn uniformly from [0, N) minus ``exclude``.

    Draws candidates in batches and keeps first occurrences, so the outcome is a function of
    the generator alone (never of the worker count). Returns int64 [count] on the generator's
    device, in draw order.
    """
    device = generator.device
    exclude = torch.sort(exclude.to(device, torch.int64)).values
    available = num_points - exclude.numel()
    if count > available:
        raise ValueError(f"cannot draw {count} of {available} remaining coordinates")
    if count <= 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    if count * 2 > available:  # dense draw: a permutation is cheaper than rejection
        perm = torch.randperm(num_points, generator=generator, device=device)
        return perm[~isin_sorted(perm, exclude)][:count]
    picked = torch.empty(0, dtype=torch.int64, device=device)
    while picked.numel() < count:
        need = count - picked.numel()
        draw = torch.randint(0, num_points, (int(need * 1.25) + 16,), generator=generator, device=device)
        draw = draw[~isin_sorted(draw, exclude)]
        picked = _first_occurrences(torch.cat([picked, draw]))
    return picked[:count]


def _first_occurrences(values: torch.Tensor) -> torch.Tensor:
    """Distinct values in order of first appearance."""
    order = torch.sort(values, stable=True)
    is_first = torch.ones_like(values, dtype=torch.bool)
    is_first[1:] = order.values[1:] != order.values[:-1]
    return values[torch.sort(order.indices[is_first]).values]


def balanced_bounds(num_selected: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of ``rank``'s part when k selected samples are split into W near-equal
    contiguous parts (sizes differ by at most one; the first k mod W parts get one more)."""
    base, extra = divmod(num_selected, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def ddp_scaled_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    num_selected: int,
    world_size: int,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """This worker's loss such that DDP's averaged gradient is the gradient of the MSE over the
    whole selection.

    With k samples selected in total and per-sample loss l_i = mean_c (f(x_i) - y_i)^2, the
    single-process loss is L = (1/k) sum_i l_i. DDP averages gradients over W workers:
    (1/W) sum_w grad L_w. Choosing L_w = (W/k) sum_{i in part_w} l_i gives
    (1/W) sum_w (W/k) sum_{i in part_w} grad l_i = (1/k) sum_i grad l_i = grad L.
    Per-sample ``weights`` [m] (importance-sampling corrections) replace l_i by w_i * l_i.
    Args: prediction, target [m, C] for this worker's part (m may be 0).
    """
    per_sample = (prediction - target).pow(2).mean(dim=-1)
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample)
    return per_sample.sum() * (world_size / max(num_selected, 1))


_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 values read as unsigned 64-bit words."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def index_uniforms(seed: int, step: int, salt: int, indices: torch.Tensor) -> torch.Tensor:
    """One uniform number in (0, 1) per global index, a pure function of (seed, step, salt, index).

    A counter-based hash (SplitMix64 finaliser) instead of a generator stream: a worker computes
    the numbers of its own coordinates only, and every coordinate gets the same number for any
    worker count. Returns float64 [n] on the indices' device.
    """
    base = (int(seed) * _SEED_MIX + int(step) * 0x632BE59BD9B4E019 + int(salt) * 0xD1B54A32D192ED03) & _MASK64
    z = indices.to(torch.int64) * _signed(0xBF58476D1CE4E5B9) + _signed(base)
    z = (z ^ _shift_right(z, 30)) * _signed(0xBF58476D1CE4E5B9)
    z = (z ^ _shift_right(z, 27)) * _signed(0x94D049BB133111EB)
    z = z ^ _shift_right(z, 31)
    return (_shift_right(z, 11).to(torch.float64) + 0.5) * 2.0**-53


def weighted_keys(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Efraimidis–Spirakis keys log(u_i) / w_i: the k largest keys are a draw of k items without
    replacement with probability proportional to ``weights`` (successive draws, each ∝ the
    weights of the items left). Zero weight gives −inf (never drawn before a positive one).
    Args: weights [n] ≥ 0, uniforms [n] in (0, 1). Returns float64 [n]."""
    w = weights.to(torch.float64)
    keys = torch.log(uniforms.to(torch.float64)) / w.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(w > 0, keys, torch.full_like(keys, float("-inf")))

"""Selection arithmetic: canonical top-k, exact merge, seeded random picks, balanced split, loss
scale. Pure functions of tensors; the collectives that feed them live in ``comm``/``shard``.

Canonical order of a top-k list: score descending, global index ascending on ties. Because
every worker uses the same rule, the union of local top-k lists contains the global top-k and
merging it with the same rule gives the selection one process would make.

Shapes: ``[n]`` one entry per candidate coordinate, ``[k]`` one per selected coordinate.
"""

import math

import torch

from nint_dist import triton_support

_SEED_MIX = 0x9E3779B97F4A7C15


def topk_set(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best (score, index) pairs by the canonical rule, in ascending index order.

    Requires ``indices`` ascending. Ties at the k-th score go to the smaller global indices,
    which come first, so a running count of the ties picks them. No value is read back to the
    host: on a GPU the whole selection stays queued behind the work before it. A NaN score
    (a diverged model) ranks as −inf, the mark of an excluded candidate.
    Args: scores [n] floating, indices [n] int64 ascending. Returns (scores [k'], indices [k'])
    with k' = min(k, n).
    """
    k = min(int(k), scores.numel())
    if k <= 0:
        return scores[:0], indices[:0]
    scores = scores.masked_fill(scores.isnan(), float("-inf"))
    kth = torch.topk(scores, k, sorted=False).values.min()
    above = scores > kth
    ties = scores == kth
    keep = above | (ties & (ties.cumsum(0) <= k - above.sum()))
    rows = torch.nonzero_static(keep, size=k).squeeze(1)
    return scores[rows], indices[rows]


def canonical_order(scores: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Score descending, index ascending on ties, of a list given in ascending index order."""
    by_score = torch.sort(scores, descending=True, stable=True).indices
    return scores[by_score], indices[by_score]


def topk_canonical(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best (score, index) pairs in canonical order, for indices in any order (distinct).

    Ties at the k-th score are broken by the smaller global index, so the result does not
    depend on how candidates were partitioned or ordered. Returns (scores [k'], indices [k'])
    with k' = min(k, n).
    """
    by_index = torch.argsort(indices)
    return canonical_order(*topk_set(scores[by_index], indices[by_index], k))


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


def distinct_draw(num_points: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` distinct indices of [0, N) in a uniformly random order: the first ``count``
    entries of a random permutation, a function of the generator alone (never of the worker
    count). Returns int64 [count] on the generator's device.

    Dense draws (count ≥ N/8) take a prefix of a permutation. Sparse ones draw a little more than
    ``count`` with replacement and keep first occurrences; only they read one number back to
    the host, to confirm that enough distinct values came (they almost always do). On CUDA with
    triton installed the draw is the first ``count`` positions of the epoch order keyed by the
    generator's seed instead: one kernel of O(count) work that never waits on the host, where
    a permutation of all N sorts N keys and a sparse draw waits once per step."""
    device = generator.device
    if count > num_points:
        raise ValueError(f"cannot draw {count} distinct of {num_points} coordinates")
    if device.type == "cuda" and triton_support.available():
        return ordered_draw(num_points, count, generator.initial_seed(), device)
    if count * 8 >= num_points:
        return torch.randperm(num_points, generator=generator, device=device)[:count]
    # Draws needed for count distinct values in expectation, plus a margin of many deviations.
    wanted = min(num_points - 1, count + 8 * math.isqrt(count) + 16)
    draws = math.ceil(-num_points * math.log1p(-wanted / num_points))
    values = torch.empty(0, dtype=torch.int64, device=device)
    while True:
        more = torch.randint(0, num_points, (draws,), generator=generator, device=device)
        values = torch.cat([values, more])
        order = torch.sort(values, stable=True)
        first_in_sorted = torch.ones_like(values, dtype=torch.bool)
        first_in_sorted[1:] = order.values[1:] != order.values[:-1]
        is_first = torch.empty_like(first_in_sorted).index_put_((order.indices,), first_in_sorted)
        if int(is_first.sum()) >= count:
            return values[first_rows(is_first, count)]
        draws = count  # rare: draw once more and keep the first occurrences of both draws


def ordered_draw(num_points: int, count: int, seed: int, device: torch.device | str) -> torch.Tensor:
    """``count`` distinct indices of [0, N): the first ``count`` positions of the epoch order
    keyed by ``seed`` (``distinct_draw`` on CUDA). Returns int64 [count] on ``device``."""
    return epoch_order(seed, 0, torch.arange(count, device=device), num_points)


def first_rows(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Positions of the first ``count`` True entries of ``mask`` (which has at least that many)."""
    return torch.nonzero_static(mask & (mask.cumsum(0) <= count), size=count).squeeze(1)


def random_picks(
    num_points: int, count: int, exclude: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``count`` distinct global indices drawn uniformly from [0, N) minus ``exclude`` (distinct
    indices), in draw order: the first ``count`` entries outside ``exclude`` of a distinct draw
    of ``count + |exclude|``, which always holds enough. Returns int64 [count] on the
    generator's device."""
    available = num_points - exclude.numel()
    if count > available:
        raise ValueError(f"cannot draw {count} of {available} remaining coordinates")
    if count <= 0:
        return torch.empty(0, dtype=torch.int64, device=generator.device)
    draw = distinct_draw(num_points, count + exclude.numel(), generator)
    if exclude.numel() == 0:
        return draw
    outside = ~isin_sorted(draw, torch.sort(exclude.to(draw.device, torch.int64)).values)
    return draw[first_rows(outside, count)]


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


def _shift_right(x: torch.Tensor, bits: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Logical right shift of int64 values read as unsigned 64-bit words (into ``out`` if given)."""
    shifted = torch.bitwise_right_shift(x, bits, out=out)
    shifted &= (1 << (64 - bits)) - 1
    return shifted


def index_uniforms(seed: int, step: int, salt: int, indices: torch.Tensor) -> torch.Tensor:
    """One uniform number in (0, 1) per global index, a pure function of (seed, step, salt, index).

    A counter-based hash (SplitMix64 finaliser) instead of a generator stream: a worker computes
    the numbers of its own coordinates only, and every coordinate gets the same number for any
    worker count. Returns float64 [n] on the indices' device.
    """
    z = _mix(indices.to(torch.int64), _key(seed, step, salt))
    return (_shift_right(z, 11).to(torch.float64) + 0.5) * 2.0**-53


def _key(seed: int, step: int, salt: int) -> int:
    return _signed(int(seed) * _SEED_MIX + int(step) * 0x632BE59BD9B4E019 + int(salt) * 0xD1B54A32D192ED03)


def _mix(x: torch.Tensor, key: int) -> torch.Tensor:
    """A keyed 64-bit hash of int64 values (the SplitMix64 finaliser), as int64 words. In place
    on two fresh tensors: on a CPU a new tensor per operation costs more than the arithmetic."""
    z = x * _signed(0xBF58476D1CE4E5B9)
    z += key
    shifted = torch.empty_like(z)
    for bits, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None)):
        z ^= _shift_right(z, bits, out=shifted)
        if factor is not None:
            z *= _signed(factor)
    return z


FEISTEL_ROUNDS = 3
ROUND_SALT = 0xF5E1
"""Round r's key is ``_key(seed, epoch, ROUND_SALT + r)`` (two per round)."""


def feistel_word(num_points: int) -> tuple[int, int]:
    """The epoch order's word for N coordinates: (bits b, with 2^b ≥ N; the low half's bits)."""
    bits = max(2, (num_points - 1).bit_length())
    return bits, bits // 2


def epoch_order(seed: int, epoch: int, positions: torch.Tensor, num_points: int) -> torch.Tensor:
    """The coordinates at ``positions`` [n] (in [0, N)) of epoch ``epoch``'s visiting order: a
    pseudo-random permutation of [0, N) keyed by (seed, epoch), so an epoch's positions
    0..N−1 name every coordinate exactly once. Computed per position (no O(N) permutation is
    stored, so it suits signals of billions of coordinates) and identical on every worker.

    The permutation acts on b-bit words, 2^b the smallest power of two ≥ N (so 2^b < 2N):
    rounds that each replace the high bits by themselves XOR a keyed hash of the low bits, or
    the low bits by a hash of the high ones, are bijections, and so is their composition.
    Values ≥ N are sent through it again until they land in [0, N) (cycle walking), which
    keeps it a permutation of [0, N); each pass leaves [0, N) with probability < 1/2 and walks
    only the values still outside (their count is read back to the host once per pass). On
    CUDA with triton installed, one kernel computes the same (``nint_dist.selection_triton``).
    Returns int64 [n] on the positions' device."""
    if positions.is_cuda and triton_support.available():
        from nint_dist import selection_triton

        return selection_triton.epoch_order(seed, epoch, positions, num_points)
    bits, low = feistel_word(num_points)
    high_mask, low_mask = (1 << (bits - low)) - 1, (1 << low) - 1
    keys = [_key(seed, epoch, ROUND_SALT + r) for r in range(2 * FEISTEL_ROUNDS)]

    def permute(x: torch.Tensor) -> torch.Tensor:  # in place
        for r in range(FEISTEL_ROUNDS):
            half = _mix(x & low_mask, keys[2 * r])
            half &= high_mask
            half <<= low
            x ^= half
            half = _mix(x >> low, keys[2 * r + 1])
            half &= low_mask
            x ^= half
        return x

    order = permute(positions.to(torch.int64, copy=True))
    rows = torch.nonzero(order >= num_points).squeeze(1)  # the walkers; fewer at every pass
    while rows.numel():
        walked = permute(order[rows])
        order[rows] = walked
        rows = rows[walked >= num_points]
    return order


def weighted_keys(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Efraimidis–Spirakis keys log(u_i) / w_i: the k largest keys are a draw of k items without
    replacement with probability proportional to ``weights`` (successive draws, each ∝ the
    weights of the items left). Zero weight gives the lowest finite key (never drawn before a
    positive one); −inf stays free to mark excluded candidates in a top-k.
    Args: weights [n] ≥ 0, uniforms [n] in (0, 1). Returns float64 [n]."""
    w = weights.to(torch.float64)
    lowest = torch.finfo(torch.float64).min
    keys = torch.log(uniforms.to(torch.float64)) / w.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(w > 0, keys, torch.full_like(keys, lowest)).clamp_min(lowest)

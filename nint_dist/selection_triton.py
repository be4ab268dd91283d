"""``selection.epoch_order`` in one Triton kernel, for CUDA tensors.

The PyTorch version computes the keyed permutation with about seventy elementwise operations
and walks the values that fall outside [0, N) again in passes whose count it reads back to the
host: some 900 kernel launches and a dozen host waits per call, on a GPU several milliseconds
where a small training step takes one. Here each element is permuted and walked in registers,
in one launch that never waits on the host. Same words, same rounds, same walk: the result
equals the PyTorch version's element for element (tested under Triton's interpreter).
"""

import torch

from nint_dist.triton_support import available

BLOCK = 1024

if available():
    import triton
    import triton.language as tl

    @triton.jit
    def _mix(x, key):
        """The keyed hash of ``selection._mix`` on uint64 words."""
        z = x * 0xBF58476D1CE4E5B9 + key
        z ^= z >> 30
        z *= 0xBF58476D1CE4E5B9
        z ^= z >> 27
        z *= 0x94D049BB133111EB
        z ^= z >> 31
        return z

    @triton.jit
    def _round(x, key_high, key_low, low: tl.constexpr, LOW_MASK: tl.constexpr, HIGH_MASK: tl.constexpr):
        """One Feistel round: the high bits XOR a hash of the low bits, then the reverse."""
        x ^= (_mix(x & LOW_MASK, key_high) & HIGH_MASK) << low
        x ^= _mix(x >> low, key_low) & LOW_MASK
        return x

    @triton.jit
    def _permute(
        x, k0, k1, k2, k3, k4, k5, low: tl.constexpr, LOW_MASK: tl.constexpr, HIGH_MASK: tl.constexpr
    ):
        """selection.FEISTEL_ROUNDS (three) rounds."""
        x = _round(x, k0, k1, low, LOW_MASK, HIGH_MASK)
        x = _round(x, k2, k3, low, LOW_MASK, HIGH_MASK)
        return _round(x, k4, k5, low, LOW_MASK, HIGH_MASK)

    @triton.jit
    def _either(a, b):
        # not tl.max: triton's own jit functions stay compiled, not interpreted, when triton was
        # imported before TRITON_INTERPRET was set (the tests reload this module under it)
        return a | b

    @triton.jit(do_not_specialize=["n", "num_points", "k0", "k1", "k2", "k3", "k4", "k5"])
    def _epoch_order_kernel(
        positions_ptr, out_ptr, n, num_points, k0, k1, k2, k3, k4, k5,
        low: tl.constexpr, LOW_MASK: tl.constexpr, HIGH_MASK: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        x = tl.load(positions_ptr + offsets, mask=mask, other=0).to(tl.uint64)
        k0, k1, k2 = k0.to(tl.uint64), k1.to(tl.uint64), k2.to(tl.uint64)
        k3, k4, k5 = k3.to(tl.uint64), k4.to(tl.uint64), k5.to(tl.uint64)
        limit = num_points.to(tl.uint64)
        x = _permute(x, k0, k1, k2, k3, k4, k5, low, LOW_MASK, HIGH_MASK)
        outside = x >= limit
        while tl.reduce(outside.to(tl.int32), 0, _either) > 0:  # cycle walking, lane by lane
            x = tl.where(outside, _permute(x, k0, k1, k2, k3, k4, k5, low, LOW_MASK, HIGH_MASK), x)
            outside = x >= limit
        tl.store(out_ptr + offsets, x.to(tl.int64), mask=mask)


def epoch_order(
    keys: list[int], positions: torch.Tensor, num_points: int, low: int, bits: int
) -> torch.Tensor:
    """The permutation of ``selection.epoch_order`` at ``positions`` [n] (int64), from its six
    round keys (unsigned 64-bit values) and its split of ``bits`` into ``low`` low bits."""
    positions = positions.to(torch.int64).contiguous()
    out = torch.empty_like(positions)
    if positions.numel():
        grid = (triton.cdiv(positions.numel(), BLOCK),)
        _epoch_order_kernel[grid](
            positions, out, positions.numel(), num_points, *keys,
            low=low, LOW_MASK=(1 << low) - 1, HIGH_MASK=(1 << (bits - low)) - 1, BLOCK=BLOCK,
        )  # fmt: skip
    return out

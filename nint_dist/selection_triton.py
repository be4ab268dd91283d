"""``selection.epoch_order`` in one Triton kernel, for CUDA tensors.

The PyTorch version computes the keyed permutation with about seventy elementwise operations
and walks the values that fall outside [0, N) again in passes whose count it reads back to the
host: some 800 kernel launches and seven host waits per call on a small image, on a GPU
several milliseconds where a small training step takes a few. Here each element is permuted
and walked in registers, in one launch that never waits on the host. Same words, same rounds,
same walk: the result equals the PyTorch version's element for element (tested under Triton's
interpreter; ``benchmarks/gpu.py`` checks it on the GPU).
"""

import torch

from nint_dist.selection import FEISTEL_ROUNDS, ROUND_SALT, feistel_word
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
    def _round(x, key_high, key_low, low, low_mask, high_mask):
        """One Feistel round: the high bits XOR a hash of the low bits, then the reverse."""
        x ^= (_mix(x & low_mask, key_high) & high_mask) << low
        x ^= _mix(x >> low, key_low) & low_mask
        return x

    @triton.jit
    def _permute(x, k0, k1, k2, k3, k4, k5, low, low_mask, high_mask):
        """selection.FEISTEL_ROUNDS (three) rounds."""
        x = _round(x, k0, k1, low, low_mask, high_mask)
        x = _round(x, k2, k3, low, low_mask, high_mask)
        return _round(x, k4, k5, low, low_mask, high_mask)

    @triton.jit
    def _either(a, b):
        # not tl.max: triton's own jit functions stay compiled, not interpreted, when triton was
        # imported before TRITON_INTERPRET was set (the tests reload this module under it)
        return a | b

    # the rounds' salts ROUND_SALT + r times selection._key's salt multiplier, modulo 2^64
    _S0, _S1, _S2, _S3, _S4, _S5 = (
        tl.constexpr((ROUND_SALT + r) * 0xD1B54A32D192ED03 % 2**64) for r in range(2 * FEISTEL_ROUNDS)
    )

    @triton.jit
    def _key(seed, epoch, salt_term):
        """``selection._key`` on uint64 words."""
        return seed * 0x9E3779B97F4A7C15 + epoch * 0x632BE59BD9B4E019 + salt_term

    # Every scalar is an argument, none specialised: one compiled kernel for every signal, seed
    # and epoch (a key passed in would change the argument's type, u64 or i64, with its top bit).
    @triton.jit(do_not_specialize=["n", "num_points", "seed", "epoch", "low", "low_mask", "high_mask"])
    def _epoch_order_kernel(
        positions_ptr, out_ptr, n, num_points, seed, epoch, low, low_mask, high_mask, BLOCK: tl.constexpr
    ):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        x = tl.load(positions_ptr + offsets, mask=mask, other=0).to(tl.uint64)
        seed, epoch = seed.to(tl.uint64), epoch.to(tl.uint64)
        k0, k1, k2 = _key(seed, epoch, _S0), _key(seed, epoch, _S1), _key(seed, epoch, _S2)
        k3, k4, k5 = _key(seed, epoch, _S3), _key(seed, epoch, _S4), _key(seed, epoch, _S5)
        low, low_mask, high_mask = low.to(tl.uint64), low_mask.to(tl.uint64), high_mask.to(tl.uint64)
        limit = num_points.to(tl.uint64)
        x = _permute(x, k0, k1, k2, k3, k4, k5, low, low_mask, high_mask)
        outside = x >= limit
        while tl.reduce(outside.to(tl.int32), 0, _either) > 0:  # cycle walking, lane by lane
            x = tl.where(outside, _permute(x, k0, k1, k2, k3, k4, k5, low, low_mask, high_mask), x)
            outside = x >= limit
        tl.store(out_ptr + offsets, x.to(tl.int64), mask=mask)


def epoch_order(seed: int, epoch: int, positions: torch.Tensor, num_points: int) -> torch.Tensor:
    """``selection.epoch_order(seed, epoch, positions, num_points)``: int64 [n]."""
    positions = positions.to(torch.int64).contiguous()
    out = torch.empty_like(positions)
    bits, low = feistel_word(num_points)
    if positions.numel():
        grid = (triton.cdiv(positions.numel(), BLOCK),)
        _epoch_order_kernel[grid](
            positions, out, positions.numel(), num_points, seed, epoch,
            low, (1 << low) - 1, (1 << (bits - low)) - 1, BLOCK=BLOCK,
        )  # fmt: skip
    return out

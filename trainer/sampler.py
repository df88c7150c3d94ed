"""The sample order: which window a training step reads, as a pure function of a position.

A split's samples are numbered 0..S-1 (`trainer.data.TokenShards.num_samples`). The run is
one long stream of positions 0, 1, 2, ...; position p is sample `perm_e(p % S)` of epoch
`e = p // S`, where `perm_e` is a seeded pseudo-random permutation of [0, S). Nothing is stored:
the permutation is a Feistel network evaluated on demand, so a corpus of 10^9 samples costs no
memory, and the only state a run has to keep is how many positions it has consumed.

A step consumes a global batch of G = batch_size * world positions [c, c+G); rank r takes
[c + r*batch_size, c + (r+1)*batch_size). Ranks never overlap, and 1 rank x 2B reads exactly
what 2 ranks x B read, so a run resumes exactly on any number of ranks with the same G.
"""

from __future__ import annotations

import numpy as np

FEISTEL_ROUNDS = 6  # any count gives a bijection; six mix well enough for a data order
_MASK64 = (1 << 64) - 1
_ODD = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: Knuth's multiplicative hash


def _mix64(x: int) -> int:
    """splitmix64's finaliser on a Python int: spreads seed/epoch/round into a 64-bit key."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class FeistelPermutation:
    """A keyed bijection of [0, n) in O(1) memory.

    A balanced Feistel network permutes [0, 4^h), the smallest even power of two >= n; values
    that land outside [0, n) are sent through again (cycle walking) until they land inside, which
    keeps it a bijection of [0, n). The domain is less than 4n, so on average a value needs
    fewer than 4 passes.
    """

    def __init__(self, n: int, key: int):
        if n < 1:
            raise ValueError(f"cannot permute {n} items")
        self.n = n
        self.half_bits = max(1, ((n - 1).bit_length() + 1) // 2)
        self._shift = np.uint64(self.half_bits)
        self._mask = np.uint64((1 << self.half_bits) - 1)
        self._top = np.uint64(64 - self.half_bits)
        self._keys = [np.uint64(_mix64(key ^ _mix64(r + 1))) for r in range(FEISTEL_ROUNDS)]

    def _rounds(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._shift, x & self._mask
        for k in self._keys:
            # round function: the top half_bits of an odd-constant multiply of (right ^ key), a
            # multiplicative hash; few numpy ops, since a batch of 16 pays per op, not per item
            f = ((right ^ k) * _ODD) >> self._top
            left, right = right, left ^ f
        return (left << self._shift) | right

    def __call__(self, values) -> np.ndarray:
        """perm(values) for an array of ints in [0, n); returns int64."""
        x = np.asarray(values, dtype=np.uint64)
        if x.size and int(x.max()) >= self.n:
            raise ValueError(f"value {int(x.max())} outside [0, {self.n})")
        x = self._rounds(x)
        outside = np.flatnonzero(x >= self.n)
        while outside.size:  # cycle walking, over ever fewer values
            walked = self._rounds(x[outside])
            x[outside] = walked
            outside = outside[walked >= self.n]
        return x.astype(np.int64)


class SampleOrder:
    """Global position -> sample id: a different seeded permutation of [0, S) every epoch."""

    def __init__(self, num_samples: int, seed: int):
        if num_samples < 1:
            raise ValueError("a sample order needs at least one sample")
        self.num_samples = num_samples
        self.seed = seed
        self._perms: dict[int, FeistelPermutation] = {}

    def permutation(self, epoch: int) -> FeistelPermutation:
        """The epoch's permutation; its key depends on both seed and epoch."""
        if epoch not in self._perms:
            if len(self._perms) > 8:  # a run only ever touches the current and next epoch
                self._perms.clear()
            key = _mix64((_mix64(self.seed & _MASK64) ^ epoch) & _MASK64)
            self._perms[epoch] = FeistelPermutation(self.num_samples, key)
        return self._perms[epoch]

    def samples(self, positions) -> np.ndarray:
        """Sample ids (int64) at global positions; a batch may straddle an epoch boundary."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size == 0:
            return positions.copy()
        epochs, offsets = np.divmod(positions, self.num_samples)
        first, last = int(epochs.min()), int(epochs.max())
        if first == last:  # the common case: one epoch, one call
            return self.permutation(first)(offsets)
        out = np.empty_like(positions)
        for epoch in range(first, last + 1):
            here = epochs == epoch
            out[here] = self.permutation(epoch)(offsets[here])
        return out


def rank_positions(samples_consumed: int, batch_size: int, rank: int, world: int) -> np.ndarray:
    """The positions rank `rank` reads in the step that starts at `samples_consumed`."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    start = samples_consumed + rank * batch_size
    return np.arange(start, start + batch_size, dtype=np.int64)

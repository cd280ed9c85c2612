"""All pairs of 64-bit hashes within a Hamming radius, by multi-index hashing.

Contract:
- ``near_pairs(hashes, radius)`` returns an int64 array ``(K, 2)`` of index pairs ``i < j``
  with ``popcount(hashes[i] ^ hashes[j]) <= radius``, sorted, each pair once. ``hashes``
  is a 1-d integer array (viewed as uint64); ``0 <= radius <= 64``.
- ``plan_blocks(n, radius)`` chooses the index: disjoint bit blocks, each with a probe
  radius ``s``, such that ``sum(s + 1) >= radius + 1``. By pigeonhole, two hashes within
  ``radius`` differ in at most ``s`` bits on at least one block, so probing every key's
  neighbours within ``s`` bits, block by block, finds every pair. Block widths and probe
  radii minimise a cost model for ``n`` uniformly random hashes (block width about
  ``log2 n`` keeps buckets small), so the work grows close to linearly in ``n``.
- ``block_pairs(...)`` is one block's share: the pairs whose *first* qualifying block
  (lowest block index with at most ``s`` differing bits) is that block, so every pair is
  produced by exactly one block. Its ``left_prefix`` restricts it further to pairs whose
  lower block key starts with given bits; ``curate.dedup.distributed`` splits work by it.
- How a block is searched: rows are sorted by block key; pairs inside a bucket are runs of
  equal keys. A block that probes neighbours also has a bucket table (first row of each
  key, ``2 ** bits`` entries, bits <= ``MAX_BLOCK_BITS``) and an occupancy map; for each
  flip mask the occupied key pairs ``(k, k ^ mask)`` are found by vectorised AND of the map
  with itself, counted once from the lower key, and only their rows are compared. Keys are
  walked in windows of ``2 ** WINDOW_BITS`` so a window's tables stay in cache.
- Memory: O(n) per block plus the table (at most 80 MB); inputs small enough for the
  brute-force path are compared in row chunks.
- ``walk(search)`` feeds one block's candidates to a ``_BlockSearch``; a subclass with a
  ``cap`` gets buckets (and neighbour bucket pairs) above it through ``dense(positions)``
  instead of pair by pair (``curate.dedup.clusters`` carves them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

CHUNK = 1 << 22  # pair comparisons per brute-force chunk
MAX_BLOCK_BITS = 24  # bucket table size 2^bits
WINDOW_BITS = 20  # keys per window of a block's table walked probe by probe (cache locality): 2^WINDOW_BITS

# Cost-model weights in nanoseconds, fitted (non-negative least squares on relative error)
# to timings of ``block_pairs`` on random hashes, n = 3e4..2e6, 12..24 bits, probe radius
# 0..2, on one core of the development machine. They only need to rank plans correctly;
# absolute times at millions of rows run up to 2x higher (cache misses).
_NS_PER_HASH = 19.5  # per hash per block: keys, sort, gathers
_NS_PER_PROBE = 2.4e5  # fixed overhead per neighbour probe (all its key windows)
_NS_SCAN_ONE_BIT = 0.7  # per bucket-table slot, probes flipping one bit (table build included)
_NS_SCAN_MORE_BITS = 3.3  # per bucket-table slot, probes flipping several bits
_NS_PER_NEIGHBOUR_CANDIDATE = 26.5  # per candidate pair in a neighbour bucket
_NS_PER_SAME_CANDIDATE = 16.4  # per candidate pair inside one bucket
_NS_PER_BRUTE_PAIR = 12.0  # per pair compared by the brute-force scan


@dataclass(frozen=True)
class Block:
    """Bits ``[lo, lo + bits)`` of the hash (bit 0 least significant), probed within ``probe_radius`` bits."""

    lo: int
    bits: int
    probe_radius: int

    def __post_init__(self):
        if not (0 <= self.lo and 1 <= self.bits <= MAX_BLOCK_BITS and self.lo + self.bits <= 64):
            raise ValueError(f"{self}: needs 1..{MAX_BLOCK_BITS} bits inside the 64")
        if not 0 <= self.probe_radius <= self.bits:
            raise ValueError(f"{self}: probe radius must be within 0..bits")

    def keys(self, hashes: np.ndarray) -> np.ndarray:
        shifted = hashes >> np.uint64(self.lo)
        shifted &= np.uint64((1 << self.bits) - 1)
        return shifted.astype(np.int32)

    def distance(self, xor: np.ndarray) -> np.ndarray:
        return np.bitwise_count((xor >> np.uint64(self.lo)) & np.uint64((1 << self.bits) - 1))


def as_hashes(hashes: np.ndarray) -> np.ndarray:
    """``hashes`` as a 1-d uint64 array (signed 64-bit input is reinterpreted, not converted)."""
    arr = np.asarray(hashes)
    if arr.ndim != 1:
        raise ValueError(f"hashes must be 1-d, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.uint64)
    if arr.dtype == np.int64:
        return arr.view(np.uint64)
    if arr.dtype.kind not in "ui":
        raise ValueError(f"hashes must be an integer array, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and (arr < 0).any():
        raise ValueError("hashes narrower than 64 bits must be non-negative")
    return arr.astype(np.uint64)


def check_blocks(blocks: tuple[Block, ...], radius: int) -> None:
    """Raise unless ``blocks`` are disjoint and satisfy the pigeonhole condition for ``radius``."""
    spans = sorted((b.lo, b.lo + b.bits) for b in blocks)
    if any(end > start for (_, end), (start, _) in zip(spans, spans[1:])):
        raise ValueError(f"blocks {blocks} overlap")
    if sum(b.probe_radius + 1 for b in blocks) < radius + 1:
        raise ValueError(f"blocks {blocks} cover fewer than radius+1={radius + 1} pigeonhole units")


def check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or not 0 <= radius <= 64:
        raise ValueError(f"radius must be an integer in 0..64, got {radius!r}")
    return int(radius)


# ---------------------------------------------------------------- planning


def _ball(bits: int, s: int) -> int:
    return sum(math.comb(bits, t) for t in range(s + 1))


def _block_cost(n: int, bits: int, s: int) -> float:
    """Predicted nanoseconds for one block of ``bits`` bits probed within ``s`` bits, on ``n`` random hashes."""
    slots = float(1 << bits)
    candidates = n * n / (2.0 * slots)  # expected pairs per probe (sharing a bucket, or a given neighbour)
    one_bit = bits if s >= 1 else 0
    more_bits = _ball(bits, s) - 1 - one_bit
    return (
        _NS_PER_HASH * n
        + _NS_PER_SAME_CANDIDATE * candidates
        + (one_bit + more_bits) * (_NS_PER_PROBE + _NS_PER_NEIGHBOUR_CANDIDATE * candidates)
        + (_NS_SCAN_ONE_BIT * one_bit + _NS_SCAN_MORE_BITS * more_bits) * slots / 2
    )


@lru_cache(maxsize=256)
def _plan(n: int, radius: int) -> tuple[float, tuple[Block, ...]]:
    """Cheapest blocks for ``n`` hashes: dynamic programme over (pigeonhole units, bits used)."""
    need = radius + 1
    choices = [
        (bits, s, _block_cost(n, bits, s))
        for bits in range(1, MAX_BLOCK_BITS + 1)
        for s in range(min(bits, radius) + 1)
    ]
    inf = float("inf")
    best = [[inf] * 65 for _ in range(need + 1)]
    best[0][0] = 0.0
    came: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    for units in range(need):
        for used in range(65):
            here = best[units][used]
            if here == inf:
                continue
            for bits, s, cost in choices:
                if used + bits > 64 or units + s + 1 > need:
                    continue
                to_units, to_used = units + s + 1, used + bits
                if here + cost < best[to_units][to_used]:
                    best[to_units][to_used] = here + cost
                    came[to_units, to_used] = (units, used, bits, s)
    total = min(best[need])
    state = (need, best[need].index(total))
    chosen: list[tuple[int, int]] = []
    while state != (0, 0):
        units, used, bits, s = came[state]
        chosen.append((bits, s))
        state = (units, used)
    blocks, lo = [], 0
    for bits, s in sorted(chosen, key=lambda c: (c[1], c[0])):
        blocks.append(Block(lo, bits, s))
        lo += bits
    return total, tuple(blocks)


def _size_class(n: int) -> int:
    """``n`` rounded up to 1/8 powers of two, so plans are cached across nearby sizes."""
    if n <= 64:
        return max(n, 2)
    return int(math.ceil(2 ** (math.ceil(8 * math.log2(n)) / 8)))


def plan_blocks(n: int, radius: int) -> tuple[Block, ...]:
    """Blocks for multi-index hashing of ``n`` hashes at ``radius`` (see module doc)."""
    return _plan(_size_class(n), check_radius(radius))[1]


def _use_brute_force(n: int, radius: int) -> bool:
    cost, _ = _plan(_size_class(n), radius)
    return _NS_PER_BRUTE_PAIR * n * (n - 1) / 2 <= cost


# ---------------------------------------------------------------- search


def _masks(bits: int, s: int):
    yield 0
    for weight in range(1, s + 1):
        for positions in combinations(range(bits), weight):
            yield sum(1 << p for p in positions)


def _lower_keys(occupied: np.ndarray, bits: int, mask: int, left_prefix: tuple[int, int] | None) -> np.ndarray:
    """Keys ``k`` with ``k`` and ``k ^ mask`` both occupied and the top bit of ``mask`` clear in ``k``.

    Only keys whose top ``t`` bits equal ``p`` when ``left_prefix=(t, p)``; works on that
    window of ``occupied`` (and its partner window), so the cost is the window size.
    """
    t, p = left_prefix if left_prefix is not None else (0, 0)
    shift = bits - t
    width, base, top = 1 << shift, p << shift, mask.bit_length() - 1
    if top >= shift:  # the top flipped bit is in the prefix: the partner is another window
        if (p >> (top - shift)) & 1:
            return np.zeros(0, dtype=np.int64)
        partner_base = (p ^ (mask >> shift)) << shift
        inner = mask & (width - 1)
        right = occupied[partner_base : partner_base + width]
        if inner:
            right = right[np.arange(width) ^ inner]
        return base + np.flatnonzero(occupied[base : base + width] & right)
    half = 1 << top
    window = occupied[base : base + width]
    if mask == half and half in (2, 4):  # short rows are slow: compare the window with itself shifted
        u = np.flatnonzero(window[:-half] & window[half:])
        return base + u[(u & half) == 0]
    rows = window.reshape(-1, 2, half)  # (rows, top bit, lower bits)
    upper = rows[:, 1, :]
    if mask ^ half:
        upper = upper[:, np.arange(half) ^ (mask ^ half)]
    u = np.flatnonzero(rows[:, 0, :] & upper)
    return base + ((u >> top) << (top + 1)) + (u & (half - 1))


def _sort_by_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, keys[order]): rows grouped by key; the order inside a group is irrelevant."""
    if keys.size < 2**32:  # one 64-bit value sort of (key, row) is faster than argsort + gather
        packed = (keys.astype(np.int64) << 32) | np.arange(keys.size, dtype=np.int64)
        packed.sort()
        return packed & 0xFFFFFFFF, (packed >> 32).astype(np.int32)
    order = np.argsort(keys)
    return order, keys[order]


class _BlockSearch:
    """One block's rows sorted by key, its bucket table (when it probes neighbours) and the pairs found."""

    cap: int | None = None  # buckets above this size go to ``dense`` instead of pair enumeration (subclasses)

    def __init__(self, hashes: np.ndarray, index: np.ndarray, radius: int, blocks: tuple[Block, ...], k: int):
        self.block, self.earlier, self.radius, self.index = blocks[k], blocks[:k], radius, index
        self.order, self.sorted_keys = _sort_by_key(self.block.keys(hashes))
        self.sorted_hashes = hashes[self.order]
        self.found: list[np.ndarray] = []
        if self.block.probe_radius == 0:
            return
        bounds = np.flatnonzero(np.r_[True, self.sorted_keys[1:] != self.sorted_keys[:-1], True])
        used = self.sorted_keys[bounds[:-1]]
        position = np.int32 if hashes.size < 2**31 else np.int64
        self.table = np.zeros((1 << self.block.bits) + 1, dtype=position)  # key -> first sorted position
        self.table[used + 1] = np.diff(bounds)
        np.cumsum(self.table, out=self.table)
        self.occupied = np.zeros(1 << self.block.bits, dtype=bool)
        self.occupied[used] = True

    def span(self, window: tuple[int, int]) -> tuple[int, int]:
        """Sorted positions [first, stop) of the rows whose key has top ``t`` bits ``p``."""
        t, p = window
        shift = self.block.bits - t
        if self.block.probe_radius:
            return int(self.table[p << shift]), int(self.table[(p + 1) << shift])
        first, stop = np.searchsorted(self.sorted_keys, [p << shift, (p + 1) << shift])
        return int(first), int(stop)

    def dense(self, positions: np.ndarray) -> None:
        """Handle every pair among ``positions`` (sorted positions of one or two buckets above ``cap``)."""
        raise NotImplementedError

    def verify(self, a: np.ndarray, b: np.ndarray) -> None:
        """Keep candidate pairs (sorted positions) within the radius and first found by this block."""
        xor = self.sorted_hashes[a] ^ self.sorted_hashes[b]
        ok = np.bitwise_count(xor) <= self.radius
        if not ok.any():
            return
        a, b, xor = a[ok], b[ok], xor[ok]
        if self.earlier:
            first_here = np.ones(a.size, dtype=bool)
            for e in self.earlier:
                first_here &= e.distance(xor) > e.probe_radius
            a, b = a[first_here], b[first_here]
        gi, gj = self.index[self.order[a]], self.index[self.order[b]]
        self.found.append(np.stack([np.minimum(gi, gj), np.maximum(gi, gj)], axis=1))

    def same_bucket(self, first: int, stop: int) -> None:
        """Pairs inside buckets, for sorted positions [first, stop): each with the ones d places after it."""
        keys = self.sorted_keys[first:stop]
        a = np.flatnonzero(keys[1:] == keys[:-1])
        if self.cap is not None and a.size:
            bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
            sizes = np.diff(bounds)
            for b in np.flatnonzero(sizes > self.cap).tolist():
                self.dense(np.arange(first + bounds[b], first + bounds[b + 1]))
            a = a[np.repeat(sizes, sizes)[a] <= self.cap]
        d = 1
        while a.size:
            self.verify(first + a, first + a + d)
            d += 1
            a = a[a + d < keys.size]
            a = a[keys[a + d] == keys[a]]

    def neighbours(self, mask: int, window: tuple[int, int]) -> None:
        """Pairs across buckets ``k`` and ``k ^ mask``, ``k`` the lower key, in the key window ``(t, p)``."""
        low = _lower_keys(self.occupied, self.block.bits, mask, window)
        if not low.size:
            return
        high = low ^ mask
        table = self.table
        left_start, right_start = table[low], table[high]
        left_count, right_count = table[low + 1] - left_start, table[high + 1] - right_start
        if self.cap is not None:
            big = (left_count > self.cap) | (right_count > self.cap)
            for ls, lc, rs, rc in zip(*(x[big].tolist() for x in (left_start, left_count, right_start, right_count))):
                self.dense(np.r_[ls : ls + lc, rs : rs + rc])
            small = ~big
            left_start, left_count = left_start[small], left_count[small]
            right_start, right_count = right_start[small], right_count[small]
            if not left_start.size:
                return
        self.verify(left_start, right_start)  # the first item of each bucket: most buckets hold one
        many = (left_count > 1) | (right_count > 1)
        if not many.any():
            return
        left_start, left_count = left_start[many], left_count[many]
        right_start, right_count = right_start[many], right_count[many]
        for i in range(int(left_count.max())):  # i-th item of each left bucket against its right bucket
            go = left_count > i
            a, b, more = left_start[go] + i, right_start[go], right_count[go]
            if i == 0:  # item (0, 0) is done
                go = more > 1
                a, b, more = a[go], b[go] + 1, more[go] - 1
            while a.size:
                self.verify(a, b)
                go = more > 1
                a, b, more = a[go], b[go] + 1, more[go] - 1


def block_pairs(
    hashes: np.ndarray,
    index: np.ndarray,
    radius: int,
    blocks: tuple[Block, ...],
    k: int,
    left_prefix: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pairs (as ``index`` values, smaller first, unsorted) whose first qualifying block is ``blocks[k]``.

    ``hashes`` may be a subset of the full set; ``index`` gives each its global number.
    ``left_prefix=(t, p)`` keeps only pairs whose smaller block-``k`` key has top ``t`` bits
    equal to ``p``; the partner may have any key, so the subset must hold it.
    The key space is walked in windows of ``2 ** WINDOW_BITS`` keys, every probe of a window
    before the next, so that its part of the tables stays in cache.
    """
    if hashes.size < 2:
        return np.zeros((0, 2), dtype=np.int64)
    search = _BlockSearch(hashes, index, radius, blocks, k)
    walk(search, left_prefix)
    found = search.found
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def walk(search: _BlockSearch, left_prefix: tuple[int, int] | None = None) -> None:
    """Feed every candidate pair of ``search``'s block (same bucket, then neighbour probes) to it, window by window."""
    bits = search.block.bits
    masks = list(_masks(bits, search.block.probe_radius))[1:]
    t0, p0 = left_prefix if left_prefix is not None else (0, 0)
    t = max(t0, bits - WINDOW_BITS) if masks else t0
    for p in range(p0 << (t - t0), (p0 + 1) << (t - t0)):
        first, stop = search.span((t, p))
        if first == stop:
            continue
        search.same_bucket(first, stop)
        for mask in masks:
            search.neighbours(mask, (t, p))


def sort_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    """``pairs`` (i < j < n) in lexicographic order."""
    code = np.sort(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])
    return np.stack([code // n, code % n], axis=1) if code.size else np.zeros((0, 2), dtype=np.int64)


def mih_pairs(hashes: np.ndarray, radius: int, blocks: tuple[Block, ...]) -> np.ndarray:
    """``near_pairs`` by multi-index hashing over the given ``blocks`` (they must satisfy the pigeonhole)."""
    hashes = as_hashes(hashes)
    radius = check_radius(radius)
    check_blocks(blocks, radius)
    index = np.arange(hashes.size, dtype=np.int64)
    parts = [block_pairs(hashes, index, radius, blocks, k) for k in range(len(blocks))]
    return sort_pairs(np.concatenate(parts), hashes.size)


def brute_force_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    """``near_pairs`` by comparing every pair, in row chunks (quadratic; for small inputs)."""
    hashes = as_hashes(hashes)
    radius = check_radius(radius)
    n = hashes.size
    rows = max(1, CHUNK // max(n, 1))
    found = []
    for lo in range(0, n, rows):
        block = np.bitwise_count(hashes[lo : lo + rows, None] ^ hashes[None, :]) <= radius
        i, j = np.nonzero(block)
        i = i + lo
        keep = i < j
        found.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 2), dtype=np.int64)


def near_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    """Index pairs ``i < j`` within Hamming ``radius``, sorted and unique (see module doc)."""
    hashes = as_hashes(hashes)
    radius = check_radius(radius)
    n = hashes.size
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    if _use_brute_force(n, radius):
        return brute_force_pairs(hashes, radius)
    return mih_pairs(hashes, radius, plan_blocks(n, radius))

"""Reference pair search, planted hash sets and block plans for the dedup tests."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from curate.dedup.mih import Block


def reference_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    """All pairs i < j within radius, by Python integers (independent of the code under test)."""
    values = [int(h) for h in hashes]
    found = [(i, j) for i, j in combinations(range(len(values)), 2) if (values[i] ^ values[j]).bit_count() <= radius]
    return np.array(found, dtype=np.int64).reshape(-1, 2)


def planted_hashes(n: int, radius: int, seed: int) -> np.ndarray:
    """Random hashes where a third are copies of others with 0..radius+1 flipped bits, plus a run of identical ones."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    for dst in rng.choice(n, size=n // 3, replace=False):
        value = int(hashes[rng.integers(n)])
        for bit in rng.choice(64, size=rng.integers(0, radius + 2), replace=False):
            value ^= 1 << int(bit)
        hashes[dst] = value
    if n >= 10:
        hashes[:5] = hashes[5]
    return hashes


def blocks_of(spec: list[tuple[int, int]]) -> tuple[Block, ...]:
    blocks, lo = [], 0
    for bits, s in spec:
        blocks.append(Block(lo, bits, s))
        lo += bits
    return tuple(blocks)


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray for one dedup test module, shut down after it (shadows the session fixture:
    the job-submission test must not run while this process holds a Ray of its own)."""
    import ray

    if ray.is_initialized():  # the session's Ray (an earlier module started it): share it
        yield ray
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def flips(rng: np.random.Generator, n: int, max_flips: int) -> np.ndarray:
    """``n`` XOR masks of 0..max_flips random bits (each of max_flips draws kept with probability 0.7)."""
    out = np.zeros(n, dtype=np.uint64)
    for _ in range(max_flips):
        bit = np.uint64(1) << rng.integers(0, 64, size=n).astype(np.uint64)
        out |= np.where(rng.random(n) < 0.7, bit, np.uint64(0))
    return out

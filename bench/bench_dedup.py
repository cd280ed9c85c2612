"""Benchmark of the near-duplicate search: pair search scaling, and cluster search under popular images.

Usage: ``python bench/bench_dedup.py [--sizes 1e5,1e6] [--radius 3] [--repeats 2] [--seed 0]
[--rows 1e6] [--cluster-radius 4]``

Part 1, ``curate.dedup.near_pairs``: for each size N, seeded uniformly random 64-bit hashes
with planted near-duplicate pairs (1..3 flipped bits, N/1000 pairs), timed (best of
``--repeats``); every planted pair must be found (asserted). Reported as ratios: the growth
exponent between consecutive sizes (target <= 1.25) and the speed-up over a brute-force scan
measured in the same run (pairs per second on a sample, extrapolated).

Part 2, ``curate.dedup.clusters.near_components`` (the decision path) on ``--rows`` hashes at
``--cluster-radius``: uniform (the baseline), 1 %, 10 % and 30 % of rows copies of popular
values (group sizes Zipf-distributed, the largest ``rows / 100``), and one cluster of 10^4
copies within 3 bits of each other. Reported: time / baseline time (target <= 2: near-linear),
pairs checked and spanning joins, and the pairs an all-pairs search would have to output
inside the popular groups. The last line is a one-line summary.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from curate.dedup.clusters import SearchStats, near_components
from curate.dedup.graph import HashGraph
from curate.dedup.mih import brute_force_pairs, near_pairs, plan_blocks

TARGET_EXPONENT = 1.25
TARGET_RATIO = 2.0
BRUTE_SAMPLE = 10_000


def planted_set(n: int, max_flips: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random hashes and the (i < j) pairs planted at 1..max_flips bits apart."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    count = max(1, n // 1000)
    src, dst = rng.choice(n, size=(2, count), replace=False)
    flips = np.zeros(count, dtype=np.uint64)
    for slot in range(max_flips):  # distinct bits: at least one, at most max_flips
        bit = np.uint64(1) << rng.integers(0, 64, size=count).astype(np.uint64)
        use = (slot == 0) | (rng.random(count) < 0.5)
        flips |= np.where(use, bit, np.uint64(0))
    hashes[dst] = hashes[src] ^ flips
    pairs = np.stack([np.minimum(src, dst), np.maximum(src, dst)], axis=1).astype(np.int64)
    return hashes, pairs


def found_count(found: np.ndarray, planted: np.ndarray, n: int) -> int:
    return int(np.isin(planted[:, 0] * n + planted[:, 1], found[:, 0] * n + found[:, 1]).sum())


def brute_pairs_per_second(radius: int, seed: int, repeats: int) -> float:
    sample = np.random.default_rng(seed + 1).integers(0, 2**64, size=BRUTE_SAMPLE, dtype=np.uint64)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        brute_force_pairs(sample, radius)
        best = min(best, time.perf_counter() - start)
    return BRUTE_SAMPLE * (BRUTE_SAMPLE - 1) / 2 / best


def popular_set(n: int, share: float, seed: int) -> tuple[np.ndarray, int]:
    """Random hashes where ``share`` of the rows copy popular values (Zipf group sizes), and the pairs inside groups."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    copies = int(n * share)
    sizes = np.minimum(rng.zipf(1.5, size=copies), n // 100)
    sizes = sizes[np.cumsum(sizes) <= copies]
    sizes = np.r_[sizes, copies - sizes.sum()]
    sizes = sizes[sizes > 0] + 1  # each group: the original and its copies
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    group = np.repeat(np.arange(sizes.size), sizes)
    hashes[: group.size] = hashes[starts[group]]
    return rng.permutation(hashes), int((sizes * (sizes - 1) // 2).sum())


def dense_cluster(n: int, size: int, max_flips: int, seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    flips = np.zeros(size, dtype=np.uint64)
    for _ in range(max_flips):
        bit = np.uint64(1) << rng.integers(0, 64, size=size).astype(np.uint64)
        flips |= np.where(rng.random(size) < 0.7, bit, np.uint64(0))
    hashes[:size] = hashes[0] ^ flips
    return rng.permutation(hashes), size * (size - 1) // 2


def cluster_search(n: int, radius: int, seed: int, repeats: int) -> tuple[float, bool]:
    """Part 2; returns (worst time ratio against the uniform baseline, every cluster found whole)."""
    cases = [("uniform", *popular_set(n, 0.0, seed))]
    cases += [(f"{int(share * 100)} % identical", *popular_set(n, share, seed)) for share in (0.01, 0.10, 0.30)]
    cases.append(("cluster of 10^4 within 3 bits", *dense_cluster(n, 10_000, 3, seed)))
    base, worst, whole = None, 0.0, True
    for name, hashes, inside in cases:
        best, stats = math.inf, SearchStats()
        for _ in range(repeats):
            stats = SearchStats()
            start = time.perf_counter()
            labels = near_components(HashGraph.from_rows(hashes[:, None], None, radius), stats)
            best = min(best, time.perf_counter() - start)
        # rows sharing a value (or the planted cluster) must share a label
        _, first = np.unique(hashes, return_index=True)
        whole &= bool(np.array_equal(labels[first][np.unique(hashes, return_inverse=True)[1]], labels))
        base = best if base is None else base
        ratio = best / base
        worst = max(worst, ratio)
        print(
            f"N={n:,} r={radius} {name:30s} time {best:6.2f} s  x{ratio:4.2f} of uniform  checked {stats.checked:>11,}"
            f"  joins {stats.joins:>7,}  nodes {stats.nodes:>9,}  carved {stats.carved:>5,}  all-pairs inside groups {inside:>12,}"
        )
    return worst, whole


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6", help="comma-separated N values (1e6 notation allowed)")
    parser.add_argument("--radius", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per size; the best counts")
    parser.add_argument("--rows", default="1e6", help="rows of the cluster-search part")
    parser.add_argument("--cluster-radius", type=int, default=4, help="radius of the cluster-search part")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]

    rate = brute_pairs_per_second(args.radius, args.seed, args.repeats)
    print(f"brute force baseline: {rate / 1e6:.1f} M pairs/s on a {BRUTE_SAMPLE}-hash sample")
    times: list[float] = []
    speedups: list[float] = []
    all_found = True
    for n in sizes:
        hashes, planted = planted_set(n, min(3, args.radius), args.seed + n)
        best, found = math.inf, None
        for _ in range(args.repeats):
            start = time.perf_counter()
            found = near_pairs(hashes, args.radius)
            best = min(best, time.perf_counter() - start)
        hit = found_count(found, planted, n)
        all_found &= hit == len(planted)
        brute = n * (n - 1) / 2 / rate
        times.append(best)
        speedups.append(brute / best)
        plan = " ".join(f"{b.bits}b/s{b.probe_radius}" for b in plan_blocks(n, args.radius))
        print(
            f"N={n:>9,}  time {best:7.3f} s  planted found {hit}/{len(planted)}  pairs {len(found)}"
            f"  brute-force estimate {brute:10.0f} s  speed-up {brute / best:9.0f}x  blocks [{plan}]"
        )
        assert hit == len(planted), f"missed {len(planted) - hit} planted pairs at N={n}"
        del hashes, found
    exponents = []
    for (n0, t0), (n1, t1) in zip(zip(sizes, times), zip(sizes[1:], times[1:])):
        exponent = math.log(t1 / t0) / math.log(n1 / n0)
        exponents.append(exponent)
        print(
            f"growth N {n0:,} -> {n1:,}: N x{n1 / n0:.0f}, time x{t1 / t0:.1f}, exponent {exponent:.2f}"
            f" (target <= {TARGET_EXPONENT}: {'ok' if exponent <= TARGET_EXPONENT else 'OVER'})"
        )
    worst = max(exponents) if exponents else float("nan")
    overall = math.log(times[-1] / times[0]) / math.log(sizes[-1] / sizes[0]) if len(sizes) > 1 else float("nan")
    ratio, whole = cluster_search(int(float(args.rows)), args.cluster_radius, args.seed, args.repeats)
    print(
        f"SUMMARY cluster search at {int(float(args.rows)):,} rows, radius {args.cluster_radius}: worst time vs uniform "
        f"x{ratio:.2f} (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'}), clusters whole: {whole}; "
        f"pair search radius {args.radius}: sizes {','.join(f'{n:.0e}' for n in sizes)}; all planted pairs found: "
        f"{all_found}; time at N={sizes[-1]:,}: {times[-1]:.2f} s; growth exponent worst step {worst:.2f}, "
        f"first to last {overall:.2f} (target <= {TARGET_EXPONENT}); speed-up over brute force at largest N: "
        f"{speedups[-1]:.0f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

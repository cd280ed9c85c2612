"""Claims and votes per second with N concurrent annotators on SQLite and PostgreSQL (annotate/store.py).

Each annotator is a spawned process that loops ``claim_next``/``vote`` until nothing is left; all
start together (a barrier, after imports, login and ``Store.warm`` unless ``--cold``), and each times
every call. Prints one markdown table row per backend: claims/s and votes/s over the wall time, claim
and vote latency p50/p99 (ms), and the vote p99 without each annotator's first vote ("steady p99":
the first one pays the start-up burst of all annotators at once).
Target: vote p99 < 50 ms (the store must never be what a team waits for).

    .venv/bin/python bench/bench_annotate.py [--annotators 20] [--items 600] [--think-ms 0] [--backends sqlite,postgresql] [--cold]
PostgreSQL: a throwaway database on $REFINERY_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotate.store import Store  # noqa: E402

VOTES = 3


def _annotator(url: str, name: str, token: str, index: int, think_s: float, warm: bool, barrier, results) -> None:
    store = Store.open(url)
    user = store.login(name, token)
    if warm:
        store.warm(user, "bench")  # what the review app does at start (SQL compiled before the first key press)
    claims, votes, errors = [], [], []
    barrier.wait()
    try:
        while True:
            started = time.perf_counter()
            item = store.claim_next(user, "bench")
            claims.append(time.perf_counter() - started)
            if item is None:
                break
            started = time.perf_counter()
            store.vote(user, item.id, level=2 + (item.row_key + index) % 2)
            votes.append(time.perf_counter() - started)
            if think_s:
                time.sleep(random.uniform(0.5, 1.5) * think_s)  # a person looking at the next image
    except Exception as exc:  # noqa: BLE001 - reported in the table
        errors.append(f"{type(exc).__name__}: {exc}")
    results.put((claims, votes, errors, time.perf_counter()))
    store.close()


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else (values or [0.0])[0]


def run(url: str, annotators: int, items: int, think_s: float = 0.0, warm: bool = True) -> dict:
    Store.init(url)
    store = Store.open(url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    team = [(f"a{i:02d}", store.add_user(lead, f"a{i:02d}", "annotator")) for i in range(annotators)]
    store.add_batch(lead, "bench", votes_per_item=VOTES)
    store.add_items(lead, "bench", [{"row_key": k, "image_id": f"{k:064x}", "thumbnail": os.urandom(20_000)} for k in range(items)])
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(annotators + 1), ctx.Queue()
    procs = [ctx.Process(target=_annotator, args=(url, n, t, i, think_s, warm, barrier, results)) for i, (n, t) in enumerate(team)]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    got = [results.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(end for *_, end in got) - started
    claims = [c for c, _, _, _ in got for c in c]
    votes = [v for _, vs, _, _ in got for v in vs]
    steady = [v for _, vs, _, _ in got for v in vs[1:]]
    store.close()
    return {"claims": len(claims), "votes": len(votes), "wall_s": wall, "errors": [e for *_, es, _ in got for e in es],
            "claims_per_s": len(claims) / wall, "votes_per_s": len(votes) / wall,
            "claim_p50_ms": 1000 * _percentile(claims, 50), "claim_p99_ms": 1000 * _percentile(claims, 99),
            "vote_p50_ms": 1000 * _percentile(votes, 50), "vote_p99_ms": 1000 * _percentile(votes, 99),
            "steady_p99_ms": 1000 * _percentile(steady, 99)}


def _pg_database(admin: str):
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"refinery_bench_{secrets.token_hex(4)}"
    conn = psycopg.connect(admin, autocommit=True)
    conn.execute(f'CREATE DATABASE "{name}"')
    return conn, name, make_url(admin).set(database=name).render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause after each vote (0: closed loop, saturating)")
    parser.add_argument("--cold", action="store_true", help="skip Store.warm: each annotator's first calls compile their SQL")
    args = parser.parse_args(argv)
    rows = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                rows.append((backend, run(f"sqlite:///{tmp}/bench.db", args.annotators, args.items, args.think_ms / 1000, not args.cold)))
        else:
            conn, name, url = _pg_database(os.environ.get("REFINERY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
            try:
                rows.append((backend, run(url, args.annotators, args.items, args.think_ms / 1000, not args.cold)))
            finally:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                conn.close()
    print(f"{args.annotators} annotators, {args.items} items x {VOTES} votes, think {args.think_ms:.0f} ms, "
          f"{'cold' if args.cold else 'warmed'}, {os.cpu_count()} CPUs\n")
    print("| backend | claims | votes | wall s | claims/s | votes/s | claim p50 ms | claim p99 ms | vote p50 ms | vote p99 ms "
          "| steady vote p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for backend, r in rows:
        print(f"| {backend} | {r['claims']} | {r['votes']} | {r['wall_s']:.1f} | {r['claims_per_s']:.0f} | {r['votes_per_s']:.0f} | "
              f"{r['claim_p50_ms']:.1f} | {r['claim_p99_ms']:.1f} | {r['vote_p50_ms']:.1f} | {r['vote_p99_ms']:.1f} | "
              f"{r['steady_p99_ms']:.1f} | {len(r['errors'])} |")
    for backend, r in rows:
        for error in r["errors"][:5]:
            print(f"{backend}: {error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

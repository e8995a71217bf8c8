#!/usr/bin/env python
"""`serve --ray` (search.index.fanout): what a server searching shards on a Ray cluster
costs to build and to ask, and what it finds, against exact search in process.

    .venv/bin/python bench/serve_shards_bench.py [--n 200000] [--cpus 2]

Clip-like vectors (bench/vectors.py) with held-out queries drawn from the same library;
the product's own build (train once, one shard a CPU filled by Ray tasks, float16 vectors
beside them, nprobe tuned to --target) and its search (fan-out, re-ranking 100 with the
stored vectors). Prints build time, the tuned nprobe, recall@10 of held-out queries
against exact search, and the median single-query latency of both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine  # noqa: E402
from vectors import clip_like  # noqa: E402

from search.index import fanout  # noqa: E402

QUERIES = 300


def median_ms(search, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        started = time.perf_counter()
        search(q)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--cpus", type=int, default=2, help="the local Ray instance's CPUs")
    ap.add_argument("--target", type=float, default=0.95)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    both = clip_like(args.n + QUERIES, rng)
    vectors, queries = both[: args.n], both[args.n :]
    ids = np.arange(args.n, dtype=np.int64) * 2 + 1  # ids are not positions
    exact = [ids[np.argsort(-(vectors @ q))[:10]] for q in queries]
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            g = fanout.build(ray, ids, vectors, Path(tmp) / "g", args.target)
            build_s = time.perf_counter() - started
            index = fanout.ShardedIndex(g)
            found = [index.search(q, 10)[1] for q in queries]
            recall = np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, exact)])
            served = median_ms(lambda q: index.search(q, 10), queries[:100])
            # The next generation after an index run added 1%: the quantisers reused.
            more = clip_like(args.n // 100, rng)
            started = time.perf_counter()
            g.fan.close()
            later = fanout.build(
                ray,
                np.concatenate([ids, ids[-1] + 2 * np.arange(1, len(more) + 1)]),
                np.concatenate([vectors, more]),
                Path(tmp) / "g2",
                args.target,
                previous=g,
            )
            next_s = time.perf_counter() - started
            later.fan.close()
    finally:
        ray.shutdown()
    alone = median_ms(lambda q: np.argsort(-(vectors @ q))[:10], queries[:100])
    print(f"Machine: {machine()}")
    print(
        f"{args.n} vectors, {args.cpus} shards: build {build_s:.1f} s (nprobe {g.nprobe}, "
        f"the next generation with 1% more: {next_s:.1f} s, nprobe {later.nprobe}; "
        f"tuning recall@10 {g.recall_at_10:.3f}); held-out queries recall@10 {recall:.3f}; "
        f"per query {served:.2f} ms served from shards, {alone:.2f} ms exact in process "
        "(medians of 100)"
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Sharded IVF-PQ (search.index.sharded): one trained index filled in shards by Ray tasks,
merged on disk and fanned out over shard actors, against the same index filled in one
process and against exact search.

    .venv/bin/python bench/shard_bench.py [--n 1000000] [--shards 4] [--nlist 1024]

Prints, for each nprobe: whether the merged and the fanned-out top-10 equal the one-process
index's (ties in score aside), recall@10 against exact search with and without re-ranking
the best candidates by the stored vectors (a float16 memory map on disk), and per-query
latency (median of single queries) in process and through the fan-out.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from vectors import clip_like  # noqa: E402

from search.index import sharded  # noqa: E402


def same_rows(a: tuple, b: tuple) -> float:
    """Share of query rows whose top-k equal (scores equal; ids equal wherever a score is
    not tied within the row)."""
    (sa, ia), (sb, ib) = a, b
    same = 0
    for row_sa, row_sb, row_a, row_b in zip(sa, sb, ia, ib, strict=True):
        if not np.array_equal(row_sa, row_sb):
            continue
        unique = [i for i, s in enumerate(row_sa) if list(row_sa).count(s) == 1]
        same += [row_a[i] for i in unique] == [row_b[i] for i in unique]
    return same / len(sa)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def per_query_ms(search, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        started = time.perf_counter()
        search(q[None])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--pq", type=int, default=64, help="PQ sub-quantisers (bytes a vector)")
    ap.add_argument("--train", type=int, default=100_000, help="training sample")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--timed", type=int, default=200, help="single queries timed")
    ap.add_argument("--nprobes", default="16,32,64")
    ap.add_argument("--rerank", default="100,200", help="candidates re-ranked")
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; faiss {faiss.__version__},"
        f" ray {ray.__version__}"
    )
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    data = clip_like(args.n + args.queries, rng)
    vectors, queries = data[: args.n], np.ascontiguousarray(data[args.n :])
    ids = np.arange(args.n, dtype=np.int64)
    print(f"{args.n:,} clip-like vectors made in {time.perf_counter() - started:.1f} s")

    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, 10)
    del exact

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stored = np.lib.format.open_memmap(folder / "vectors.npy", "w+", np.float16, vectors.shape)
        stored[:] = vectors
        stored.flush()

        started = time.perf_counter()
        sample = vectors[rng.permutation(args.n)[: args.train]]
        trained = sharded.train(sample, args.nlist, args.pq)
        print(
            f"trained IVF{args.nlist},PQ{args.pq}x8 on {args.train:,} in"
            f" {time.perf_counter() - started:.1f} s"
        )

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            started = time.perf_counter()
            bounds = np.linspace(0, args.n, args.shards + 1).astype(int)
            parts = [(ids[a:b], vectors[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
            shards = sharded.fill_on_ray(ray, trained, parts)
            filled = time.perf_counter() - started
            paths = sharded.write_shards(shards, folder / "shards")
            del shards
            started = time.perf_counter()
            merged = sharded.open_merged(
                sharded.merge_on_disk(trained, paths, folder / "shards"), nprobe=1
            )
            merge_s = time.perf_counter() - started
            print(
                f"filled {args.shards} shards by Ray tasks in {filled:.1f} s;"
                f" merged on disk in {merge_s:.1f} s"
            )

            started = time.perf_counter()
            alone = faiss.clone_index(trained)
            alone.add_with_ids(vectors, ids)
            print(f"the same filled in one process in {time.perf_counter() - started:.1f} s")

            fan = sharded.FanOut(ray, paths, nprobe=1)
            timed = queries[: args.timed]
            for nprobe in [int(p) for p in args.nprobes.split(",")]:
                for index in (merged, alone):
                    faiss.extract_index_ivf(index).nprobe = nprobe
                ray.get([a.search.remote(queries[:1], 10) for a in fan.actors])  # warm
                for actor in fan.actors:
                    ray.get(actor.tune.remote(nprobe))
                one = alone.search(queries, 10)
                on_disk = merged.search(queries, 10)
                answer = fan.search(queries, 10)
                line = (
                    f"nprobe {nprobe}: top-10 as one process: merged {same_rows(on_disk, one):.3f},"
                    f" fan-out {same_rows((answer.scores, answer.ids), one):.3f};"
                    f" recall@10 {recall(on_disk[1], truth):.3f}"
                )
                for k in [int(r) for r in args.rerank.split(",") if r]:
                    _, candidates = merged.search(queries, k)
                    _, best = sharded.rerank(
                        queries, candidates, lambda i: stored[i].astype(np.float32), 10
                    )
                    line += f", re-ranking {k}: {recall(best, truth):.3f}"
                in_process = per_query_ms(lambda q: merged.search(q, 10), timed)
                fanned = per_query_ms(lambda q: fan.search(q, 10), timed)
                line += (
                    f"; per query, median of {len(timed)}: in process {in_process:.2f} ms,"
                    f" fan-out {fanned:.2f} ms (+{fanned - in_process:.2f})"
                )
                print(line, flush=True)
        finally:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

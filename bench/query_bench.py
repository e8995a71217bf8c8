"""Query latency (issue 5): text encoding and index search, exact against approximate, for
10k, 100k and 1M stored vectors.

Vectors: synthetic unit vectors of dim 512 (bench/vectors.py): by default shaped like CLIP
image embeddings of a photo library; `--data separated` is a harder stress case. Queries
are fresh draws from the same distribution. Index time is `VectorIndex.search` for one
query, top 10, as `Searcher` calls it (the catalog lookup of the hits is not included).
Text time is `encode_texts` of one short query on the real ViT-B-32 architecture with
random weights, on CPU, at the precision `search` picks.

Run: nice -n 19 .venv/bin/python bench/query_bench.py   (about 15 minutes on 2 cores, most
of it building the 1M-vector HNSW graph; `--sizes 10000,100000` for a quick look)
Writes its figures into bench/BENCHMARKS.md: section "query" (`--data separated`:
"query-separated").
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from report import machine, write_section  # noqa: E402
from vectors import DATASETS  # noqa: E402

from search.index.ann import IndexPolicy, build_index, recall_at_10  # noqa: E402
from search.index.vectors import VectorIndex  # noqa: E402

TEXTS = ["a dog asleep on a red sofa", "sunset over the harbour", "kids at the beach in 2019"]


def timed(fn, inputs) -> np.ndarray:
    """Milliseconds per call, one call per input: wall clock in row 0, and in row 1 the
    process's CPU time, which other programs on a shared machine do not inflate (it sums
    all threads, so it overstates a call that runs on several)."""
    times = []
    for x in inputs:
        w0, c0 = time.perf_counter(), time.process_time()
        fn(x)
        times.append((time.perf_counter() - w0, time.process_time() - c0))
    return np.array(times).T * 1000


def pct(ms: np.ndarray) -> tuple[float, float]:
    """p50 and p99 of wall-clock times."""
    return float(np.percentile(ms[0], 50)), float(np.percentile(ms[0], 99))


def cpu50(ms: np.ndarray) -> float:
    return float(np.percentile(ms[1], 50))


def text_latency(runs: int) -> tuple[np.ndarray, str]:
    from search.models.encoder import load_encoder
    from search.models.spec import resolve

    with tempfile.TemporaryDirectory(prefix="imgsearch-qbench-") as tmp:
        work = Path(tmp)  # random weights: nothing is downloaded or kept
        source = resolve("ViT-B-32", "none", models_dir=work / "models", cache_dir=work / "cache")
        encoder = load_encoder(source, "cpu")
    for text in TEXTS:  # warm-up
        encoder.encode_texts([text])
    texts = [TEXTS[i % len(TEXTS)] for i in range(runs)]
    return timed(lambda t: encoder.encode_texts([t]), texts), encoder.precision


def bench_size(n: int, args, rng) -> tuple[list[dict], dict, list[dict]]:
    """Rows for the latency table, the data's cosine profile, and (for the largest size)
    filtered-search rows."""
    vectors = DATASETS[args.data](n + args.recall_queries, rng)
    vectors, queries = vectors[:n], vectors[n:]
    ids = np.arange(1, n + 1, dtype=np.int64)
    timed_queries = queries[: args.timed_queries]

    t0 = time.perf_counter()
    exact = VectorIndex.build(ids, vectors)
    exact_build = time.perf_counter() - t0
    scores, truth = exact.search_many(queries, 10)
    profile = {
        "n": n,
        "nearest": float(np.median(scores[:, 0])),
        "tenth": float(np.median(scores[:, 9])),
        "random": float(np.median(vectors[:1000] @ vectors[1000:2000].T)),
    }
    ms = timed(lambda q: exact.search(q, 10), timed_queries[: args.exact_timed_queries])
    rows = [
        {"n": n, "index": "exact (flat)", "build": exact_build, "params": "-", "recall": 1.0}
        | {"build_recall": None, "ms": ms, "load": os.getloadavg()[0]}
    ]
    print(f"{n}: exact p50 {pct(ms)[0]:.2f} ms", file=sys.stderr)

    t0 = time.perf_counter()
    built = build_index(ids, vectors, IndexPolicy(ann_threshold=0))
    ann_build = time.perf_counter() - t0
    ann = built.index
    _, found = ann.search_many(queries, 10)
    ms = timed(lambda q: ann.search(q, 10), timed_queries)
    params = ", ".join(f"{k}={v}" for k, v in built.params.items())
    rows.append(
        {"n": n, "index": ann.kind, "build": ann_build, "params": params}
        | {"recall": recall_at_10(found, truth), "build_recall": built.recall_at_10}
        | {"ms": ms, "load": os.getloadavg()[0]}
    )
    print(f"{n}: {params} p50 {pct(ms)[0]:.2f} ms", file=sys.stderr)

    filtered = []
    if n == max(args.sizes):
        qs = timed_queries[: args.exact_timed_queries]
        for share in (0.01, 0.2):
            allowed = np.sort(rng.choice(ids, int(n * share), replace=False))
            exact_ms = timed(lambda q, a=allowed: exact.search(q, 10, a), qs)
            ann_ms = timed(lambda q, a=allowed: ann.search(q, 10, a), qs)
            want = np.array([exact.search(q, 10, allowed)[1] for q in qs])
            got = np.array([ann.search(q, 10, allowed)[1] for q in qs])
            filtered.append(
                {"share": share, "exact_ms": exact_ms, "ann_ms": ann_ms}
                | {"recall": recall_at_10(got, want), "load": os.getloadavg()[0]}
            )
    return rows, profile, filtered


def render(results: dict, args) -> str:
    text50, text99 = pct(results["text_ms"])
    lines = [
        f"## Query latency (issue 5): `bench/query_bench.py --data {args.data}`",
        "",
        f"Machine: {machine()}. FAISS threads: {faiss_threads()}.",
        f"Load average (1/5/15 min) before: {fmt_load(results['load_before'])}; after: "
        f"{fmt_load(results['load_after'])}. The 2 cores were shared with other work, so "
        "timings are upper bounds; each row's load is the 1-minute figure when it was taken.",
        "",
        f"Vectors: `{args.data}` from bench/vectors.py, dim 512. Median cosine of a query to "
        "its nearest / 10th nearest / a random library vector: "
        + "; ".join(
            f"{p['n']:,}: {p['nearest']:.2f} / {p['tenth']:.2f} / {p['random']:.2f}"
            for p in results["profiles"]
        )
        + ".",
        "",
        f"Text encoding (ViT-B-32 architecture, random weights, CPU, {results['precision']}, "
        f"one short query, {results['text_ms'].shape[1]} runs): p50 {text50:.1f} ms, "
        f"p99 {text99:.1f} ms (CPU time p50 {cpu50(results['text_ms']):.1f} ms, both threads).",
        "",
        "Index time: one query, top 10, through `VectorIndex.search`. Recall@10: the "
        f"approximate top 10 against exact search for {args.recall_queries} fresh queries; "
        "in brackets what `search.index.ann` measured while tuning (1,000 library vectors held out "
        "of the index until then) and records in the manifest. Build time includes tuning. "
        "CPU: the process's CPU time per query, p50 (a single-threaded search's latency "
        "on an idle core).",
        "",
        "| vectors | index | build (s) | tuned parameters | recall@10 (at build) | "
        "index p50 (ms) | index p99 (ms) | index CPU p50 (ms) | text + index p50 (ms) | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        p50, p99 = pct(r["ms"])
        recall = f"{r['recall']:.3f}"
        if r["build_recall"] is not None:
            recall += f" ({r['build_recall']:.3f})"
        lines.append(
            f"| {r['n']:,} | {r['index']} | {r['build']:.1f} | {r['params']} | {recall} | "
            f"{p50:.2f} | {p99:.2f} | {cpu50(r['ms']):.2f} | {text50 + p50:.1f} | "
            f"{r['load']:.1f} |"
        )
    if results["filtered"]:
        lines += [
            "",
            f"Filtered search on {max(args.sizes):,} vectors (`allowed` ids, as "
            "`--path-prefix`/`--after` give; a random share of the library), "
            f"{args.exact_timed_queries} queries. Small shares are searched exactly over just "
            "the allowed vectors; larger ones walk the graph with efSearch widened in "
            "proportion.",
            "",
            "| allowed share | exact p50 / p99 (ms) | approximate p50 / p99 (ms) | "
            "recall@10 vs exact filtered | load |",
            "|---|---|---|---|---|",
        ]
        for f in results["filtered"]:
            e50, e99 = pct(f["exact_ms"])
            a50, a99 = pct(f["ann_ms"])
            lines.append(
                f"| {f['share']:.0%} | {e50:.2f} / {e99:.2f} | {a50:.2f} / {a99:.2f} | "
                f"{f['recall']:.3f} | {f['load']:.1f} |"
            )
    sizes = ",".join(str(s) for s in args.sizes)
    lines += [
        "",
        f"Reproduce: `nice -n 19 .venv/bin/python bench/query_bench.py --data {args.data} "
        f"--sizes {sizes}` ({results['wall'] / 60:.0f} minutes here).",
    ]
    return "\n".join(lines)


def faiss_threads() -> int:
    import faiss

    return faiss.omp_get_max_threads()


def fmt_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=sorted(DATASETS), default="clip-like")
    ap.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10_000, 100_000, 1_000_000],
    )
    ap.add_argument("--timed-queries", type=int, default=500)
    ap.add_argument("--exact-timed-queries", type=int, default=100)
    ap.add_argument("--recall-queries", type=int, default=1000)
    ap.add_argument("--text-runs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md alone")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    t0 = time.perf_counter()
    results: dict = {"load_before": os.getloadavg(), "rows": [], "profiles": [], "filtered": []}
    rng = np.random.default_rng(args.seed)
    results["text_ms"], results["precision"] = text_latency(args.text_runs)
    for n in args.sizes:
        rows, profile, filtered = bench_size(n, args, rng)
        results["rows"] += rows
        results["profiles"].append(profile)
        results["filtered"] += filtered
    results["load_after"] = os.getloadavg()
    results["wall"] = time.perf_counter() - t0
    body = render(results, args)
    print(body)
    if not args.no_write:
        write_section("query" if args.data == "clip-like" else f"query-{args.data}", body)


if __name__ == "__main__":
    main()

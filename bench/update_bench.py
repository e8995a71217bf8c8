"""Keeping a large approximate index current: a sync that changes a small part of the
library updates the index (IndexStore._updated) instead of building it anew.

A catalog of N clip-like vectors (bench/vectors.py) gets an HNSW index; then a day's
changes (0.5% of the library removed, 0.5% re-embedded, 1% new) and the index is brought
up to date twice: updated in place, and built anew, timed through IndexStore.rebuild.
Recall@10 of both against exact search over the catalog's vectors, 500 fresh queries.

Run: .venv/bin/python bench/update_bench.py --n 1000000   (about 10 minutes on 2 cores)
Writes bench/BENCHMARKS.md section "update".
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from report import machine, write_section  # noqa: E402
from vectors import DIM, clip_like  # noqa: E402

from search.catalog.records import ImageData  # noqa: E402
from search.catalog.store import Catalog  # noqa: E402
from search.index.store import IndexStore  # noqa: E402
from search.index.vectors import VectorIndex  # noqa: E402
from search.models.spec import ModelSpec  # noqa: E402

MODEL = "bench/random:0"
BATCH = 20_000


def image(root: int, i: int) -> ImageData:
    when = datetime(2020, 1, 1)
    return ImageData(root, f"/photos/{i:08}.jpg", 10, 1, f"h{i}", 64, 64, None, when)


def recall(index: VectorIndex, exact: VectorIndex, queries: np.ndarray) -> float:
    _, truth = exact.search_many(queries, 10)
    hits = [len(np.intersect1d(index.search(q, 10)[1], t)) for q, t in zip(queries, truth)]
    return float(np.mean(hits)) / 10


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench/update"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n, removed_n, changed_n, added_n = args.n, args.n // 200, args.n // 200, args.n // 100
    vecs = clip_like(n + changed_n + added_n + 500, rng)
    library, fresh, queries = np.split(vecs, [n, n + changed_n + added_n])

    catalog = Catalog.open(args.work / "catalog.db")
    catalog.ensure_model(MODEL, ModelSpec("bench", "none"), DIM)
    root = catalog.add_root("/photos").id
    ids: list[int] = []
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        ids += catalog.write_batch(
            MODEL, [image(root, i) for i in range(start, stop)], library[start:stop]
        )
    fill_s = time.perf_counter() - t0
    store = IndexStore(catalog, args.work / "index")
    t0 = time.perf_counter()
    first = store.rebuild(MODEL)
    first_s = time.perf_counter() - t0
    print(f"catalog {fill_s:.0f} s, first build {first_s:.0f} s: {first}", flush=True)

    # The day's changes: removals, re-embedded files (same paths), new files.
    catalog.remove_images(ids[:removed_n])
    again = range(removed_n, removed_n + changed_n)
    catalog.write_batch(MODEL, [image(root, i) for i in again], fresh[:changed_n])
    catalog.write_batch(MODEL, [image(root, i) for i in range(n, n + added_n)], fresh[changed_n:])
    all_ids, all_vecs = catalog.vectors(MODEL)
    exact = VectorIndex.build(all_ids, all_vecs)
    del all_vecs

    t0 = time.perf_counter()
    updated = store.rebuild(MODEL)
    update_s = time.perf_counter() - t0
    updated_recall = recall(store.get(MODEL)[1], exact, queries)
    print(f"update {update_s:.1f} s: {updated}, recall {updated_recall:.3f}", flush=True)
    t0 = time.perf_counter()
    store.rebuild(MODEL, full=True)
    rebuild_s = time.perf_counter() - t0
    rebuilt_recall = recall(store.get(MODEL)[1], exact, queries)
    catalog.close()

    body = f"""## Keeping a large index current (issue 5): `bench/update_bench.py`

Machine: {machine()}. Load average {os.getloadavg()[0]:.2f} at the end.
{n:,} clip-like vectors ({DIM}-d) in a catalog (filled in {fill_s:.0f} s), HNSW index
built in {first_s:.0f} s ({first.params}). Then one sync's worth of changes:
{removed_n:,} images removed, {changed_n:,} re-embedded, {added_n:,} added.
Recall@10 against exact search over the catalog, 500 fresh queries.
Reproduce: `.venv/bin/python bench/update_bench.py --n {n}`.

| bringing the index up to date | time (s) | recall@10 | blanked nodes |
|---|---|---|---|
| updated in place (the default for small changes) | {update_s:.1f} | {updated_recall:.3f} | {updated.params.get("blanked", 0):,} |
| built anew (`IndexStore.rebuild(full=True)`, and past 10% changed) | {rebuild_s:.1f} | {rebuilt_recall:.3f} | 0 |
"""
    print(body)
    write_section("update", body)


if __name__ == "__main__":
    main()

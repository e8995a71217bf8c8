"""Hybrid search benchmark (issue 13, Must-shows 2 and 5).

Quality: a generated library (indexer/synthetic.py shapes) laid out as a person's photos
are: some in place folders ("2019 Lisbon/", "Kyoto 2018/"), the rest in "misc/"; some
with an event keyword embedded as XMP dc:subject ("wedding"); a tenth with their caption
typed in as a user caption. Indexed by the real sync with a model trained by the project's
trainer. Folder and keyword words are the only evidence for their photos (the pixels are
random shapes), so semantic search cannot find them: hybrid precision@10 should be 1.0.
Content queries ("red circle") are scored by recall@10 against what was drawn, semantic
against hybrid (no harm: within 0.02).

Latency: a 100,000-image catalog (rows written through the catalog, vectors random, names
and folders from a word list), every query run in semantic and in hybrid mode in process;
p50 of each and the difference (should be ≤ 5 ms).

Run: .venv/bin/python bench/hybrid_bench.py        (about 10 minutes on 2 cores)
     --model DIR: a model saved by `imgsearch train` instead of training one here.
Writes its figures into bench/BENCHMARKS.md (section "hybrid") unless --no-write.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from relevance_bench import queries  # noqa: E402
from report import machine, write_section  # noqa: E402

from indexer.synthetic import generate  # noqa: E402
from search.library import Library  # noqa: E402
from search.query.searcher import SearchRequest  # noqa: E402
from search.settings import Settings  # noqa: E402

PLACES = ("2019 Lisbon", "2020 Porto", "Berlin trip", "Kyoto 2018", "Oslo winter", "Lima 2022")
PLACE_WORD = {p: p.split()[1] if p[0].isdigit() else p.split()[0] for p in PLACES}
EVENTS = ("wedding", "birthday", "graduation", "marathon", "picnic")
PER_FOLDER, PER_EVENT = 25, 20


def train_model(work: Path, n: int, epochs: int) -> Path:
    from train_sweep import pair_set, run_trainer, tiny_source

    from search.models.encoder import load_encoder

    samples = generate(work / "train", n, seed=0)
    source = tiny_source(work)
    pairs = pair_set(samples, load_encoder(source, "cpu", "fp32"))
    run_trainer(source, pairs, work, epochs=epochs, batch_size=128, seed=0)
    return work / "models" / "sweep-trained"


def build_library(work: Path, n: int) -> tuple[Path, dict, list]:
    """The photos as files; returns the root, each file's truth and the typed captions."""
    samples = generate(work / "drawn", n, seed=7)
    rng = np.random.default_rng(7)
    order = rng.permutation(n)
    root = work / "photos"
    truth: dict[str, dict] = {}
    captions = []
    for rank, k in enumerate(order):
        s = samples[k]
        folder = PLACES[rank // PER_FOLDER] if rank < PER_FOLDER * len(PLACES) else "misc"
        event = EVENTS[int(rng.integers(len(EVENTS)))] if rng.random() < 0.07 else None
        path = root / folder / f"IMG_{k:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {}
        if event:
            extra["xmp"] = (
                '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description><dc:subject>'
                f"<rdf:Bag><rdf:li>{event}</rdf:li></rdf:Bag></dc:subject></rdf:Description>"
                "</rdf:RDF></x:xmpmeta>"
            ).encode()
        Image.open(s.path).convert("RGB").save(path, "JPEG", quality=92, **extra)
        truth[str(path)] = {"attrs": s.attrs, "folder": folder, "event": event}
        if rng.random() < 0.1:
            captions.append((str(path), s.caption))
    return root, truth, captions


def quality(args, work: Path) -> dict:
    model = args.model or train_model(work, args.train, args.epochs)
    root, truth, captions = build_library(work, args.library)
    settings = Settings(home=work / "home", model=str(model), device="cpu", engine="torch")
    from indexer.sync.run import sync

    with Library(settings) as lib:
        sync(lib, [str(root)], progress=False)
        ids = {m.path: m.id for m in lib.catalog.images(range(1, 10 * args.library)).values()}
        by_id = {ids[p]: t for p, t in truth.items()}

        def top(text: str, mode: str) -> list[int]:
            req = SearchRequest(text=text, k=10, mode=mode)
            return [h.id for h in lib.searcher.search(req).hits]

        words = {PLACE_WORD[p]: (lambda t, p=p: t["folder"] == p) for p in PLACES}
        words |= {e: (lambda t, e=e: t["event"] == e) for e in EVENTS}
        precision = {
            mode: statistics.mean(
                sum(is_true(by_id[i]) for i in top(w.lower(), mode)) / 10
                for w, is_true in words.items()
            )
            for mode in ("semantic", "hybrid")
        }

        def recall(mode: str) -> float:
            per_query = []
            for text, holds in queries().items():
                relevant = {i for i, t in by_id.items() if holds(t["attrs"])}
                if relevant:
                    found = len(relevant & set(top(text, mode)))
                    per_query.append(found / min(10, len(relevant)))
            return statistics.mean(per_query)

        # Content queries before and after the typed captions: folder names and keywords
        # alone must not harm them; captions are words about the content, and may help.
        plain = {mode: recall(mode) for mode in ("semantic", "hybrid")}
        for path, text in captions:
            lib.catalog.add_caption(ids[path], text)
        captioned = {mode: recall(mode) for mode in ("semantic", "hybrid")}
    return {
        "precision": precision,
        "recall": plain,
        "recall_captioned": captioned,
        "word_queries": len(words),
        "content_queries": len(queries()),
        "captions": len(captions),
    }


def latency(args, work: Path) -> dict:
    """p50 per mode on a 100k catalog, in process (the model loaded, the index warm)."""
    from search.catalog.records import ImageData

    settings = Settings(
        home=work / "big", model="imgsearch-tiny", pretrained="none", device="cpu", engine="torch"
    )
    rng = np.random.default_rng(0)
    places = [f"{w} {y}" for w in PLACE_WORD.values() for y in range(2000, 2030)]
    with Library(settings) as lib:
        from search.models.encoder import load_encoder

        source = lib.resolve(lib.active_spec())
        dim = load_encoder(source, "cpu").dim
        lib.catalog.ensure_model(source.model_id, source.spec, dim)
        root = lib.catalog.add_root("/photos")
        now = datetime(2024, 1, 1)
        t0 = time.perf_counter()
        for start in range(0, args.big, 5000):
            images = [
                ImageData(
                    root.id,
                    f"/photos/{places[i % len(places)]}/IMG_{i:06d}.jpg",
                    1000,
                    i,
                    hashlib.sha256(str(i).encode()).hexdigest(),
                    640,
                    480,
                    None,
                    now,
                )
                for i in range(start, min(start + 5000, args.big))
            ]
            vectors = rng.normal(size=(len(images), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            lib.catalog.write_batch(source.model_id, images, vectors)
        write_s = time.perf_counter() - t0
        lib.store.rebuild(source.model_id)
        lib.set_serving(source.model_id)
        # Content queries match no name or folder; a city is in a sixth of the folders (about
        # 16,700 images), a city and a year in one (about 560).
        groups = {
            "content": list(queries())[:30],
            "one broad word": [w.lower() for w in PLACE_WORD.values()],
            "two words": [f"{w.lower()} {2000 + 5 * k}" for k, w in enumerate(PLACE_WORD.values())],
        }
        texts = [t for group in groups.values() for t in group]
        times: dict[tuple[str, str], list[float]] = {}
        for mode in ("semantic", "hybrid"):
            for text in texts[:5]:  # warm: encoder, index, statement caches
                lib.searcher.search(SearchRequest(text=text, k=10, mode=mode))
            for group, members in groups.items():
                for text in members * 3:
                    t = time.perf_counter()
                    lib.searcher.search(SearchRequest(text=text, k=10, mode=mode))
                    times.setdefault((mode, group), []).append((time.perf_counter() - t) * 1000)
        ms = {
            mode: statistics.median(v for (m, _), vs in times.items() if m == mode for v in vs)
            for mode in ("semantic", "hybrid")
        }
        by_group = {f"{m} / {g}": statistics.median(v) for (m, g), v in times.items()}
        kind = lib.store.get(source.model_id)[1].kind
    return {
        "ms": ms,
        "groups": by_group,
        "n": args.big,
        "queries": len(texts) * 3,
        "write_s": write_s,
        "kind": kind,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", type=int, default=1500)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgsearch-hybrid-"))
    q = None if args.skip_quality else quality(args, work)
    print("quality", q, flush=True)
    lat = latency(args, work)
    print("latency", lat, flush=True)
    if not args.no_write and q is not None:
        write_section("hybrid", report(q, lat, args))


def report(q: dict, lat: dict, args) -> str:
    trained = (
        f"--model {args.model}"
        if args.model
        else (
            f"the tiny architecture trained by the project's trainer ({args.train} pairs, "
            f"{args.epochs} epochs)"
        )
    )
    return "\n".join(
        [
            "## Hybrid search (issue 13): `bench/hybrid_bench.py`",
            "",
            f"Machine: {machine()}. Reproduce: `.venv/bin/python bench/hybrid_bench.py`.",
            "",
            f"Library: {args.library} generated photos indexed by the real sync with {trained};",
            f"{PER_FOLDER} in each of {len(PLACES)} place folders, about 7% with an event keyword",
            f"in XMP dc:subject, {q['captions']} with their caption typed in.",
            "",
            "| | semantic | hybrid |",
            "|---|---|---|",
            f"| precision@10, {q['word_queries']} folder/keyword words (only evidence: the words) | "
            f"{q['precision']['semantic']:.3f} | {q['precision']['hybrid']:.3f} |",
            f"| recall@10, {q['content_queries']} content queries (truth: what was drawn) | "
            f"{q['recall']['semantic']:.3f} | {q['recall']['hybrid']:.3f} |",
            f"| the same, after {q['captions']} captions were typed in | "
            f"{q['recall_captioned']['semantic']:.3f} | {q['recall_captioned']['hybrid']:.3f} |",
            "",
            f"Latency, {lat['n']:,} images ({lat['kind']} index, catalog rows written through the",
            f"catalog with its lexical triggers in {lat['write_s']:.0f} s), {lat['queries']} text",
            "queries in process, p50: "
            f"semantic {lat['ms']['semantic']:.2f} ms, hybrid {lat['ms']['hybrid']:.2f} ms "
            f"({lat['ms']['hybrid'] - lat['ms']['semantic']:+.2f} ms). By kind of query (p50, ms; a",
            "broad word is a city named in a sixth of the folders, about 16,700 images: past 2,000",
            "matches a word's images are read unranked and ordered by cosine, since bm25 over all",
            "of them was most of the time (19.2 ms before, on 2026-12-04); two words, a city and a",
            "year, about 560):",
            "",
            "| query | semantic | hybrid |",
            "|---|---|---|",
            *[
                f"| {g} | {lat['groups'][f'semantic / {g}']:.2f} | {lat['groups'][f'hybrid / {g}']:.2f} |"
                for g in ("content", "one broad word", "two words")
            ],
        ]
    )


if __name__ == "__main__":
    main()

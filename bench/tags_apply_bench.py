"""Applying tags at scale (issue 14, Must-show 5): 50 tags over 100k stored vectors.

A catalog of 100k CLIP-shaped 512-d vectors (bench/vectors.py), 40 zero-shot tags (their
prompt embeddings stood in for by directions of the library's own topics, so each holds a
few percent of it, as "beach" or "dog" would) and 10 taught tags (a linear probe on 10
examples each). Timed, in process, as the end of an index run does it
(search.tags.tagger.Tagger.apply on every stale tag): the first application of all 50,
and again after 1,000 new images arrived (every tag is then stale: new vectors). The
zero-shot thresholds are calibrated as in production against 2,000 typed captions and
4,000 more known ones (a model's training captions), which describe 5,000 other images.
Run: .venv/bin/python bench/tags_apply_bench.py   (a minute or two; --n for another size)
Writes its figures into bench/BENCHMARKS.md (section "tags-apply") unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from report import machine, write_section  # noqa: E402
from vectors import DIM, clip_like  # noqa: E402

from search.catalog.records import ImageData, TagScore  # noqa: E402
from search.catalog.store import Catalog  # noqa: E402
from search.index.store import IndexStore  # noqa: E402
from search.models.spec import ModelSpec  # noqa: E402
from search.tags import calibration  # noqa: E402
from search.tags.tagger import Tagger, index_vectors  # noqa: E402

MODEL = "bench/random:0"
BATCH = 20_000
PROMPT_TAGS, PROBE_TAGS = 40, 10
TYPED, TRAINED = 2_000, 4_000  # captions typed for images; a model's training captions


def image(root: int, i: int) -> ImageData:
    return ImageData(
        root, f"/photos/{i:08}.jpg", 10, 1, f"h{i}", 64, 64, None, datetime(2020, 1, 1)
    )


def topic(k: int) -> str:
    return f"topic {chr(97 + k // 26)}{chr(97 + k % 26)}x"  # letters: the words a tag matches


def add_captions(catalog, ids, offsets, directions, rng):
    """TYPED images get a caption naming their nearest topic, typed into the catalog; the
    library knows those and TRAINED training captions naming a topic, with stand-in text
    embeddings (the topic's direction plus noise). Returns (known texts, their vectors)."""
    typed = rng.choice(len(ids), TYPED, replace=False)
    nearest = np.argmax(offsets[typed] @ directions.T, axis=1)
    for i, k in zip(typed, nearest):
        catalog.add_caption(int(ids[i]), f"a photo of {topic(int(k))}")
    named = [*range(len(directions)), *rng.integers(0, len(directions), TRAINED).tolist()]
    texts = [f"a photo of {topic(k)}" for k in range(len(directions))]
    texts += [f"{topic(k)} seen again {j}" for j, k in enumerate(named[len(directions) :])]
    vectors = directions[named] + rng.normal(scale=0.03, size=(len(named), directions.shape[1]))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return texts, vectors.astype(np.float32)


def no_encoder(_model_id: str):
    raise AssertionError("every prompt's embedding is stored: no text tower needed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench/tags-apply"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    rng = np.random.default_rng(0)
    vecs = clip_like(args.n + 2000 * args.repeats, rng)
    library, fresh = vecs[: args.n], vecs[args.n :]

    catalog = Catalog.open(args.work / "catalog.db")
    catalog.ensure_model(MODEL, ModelSpec("bench", "none"), DIM)
    root = catalog.add_root("/photos").id
    ids: list[int] = []
    for start in range(0, args.n, BATCH):
        stop = min(args.n, start + BATCH)
        ids += catalog.write_batch(
            MODEL, [image(root, i) for i in range(start, stop)], library[start:stop]
        )
    store = IndexStore(catalog, args.work / "index")
    store.rebuild(MODEL)
    tags = catalog.tags
    revision = catalog.model_revision(MODEL)
    centre = library.mean(axis=0)
    directions = []
    for k in range(PROMPT_TAGS):
        # A prompt embedding lies apart from the images (CLIP's modality gap): a topic's
        # direction, not an image vector; stored as if a text tower had made it.
        tag = tags.define(topic(k), "prompt", (topic(k),))
        offset = library[rng.integers(args.n)] - centre
        direction = (offset / np.linalg.norm(offset)).astype(np.float32)
        directions.append(direction)
        stored = TagScore(direction, 0.0, 1.0, tag.version, revision - 1)
        tags.apply(MODEL, [(tag.id, stored, np.zeros(0, np.int64), np.zeros(0))])
    taught = {}
    for k in range(PROBE_TAGS):
        tags.define(f"taught {k}", "probe", ())
        seed_image = library[rng.integers(args.n)]
        taught[f"taught {k}"] = [ids[i] for i in np.argsort(-(library @ seed_image))[:10]]
        tags.teach(f"taught {k}", taught[f"taught {k}"], [])
    known = add_captions(catalog, ids, library - centre, np.stack(directions), rng)
    tagger = Tagger(catalog, no_encoder, index_vectors(store), lambda _model: known)

    t0 = time.perf_counter()
    first = tagger.apply(MODEL)
    first_s = time.perf_counter() - t0
    assert len(first) == PROMPT_TAGS + PROBE_TAGS
    held = [a.count for a in first]
    again, refit = [], []
    for r in range(2 * args.repeats):
        new = range(args.n + 1000 * r, args.n + 1000 * (r + 1))
        catalog.write_batch(MODEL, [image(root, i) for i in new], fresh[1000 * r : 1000 * (r + 1)])
        store.rebuild(MODEL)  # as the index run does before it applies the tags
        if r % 2:
            # Every probe taught again with the same examples: fitted afresh, as in the
            # first application (or a model switch), with old rows to replace besides.
            for name, yes in taught.items():
                tags.teach(name, yes, [])
        t0 = time.perf_counter()
        applied = tagger.apply(MODEL)
        (refit if r % 2 else again).append(time.perf_counter() - t0)
        assert len(applied) == PROMPT_TAGS + PROBE_TAGS
    catalog.close()
    print(
        f"first {first_s:.2f} s, again {[round(s, 2) for s in again]}, "
        f"probes refitted {[round(s, 2) for s in refit]}",
        flush=True,
    )
    body = f"""## Applying tags at scale (issue 14): `bench/tags_apply_bench.py`

Machine: {machine()}. {args.n:,} stored CLIP-shaped 512-d vectors
in a catalog on local disk; {PROMPT_TAGS} zero-shot tags (stored prompt embeddings) and
{PROBE_TAGS} taught tags (10 examples each); {TYPED:,} captions typed for images and
{TRAINED:,} training captions known. Timed in
process, Tagger.apply on every stale tag, as the end of an index run calls it (after the
index is brought up to date): the model's vectors from the index, score, calibrate each
tag's threshold (zero-shot: against the captions, the untyped images described by their
{calibration.NEAREST} nearest known captions), store the images holding it. The first application fits the 10 probes
(six fits each: the threshold comes from the examples scored out of fold); afterwards a
probe fitted from the same examples is kept, unless it is taught again (the second row
teaches each probe its same 10 examples again before the run: the first application's
work, plus replacing the rows stored before).

| what | wall time |
|---|---|
| first application of all {PROMPT_TAGS + PROBE_TAGS} tags | {first_s:.2f} s |
| again after 1,000 new images, probes refitted (all stale), median of {args.repeats} | {statistics.median(refit):.2f} s |
| again after 1,000 new images (all stale), median of {args.repeats} | {statistics.median(again):.2f} s |

Images per tag: median {int(np.median(held)):,} (min {min(held):,}, max {max(held):,}).
"""
    if not args.no_write:
        write_section("tags-apply", body)


if __name__ == "__main__":
    main()

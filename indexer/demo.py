"""`imgsearch demo`: the whole write and read path, offline, on generated images.

It draws a captioned synthetic set under data/demo, indexes it with the bundled tiny
architecture and prints searches. The tiny model is randomly initialised (no weights can
be downloaded here), so text searches rank by chance until it is trained on the pairs the
demo writes; query-by-example already finds look-alikes, since even random features keep
colour and layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from search.cli import settings_from

DEMO_QUERIES = ["a large red circle", "a small blue square at the top", "a green star"]


def register_demo(sub) -> None:
    p = sub.add_parser("demo", help="offline demo: generate sample images, index, search")
    p.add_argument("--out", default="data/demo", help="where to write it (default data/demo)")
    p.add_argument("-n", type=int, default=400, help="how many images (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from indexer.sync import sync
    from indexer.synthetic import generate, write_pairs
    from search.library import Library
    from search.query import SearchRequest

    out = Path(args.out).absolute()
    images = out / "images"
    samples = generate(images, args.n, seed=args.seed, progress=True)
    write_pairs(samples, out / "pairs.csv")
    print(f"generated {len(samples)} captioned images in {images} (pairs: {out / 'pairs.csv'})")
    settings = settings_from(args, model="imgsearch-tiny", pretrained="none", device="cpu").with_(
        home=Path(args.home).absolute() if args.home else out / "library"
    )
    with Library(settings) as lib:
        report = sync(lib, [str(images)])
        print(
            f"indexed {report.embedded} images in {report.elapsed_s:.1f} s "
            f"({report.images_per_s:.0f} images/s) into {settings.home}, model {report.model_id}"
        )
        by_path = {str(s.path): s.caption for s in samples}
        for query in DEMO_QUERIES:
            result = lib.searcher.search(SearchRequest(text=query, k=3))
            print(f"\nsearch {query!r}  (untrained model: ranks are near chance)")
            for h in result.hits:
                print(f"  {h.score:.3f}  {Path(h.path).name}  “{by_path.get(h.path, '?')}”")
        first = lib.searcher.search(SearchRequest(text=DEMO_QUERIES[0], k=1)).hits[0]
        result = lib.searcher.similar(first.id, k=3)
        print(f"\nimages like {Path(first.path).name} “{by_path.get(first.path)}”:")
        for h in result.hits:
            print(f"  {h.score:.3f}  {Path(h.path).name}  “{by_path.get(h.path, '?')}”")
    print(f"\ntry: imgsearch --home {settings.home} search 'a purple ring'")
    return 0

"""Read-side commands: search, status, failures, models, use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from search.cli import print_json, settings_from


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


# -- search -------------------------------------------------------------------------------
def register_search(sub) -> None:
    p = sub.add_parser("search", help="find images by text, by example, or both")
    p.add_argument("query", nargs="?", help="what to look for, e.g. 'dog asleep on a red sofa'")
    p.add_argument("--image", metavar="FILE", help="query by example: an image file")
    p.add_argument("--like", metavar="ID", type=int, help="images like an indexed image (by id)")
    p.add_argument(
        "--add", action="append", default=[], metavar="Q", help="add a term ('2:cat' weights it)"
    )
    p.add_argument("--sub", action="append", default=[], metavar="Q", help="subtract a term")
    p.add_argument("-k", type=_positive, default=10, help="how many results (default 10)")
    p.add_argument("--offset", type=_non_negative, default=0, help="skip this many results")
    p.add_argument("--path-prefix", metavar="P", help="only images whose path starts with P")
    p.add_argument("--after", metavar="DATE", help="taken on or after DATE (YYYY[-MM[-DD]])")
    p.add_argument("--before", metavar="DATE", help="taken before DATE")
    p.add_argument("--sort", choices=("score", "date"), default="score")
    p.add_argument("--max-megapixels", type=float, help="refuse larger query images")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    _add_json(p)
    p.set_defaults(handler=run_search)


def run_search(args: argparse.Namespace) -> int:
    from search.errors import QueryError
    from search.library import Library
    from search.query import SearchRequest, parse_date

    if args.image and not Path(args.image).is_file():
        raise QueryError(f"--image {args.image}: no such file")
    path_prefix = args.path_prefix
    if path_prefix and Path(path_prefix).expanduser().is_dir():
        path_prefix = str(Path(path_prefix).expanduser().absolute()).rstrip("/") + "/"
    request = SearchRequest(
        text=args.query,
        image=args.image,
        like=args.like,
        add=tuple(args.add),
        sub=tuple(args.sub),
        k=args.k,
        offset=args.offset,
        path_prefix=path_prefix,
        after=parse_date(args.after) if args.after else None,
        before=parse_date(args.before) if args.before else None,
        sort=args.sort,
    )
    settings = settings_from(
        args, device=args.device, precision=args.precision, max_megapixels=args.max_megapixels
    )
    with Library(settings) as lib:
        result = lib.searcher.search(request)
    if args.json:
        print_json(
            {
                "model_id": result.model_id,
                "query": result.query,
                "results": [
                    {
                        "id": h.id,
                        "path": h.path,
                        "score": round(h.score, 6),
                        "width": h.width,
                        "height": h.height,
                        "taken_at": h.taken_at.isoformat() if h.taken_at else None,
                        "date": h.date.isoformat(),
                    }
                    for h in result.hits
                ],
            }
        )
    else:
        for h in result.hits:
            print(f"{h.score:.4f}\t{h.id}\t{h.path}")
    return 0


# -- status and failures --------------------------------------------------------------------
def register_status(sub) -> None:
    p = sub.add_parser("status", help="roots, counts, models and the index")
    _add_json(p)
    p.set_defaults(handler=run_status)


def library_status(lib) -> dict:
    from search.query import SERVING_MODEL

    cat = lib.catalog
    serving = cat.get_setting(SERVING_MODEL)
    manifest = cat.manifest(serving) if serving else None
    return {
        "home": str(lib.settings.home),
        "roots": [
            {"path": r.path, "images": r.image_count, "available": Path(r.path).is_dir()}
            for r in cat.roots()
        ],
        "images": cat.image_count(),
        "failures": len(cat.failures()),
        "active_model": lib.active_spec(),
        "serving_model": serving,
        "index": None
        if manifest is None
        else {
            "model_id": manifest.model_id,
            "kind": manifest.kind,
            "count": manifest.count,
            "generation": manifest.generation,
            "built_at": manifest.built_at.isoformat(),
            "current": lib.store.is_current(serving),
            "params": manifest.params,
            "recall_at_10": manifest.recall_at_10,
        },
        "indexing": lib.lock.held_elsewhere(),
    }


def run_status(args: argparse.Namespace) -> int:
    from search.library import Library

    with Library(settings_from(args)) as lib:
        status = library_status(lib)
    if args.json:
        print_json(status)
        return 0
    print(f"library: {status['home']}")
    for r in status["roots"]:
        note = "" if r["available"] else "  (not reachable)"
        print(f"root:    {r['path']}  {r['images']} images{note}")
    print(f"images:  {status['images']}   failures: {status['failures']}")
    print(f"model:   {status['serving_model'] or '(nothing indexed yet)'}")
    if status["index"]:
        idx = status["index"]
        print(f"index:   {idx['kind']}, {idx['count']} vectors, generation {idx['generation']}")
        if idx["recall_at_10"] is not None:
            params = idx["params"] or {}
            tuned = ", ".join(f"{k}={v}" for k, v in params.items())
            # An index updated in place since its build keeps the recall measured then.
            when = " when built" if params.get("updates") else ""
            print(
                f"         {tuned}; recall@10 {idx['recall_at_10']:.3f} against exact search{when}"
            )
    if status["indexing"]:
        print("an index run is in progress")
    return 0


def register_failures(sub) -> None:
    p = sub.add_parser("failures", help="files that could not be indexed, and why")
    _add_json(p)
    p.set_defaults(handler=run_failures)


def run_failures(args: argparse.Namespace) -> int:
    from search.library import Library

    with Library(settings_from(args)) as lib:
        failures = lib.catalog.failures()
    if args.json:
        print_json(
            [{"path": f.path, "reason": f.reason, "failed_at": f.failed_at} for f in failures]
        )
    else:
        for f in failures:
            print(f"{f.path}\t{f.reason}")
    return 0


# -- models and use --------------------------------------------------------------------------
def register_models(sub) -> None:
    p = sub.add_parser("models", help="models in this library; * marks the active one")
    _add_json(p)
    p.set_defaults(handler=run_models)


def run_models(args: argparse.Namespace) -> int:
    from search.library import Library
    from search.models import list_models

    with Library(settings_from(args)) as lib:
        listing = list_models(lib)
    active = listing.active
    rows = [
        {
            "model_id": m.model_id,
            "spec": m.spec,
            "vectors": m.vectors,
            "active": m.active,
            "serving": m.serving,
        }
        for m in listing.entries
        if m.indexed
    ]
    saved = [s.name for s in listing.saved]
    if args.json:
        print_json({"active": active, "models": rows, "saved": saved})
        return 0
    for r in rows:
        mark = "*" if r["active"] else " "
        serve = "  (serving)" if r["serving"] else ""
        print(f"{mark} {r['model_id']}  {r['vectors']} vectors{serve}")
    for name in saved:
        print(f"  {name}  (saved model; `imgsearch use {name}`)")
    if not any(r["active"] for r in rows):
        print(f"* {json.dumps(active)}  (active, not indexed yet)")
    return 0


def register_use(sub) -> None:
    p = sub.add_parser("use", help="make MODEL active; the next `index` re-embeds with it")
    p.add_argument("model", help="architecture, saved model name, directory, hf-hub:id or .json")
    p.add_argument("--pretrained", help="tag, weights FILE, or 'none'")
    p.set_defaults(handler=run_use)


def run_use(args: argparse.Namespace) -> int:
    from search.library import Library

    with Library(settings_from(args)) as lib:
        source = lib.resolve({"model": args.model, "pretrained": args.pretrained})
        lib.set_active(source.spec)
        count = lib.catalog.image_count()
    print(f"active model: {source.model_id}")
    print(
        f"run `imgsearch index` to embed {count} images with it; search keeps the current "
        "model until that finishes"
    )
    return 0

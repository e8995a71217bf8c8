"""Read-side commands: search, status, failures, models, use."""

from __future__ import annotations

import json
from pathlib import Path

import click

from search.cli import GlobalOptions, json_option, print_json, settings_from
from search.settings import PRECISIONS


# -- search -------------------------------------------------------------------------------
@click.command(
    "search",
    help="Find images by text, by example, or both.\n\n"
    "QUERY: what to look for, e.g. 'dog asleep on a red sofa'.",
)
@click.argument("query", required=False)
@click.option("--image", metavar="FILE", type=click.Path(), help="query by example: an image file")
@click.option("--like", metavar="ID", type=int, help="images like an indexed image (by id)")
@click.option("--add", multiple=True, metavar="Q", help="add a term ('2:cat' weights it)")
@click.option("--sub", multiple=True, metavar="Q", help="subtract a term")
@click.option("-k", type=click.IntRange(min=1), default=10, metavar="N", help="how many results")
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, metavar="N", help="skip this many results"
)
@click.option("--path-prefix", metavar="P", help="only images whose path starts with P")
@click.option("--after", metavar="DATE", help="taken on or after DATE (YYYY[-MM[-DD]])")
@click.option("--before", metavar="DATE", help="taken before DATE")
@click.option(
    "--sort",
    type=click.Choice(["score", "date"]),
    default="score",
    help="date: the relevant images, newest first",
)
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "semantic", "text"]),
    default="hybrid",
    help="hybrid (default): content and words (names, folders, captions, keywords); "
    "semantic: content only; text: the words only",
)
@click.option(
    "--relevant",
    is_flag=True,
    help="only the relevant images (all of them, paged by -k/--offset)",
)
@click.option(
    "--tag", "tags", multiple=True, metavar="NAME", help="only images with this tag (repeatable)"
)
@click.option(
    "--collapse",
    is_flag=True,
    help='one result per photo: its copies and edits listed under "duplicates"',
)
@click.option("--max-megapixels", type=float, metavar="MP", help="refuse larger query images")
@click.option("--device", metavar="DEVICE", help="auto, cpu or cuda")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="inference precision (default auto)",
)
@json_option
@click.pass_obj
def search_command(
    options: GlobalOptions,
    query: str | None,
    image: str | None,
    like: int | None,
    add: tuple[str, ...],
    sub: tuple[str, ...],
    k: int,
    offset: int,
    path_prefix: str | None,
    after: str | None,
    before: str | None,
    sort: str,
    mode: str,
    relevant: bool,
    tags: tuple[str, ...],
    collapse: bool,
    max_megapixels: float | None,
    device: str | None,
    precision: str | None,
    as_json: bool,
) -> int:
    from search.errors import QueryError
    from search.library import Library
    from search.query.searcher import SearchRequest, folder_prefix, parse_date
    from search.tags.vocabulary import tag_name

    if image and not Path(image).is_file():
        raise QueryError(f"--image {image}: no such file")
    request = SearchRequest(
        text=query,
        image=image,
        like=like,
        add=add,
        sub=sub,
        k=k,
        offset=offset,
        path_prefix=folder_prefix(path_prefix) if path_prefix else None,
        after=parse_date(after) if after else None,
        before=parse_date(before) if before else None,
        sort=sort,
        mode=mode,
        relevant=True if relevant else None,
        tags=tuple(tag_name(t) for t in tags),
        collapse=collapse,
    )
    settings = settings_from(
        options, device=device, precision=precision, max_megapixels=max_megapixels
    )
    # One query: the text model starts loading at once, beside the catalog read.
    with Library.for_one_query(settings, load_model=mode != "text") as lib:
        result = lib.searcher.search(request)
    if as_json:
        print_json(result.to_json())
    else:
        for h in result.hits:
            print(f"{h.score:.4f}\t{h.id}\t{h.path}")
    return 0


# -- status and failures --------------------------------------------------------------------
@click.command("status", help="Roots, counts, models and the index.")
@json_option
@click.pass_obj
def status_command(options: GlobalOptions, as_json: bool) -> int:
    from search.library import Library

    with Library(settings_from(options)) as lib:
        status = lib.status()
    if as_json:
        print_json(status.to_json())
        return 0
    print(f"library: {status.home}")
    for r in status.roots:
        note = "" if r.available else "  (not reachable)"
        print(f"root:    {r.path}  {r.images} images{note}")
    print(f"images:  {status.images}   failures: {status.failures}")
    print(f"model:   {status.serving_model or '(nothing indexed yet)'}")
    if (idx := status.index) is not None:
        print(f"index:   {idx.kind}, {idx.count} vectors, generation {idx.generation}")
        if idx.recall_at_10 is not None:
            params = idx.params or {}
            tuned = ", ".join(f"{k}={v}" for k, v in params.items())
            # An index updated in place since its build keeps the recall measured then.
            when = " when built" if params.get("updates") else ""
            print(f"         {tuned}; recall@10 {idx.recall_at_10:.3f} against exact search{when}")
    if status.indexing:
        print("an index run is in progress")
    return 0


@click.command("failures", help="Files that could not be indexed, and why.")
@json_option
@click.pass_obj
def failures_command(options: GlobalOptions, as_json: bool) -> int:
    from search.library import Library

    with Library(settings_from(options)) as lib:
        failures = lib.catalog.failures()
    if as_json:
        print_json([f.to_json() for f in failures])
    else:
        for f in failures:
            print(f"{f.path}\t{f.reason}")
    return 0


# -- models and use --------------------------------------------------------------------------
@click.command("models", help="Models in this library; * marks the active one.")
@json_option
@click.pass_obj
def models_command(options: GlobalOptions, as_json: bool) -> int:
    from search.library import Library
    from search.models.listing import list_models

    with Library(settings_from(options)) as lib:
        listing = list_models(lib)
    active = listing.active.as_dict()
    rows = [
        {
            "model_id": m.model_id,
            "spec": m.spec.as_dict(),
            "vectors": m.vectors,
            "active": m.active,
            "serving": m.serving,
        }
        for m in listing.entries
        if m.indexed
    ]
    saved = [s.name for s in listing.saved]
    if as_json:
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


@click.command(
    "use",
    help="Make MODEL active; the next `index` re-embeds with it.\n\nMODEL: an architecture, "
    "a saved model's name, a directory, an hf-hub:id or a model-config .json file.",
)
@click.argument("model")
@click.option("--pretrained", metavar="TAG|FILE|none", help="tag, weights FILE, or 'none'")
@click.pass_obj
def use_command(options: GlobalOptions, model: str, pretrained: str | None) -> int:
    from search.library import Library
    from search.models.spec import ModelSpec, check_weights, weights_file

    with Library(settings_from(options)) as lib:
        source = lib.resolve(ModelSpec(model, pretrained))
        weights = weights_file(source.spec, lib.settings.models_dir)
        if weights is not None:
            check_weights(weights)
        lib.set_active(source.spec)
        count = lib.catalog.image_count()
    print(f"active model: {source.model_id}")
    print(
        f"run `imgsearch index` to embed {count} images with it; search keeps the current "
        "model until that finishes"
    )
    return 0

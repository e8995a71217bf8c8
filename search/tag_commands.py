"""Tag commands: `tags` (list), `tags add`, `tags teach`, `tags remove`."""

from __future__ import annotations

import click

from search.cli import GlobalOptions, json_option, print_json, settings_from
from search.errors import ConfigError


@click.group(
    "tags",
    invoke_without_command=True,
    help="Tags: zero-shot from a description, or taught from examples. Alone: list them "
    "with how many images hold each.",
)
@json_option
@click.pass_context
def tags_command(ctx: click.Context, as_json: bool) -> int:
    if ctx.invoked_subcommand is not None:
        return 0
    from search.library import Library
    from search.tags.listing import tag_rows

    with Library(settings_from(ctx.obj)) as lib:
        rows = tag_rows(lib.catalog, lib.serving_model)
    _show(rows, as_json)
    return 0


@tags_command.command("add", help="Add zero-shot tags; NAME is also the prompt unless --prompt.")
@click.argument("name", required=False)
@click.option("--prompt", multiple=True, metavar="TEXT", help="a description (repeatable)")
@click.option("--starter", is_flag=True, help="add the starter vocabulary of common concepts")
@json_option
@click.pass_obj
def add_command(
    options: GlobalOptions, name: str | None, prompt: tuple[str, ...], starter: bool, as_json: bool
) -> int:
    from search.tags.vocabulary import starter as starter_names
    from search.tags.vocabulary import tag_name

    if name is None and not starter:
        raise ConfigError("give a tag NAME, or --starter for the starter vocabulary")
    if starter and prompt:
        raise ConfigError("--prompt describes one NAME; the starter tags use their names")
    wanted: dict[str, tuple[str, ...]] = {}
    if name is not None:
        clean = tag_name(name)
        prompts = tuple(p.strip() for p in prompt if p.strip()) or (clean,)
        wanted[clean] = prompts
    if starter:
        for n in starter_names():
            wanted.setdefault(n, (n,))
    return _change(options, as_json, lambda tagger, model_id: tagger.add(model_id, wanted))


@tags_command.command(
    "teach",
    context_settings={"ignore_unknown_options": True},
    help="Teach a tag from examples: --yes ID... are it, --no ID... are not (ids from "
    "`search --json`). With only --yes, a sample of the rest of the library stands in for "
    "'not'. More examples refine it; a new NAME becomes a tag taught from examples alone.",
)
@click.argument("name")
@click.argument("marks", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def teach_command(options: GlobalOptions, name: str, marks: tuple[str, ...]) -> int:
    from search.tags.vocabulary import tag_name

    yes, no, as_json = parse_marks(marks)
    if not yes and not no:
        raise ConfigError("give images: --yes ID... (and --no ID...)")
    clean = tag_name(name)
    return _change(
        options, as_json, lambda tagger, model_id: [tagger.teach(model_id, clean, yes, no)]
    )


@tags_command.command("remove", help="Remove a tag (from every image and model).")
@click.argument("name")
@click.pass_obj
def remove_command(options: GlobalOptions, name: str) -> int:
    from search.library import Library
    from search.tags.vocabulary import tag_name

    with Library(settings_from(options)) as lib:
        lib.catalog.tags.remove(tag_name(name))
    print(f"removed tag {tag_name(name)!r}")
    return 0


def parse_marks(marks: tuple[str, ...]) -> tuple[list[int], list[int], bool]:
    """`--yes 3 4 --no 5`, `--yes=3,4`, `--json` → ([3, 4], [5], as_json)."""
    yes: list[int] = []
    no: list[int] = []
    as_json, into = False, None
    for token in marks:
        flag, _, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if flag == "--json" and not value:
            as_json = True
            continue
        if flag:
            if flag not in ("--yes", "--no"):
                raise ConfigError(f"unknown option {flag} (teach takes --yes ID... --no ID...)")
            into = yes if flag == "--yes" else no
            if not value:
                continue
        if into is None:
            raise ConfigError(f"{token}: say --yes or --no before image ids")
        for part in value.split(","):
            if part.strip():
                try:
                    into.append(int(part))
                except ValueError:
                    raise ConfigError(f"{part!r} is not an image id") from None
    return yes, no, as_json


def _change(options: GlobalOptions, as_json: bool, change) -> int:
    """`change(tagger, serving model id)`: the tags it changed are shown."""
    from search.library import Library
    from search.tags.listing import tag_rows

    with Library(settings_from(options)) as lib:
        model_id = lib.serving_model
        changed = change(lib.tagger(), model_id)
        rows = [
            r
            for r in tag_rows(lib.catalog, lib.serving_model)
            if r["name"] in {t.name for t in changed}
        ]
    _show(rows, as_json)
    if model_id is None and not as_json:
        click.echo("nothing is indexed yet: tags apply at the end of the first index run", err=True)
    return 0


def _show(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print_json({"tags": rows})
        return
    for r in rows:
        threshold = (
            "not applied yet" if r["threshold"] is None else f"threshold {r['threshold']:.4f}"
        )
        print(f"{r['name']}\t{r['kind']}\t{r['count']} images\t{threshold}")


@click.command(
    "describe",
    help="Describe a photo in words: the tags that fit it and the closest captions the "
    "library knows.\n\nTARGET: an indexed image's id, or an image file.",
)
@click.argument("target")
@click.option("-k", type=click.IntRange(min=1, max=100), default=5, metavar="N", help="captions")
@json_option
@click.pass_obj
def describe_command(options: GlobalOptions, target: str, k: int, as_json: bool) -> int:
    from pathlib import Path

    from search.errors import QueryError
    from search.library import Library
    from search.query.searcher import SearchRequest
    from search.tags.describe import describe, known_caption_vectors

    is_file = Path(target).is_file()
    if not is_file and not target.isdigit():
        raise QueryError(f"{target}: neither an image id nor an image file")
    with Library(settings_from(options)) as lib:
        model_id = lib.searcher.serving_model()
        if is_file:
            vector = lib.searcher.query_vector(SearchRequest(image=target), model_id)
        else:
            lib.catalog.image(int(target))  # "no image with id N" before "no vector"
            vector = lib.catalog.vector_of(int(target), model_id)
        captions, vectors = known_caption_vectors(
            lib.catalog, lib.settings.models_dir, lib.settings.cache_dir, lib.searcher.encoder
        )(model_id)
        found = describe(lib.catalog, model_id, vector, captions, vectors, k)
    if as_json:
        print_json(found.to_json())
        return 0
    held = [t["name"] for t in found.tags if t["holds"]]
    print("tags:     " + (", ".join(held) if held else "(none)"))
    for c in found.captions:
        print(f"{c['score']:.4f}\t{c['text']}")
    return 0

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

    with Library(settings_from(ctx.obj)) as lib:
        rows = _listing(lib)
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
    return _change(
        options, as_json, lambda tags: [tags.define(n, "prompt", p) for n, p in wanted.items()]
    )


@tags_command.command(
    "teach",
    context_settings={"ignore_unknown_options": True},
    help="Teach a tag from examples: --yes ID... are it, --no ID... are not (ids from "
    "`search --json`). More examples refine it.",
)
@click.argument("name")
@click.argument("marks", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def teach_command(options: GlobalOptions, name: str, marks: tuple[str, ...]) -> int:
    from search.errors import NotFound
    from search.tags.vocabulary import tag_name

    yes, no, as_json = parse_marks(marks)
    if not yes and not no:
        raise ConfigError("give images: --yes ID... (and --no ID...)")
    clean = tag_name(name)

    def teach(tags):
        try:
            tags.get(clean)
        except NotFound:
            # A new tag taught from examples alone (a made-up word: no useful prompt).
            tags.define(clean, "probe", ())
        return [tags.teach(clean, yes, no)]

    return _change(options, as_json, teach)


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
    """Apply `change` to the catalog's tags, then fit and apply the tags it returns for
    the serving model (none yet: the first index run does it)."""
    from search.library import Library
    from search.tags.tagger import Tagger

    with Library(settings_from(options)) as lib:
        changed = change(lib.catalog.tags)
        model_id = lib.serving_model
        if model_id is not None:
            Tagger(lib.catalog, lib.load_encoder).apply(model_id, changed)
        rows = [r for r in _listing(lib) if r["name"] in {t.name for t in changed}]
    _show(rows, as_json)
    if model_id is None and not as_json:
        click.echo("nothing is indexed yet: tags apply at the end of the first index run", err=True)
    return 0


def _listing(lib) -> list[dict]:
    counts = lib.catalog.tags.counts(lib.serving_model)
    return [
        {
            "name": t.name,
            "kind": t.kind,
            "count": counts[t.id][0],
            "threshold": None if counts[t.id][1] is None else round(counts[t.id][1], 6),
            "prompts": list(t.prompts),
        }
        for t in lib.catalog.tags.all()
    ]


def _show(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print_json({"tags": rows})
        return
    for r in rows:
        threshold = (
            "not applied yet" if r["threshold"] is None else f"threshold {r['threshold']:.4f}"
        )
        print(f"{r['name']}\t{r['kind']}\t{r['count']} images\t{threshold}")

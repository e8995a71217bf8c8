"""`duplicates`: groups of exact copies, edits of one photo, and bursts."""

from __future__ import annotations

import click

from search.cli import GlobalOptions, json_option, print_json, settings_from
from search.progress import Progress


@click.command(
    "duplicates",
    help="List groups of exact copies (same pixels), edits of one photo (recompressed, "
    "resized, cropped) and bursts (shots seconds apart). Nothing is ever deleted.",
)
@click.option("--again", is_flag=True, help="find them again even if no image changed")
@click.option("--quiet", is_flag=True, help="no progress bar")
@json_option
@click.pass_obj
def duplicates_command(options: GlobalOptions, again: bool, quiet: bool, as_json: bool) -> int:
    from search.duplicates.groups import duplicate_groups
    from search.library import Library

    settings = settings_from(options)
    with Library(settings) as lib:
        shown = Progress(show=not quiet)
        groups = duplicate_groups(lib.catalog, settings.max_megapixels, shown, again=again)
        metas = lib.catalog.images(i for g in groups for i in g.ids)
    paths = {i: m.path for i, m in metas.items()}
    if as_json:
        print_json(
            {
                "groups": [
                    {"kind": g.kind, "ids": list(g.ids), "paths": [paths[i] for i in g.ids]}
                    for g in groups
                ]
            }
        )
        return 0
    if not groups:
        click.echo("no duplicates")
    for g in groups:
        click.echo(f"{g.kind} ({len(g.ids)} images)")
        for i in g.ids:
            click.echo(f"  {i}  {paths[i]}")
    return 0

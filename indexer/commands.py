"""`imgsearch index`."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import click

from search.cli import GlobalOptions, print_json, settings_from
from search.settings import PRECISIONS


def model_options(command: Callable) -> Callable:
    """--model, --pretrained, --device and --precision for a command that loads a model;
    its callback gets them as one ``model_flags`` dict of settings (None: not given)."""

    @click.option(
        "--model",
        metavar="MODEL",
        help="architecture, saved model, directory, hf-hub:id or .json",
    )
    @click.option(
        "--pretrained",
        metavar="TAG|FILE|none",
        help="weights: a tag, a FILE, or 'none' for random init",
    )
    @click.option("--device", metavar="DEVICE", help="auto (default), cpu or cuda")
    @click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        help="inference precision (default auto: bf16 where the CPU has it natively)",
    )
    @functools.wraps(command)
    def callback(*args, model, pretrained, device, precision, **kwargs):
        flags = {"model": model, "pretrained": pretrained, "device": device, "precision": precision}
        return command(*args, model_flags=flags, **kwargs)

    return callback


@click.command(
    "index",
    help="Add folders and sync them: new, changed, moved, deleted.\n\n"
    "PATH: folders to add (none: re-sync every folder added so far).",
)
@click.argument("paths", nargs=-1, metavar="[PATH]...", type=click.Path())
@model_options
@click.option(
    "--batch-size",
    type=int,
    metavar="N",
    help="images per model batch (default 32 on CPU, 256 on GPU)",
)
@click.option("--workers", type=int, metavar="N", help="decoding threads (default: one per core)")
@click.option(
    "--decode",
    type=click.Choice(["auto", "cpu", "device"]),
    help="where JPEGs are decoded: device = on the model's GPU with nvJPEG, "
    "cpu = Pillow (default auto: the GPU when the model runs on one)",
)
@click.option("--max-megapixels", type=float, metavar="MP", help="skip larger images (default 100)")
@click.option("--exclude", multiple=True, metavar="GLOB", help="skip matching paths (repeatable)")
@click.option(
    "--include-hidden",
    is_flag=True,
    default=None,
    help="index hidden files and folders too (a leading dot; skipped by default)",
)
@click.option(
    "--ocr/--no-ocr",
    default=None,
    help="read the text in photos, so searching a word on a sign or a receipt finds it "
    "(remembered by the library; needs the ocr extra)",
)
@click.option(
    "--ray",
    metavar="ADDRESS",
    help="embed on the Ray cluster at ADDRESS (auto: a Ray instance started here); "
    "needs the cluster extra",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.pass_obj
def index_command(
    options: GlobalOptions,
    paths: tuple[str, ...],
    batch_size: int | None,
    workers: int | None,
    decode: str | None,
    max_megapixels: float | None,
    exclude: tuple[str, ...],
    include_hidden: bool | None,
    ocr: bool | None,
    ray: str | None,
    as_json: bool,
    quiet: bool,
    model_flags: dict[str, str | None],
) -> int:
    from indexer.sync.run import sync
    from search.library import Library

    settings = settings_from(
        options,
        **model_flags,
        batch_size=batch_size,
        workers=workers,
        decode=decode,
        max_megapixels=max_megapixels,
        exclude=exclude or None,  # none given: IMGSEARCH_EXCLUDE still applies
        include_hidden=include_hidden,
        ray=ray,
    )
    with Library(settings) as lib:
        if ocr is not None:
            lib.set_reads_text(ocr)
        report = sync(lib, list(paths), progress=not quiet)
    if as_json:
        print_json(report.as_dict())
    else:
        print(
            f"{report.seen} seen: {report.added} added, {report.updated} updated, "
            f"{report.moved} moved, {report.unchanged} unchanged, {report.removed} removed, "
            f"{report.failed} failed; {report.embedded} embedded in {report.elapsed_s:.1f} s "
            f"({report.images_per_s:.1f} images/s) with {report.model_id}"
        )
        if report.failed:
            print("see `imgsearch failures` for the reasons", file=sys.stderr)
    for root in report.unavailable_roots:
        print(
            f"imgsearch: warning: {root} is missing or empty; its images were kept", file=sys.stderr
        )
    return 0

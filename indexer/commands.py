"""`imgsearch index`."""

from __future__ import annotations

import argparse
import sys

from search.cli import print_json, settings_from


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="architecture, saved model, directory, hf-hub:id or .json")
    p.add_argument("--pretrained", help="weights: a tag, a FILE, or 'none' for random init")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="inference precision (default auto: bf16 where the CPU has it natively)",
    )


def model_flags(args: argparse.Namespace) -> dict:
    """The settings that add_model_options' flags give."""
    return {
        "model": args.model,
        "pretrained": args.pretrained,
        "device": args.device,
        "precision": args.precision,
    }


def register_index(sub) -> None:
    p = sub.add_parser("index", help="add folders and sync them: new, changed, moved, deleted")
    p.add_argument("paths", nargs="*", metavar="PATH", help="folders (none: re-sync all roots)")
    add_model_options(p)
    p.add_argument(
        "--batch-size", type=int, help="images per model batch (default 32 on CPU, 256 on GPU)"
    )
    p.add_argument("--workers", type=int, help="decoding threads (default: one per core)")
    p.add_argument(
        "--decode",
        choices=("auto", "cpu", "device"),
        help="where JPEGs are decoded: device = on the model's GPU with nvJPEG, "
        "cpu = Pillow (default auto: the GPU when the model runs on one)",
    )
    p.add_argument("--max-megapixels", type=float, help="skip larger images (default 100)")
    p.add_argument(
        "--exclude", action="append", metavar="GLOB", help="skip matching paths (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_index)


def run_index(args: argparse.Namespace) -> int:
    from indexer.sync import sync
    from search.library import Library

    settings = settings_from(
        args,
        **model_flags(args),
        batch_size=args.batch_size,
        workers=args.workers,
        decode=args.decode,
        max_megapixels=args.max_megapixels,
        exclude=tuple(args.exclude) if args.exclude else None,
    )
    with Library(settings) as lib:
        report = sync(lib, args.paths, progress=not args.quiet)
    if args.json:
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

"""The `imgsearch` command-line root.

Sub-commands register themselves through the `imgsearch.commands` entry-point group, so
this module knows neither the indexer nor the web UI; heavy libraries are imported only
inside the command that needs them, which keeps `imgsearch --help` fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from search.errors import ImgsearchError
from search.settings import Settings

ORDER = ["index", "search", "serve", "train", "eval", "models", "use", "status", "failures"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgsearch",
        description="Search your own images by typed description.",
    )
    parser.add_argument(
        "--home", help="library folder (default: $IMGSEARCH_HOME or the user data dir)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    eps = entry_points(group="imgsearch.commands")
    rank = {name: i for i, name in enumerate(ORDER)}
    for ep in sorted(eps, key=lambda e: (rank.get(e.name, len(ORDER)), e.name)):
        ep.load()(sub)
    return parser


def settings_from(args: argparse.Namespace, **flags: object) -> Settings:
    """Settings for a command: defaults ← IMGSEARCH_* env ← the flags given."""
    return Settings.load(home=args.home, verbose=args.verbose, **flags)


def print_json(doc: object) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    # Read by OpenMP when torch loads it, so before any command imports torch. Its worker
    # threads otherwise spin between parallel regions, taking cores from the decoding
    # threads: indexing 300 photos on 2 cores took 16.2 s with spinning, 13.7 s without
    # (bench/BENCHMARKS.md), and the model alone runs no slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="imgsearch: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
    except ImgsearchError as exc:
        print(f"imgsearch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "imgsearch: interrupted; what was committed is kept, re-run to finish", file=sys.stderr
        )
        return 130


def run() -> None:
    """The console script: main(), then an exit that skips tearing down torch's modules."""
    code = main()
    if "torch" not in sys.modules:
        sys.exit(code)
    # Interpreter teardown after torch, torchvision and torch._dynamo (which brings sympy)
    # were imported takes about a second of a 15 s index run on 2 cores. Nothing of ours
    # needs it: the catalog, lock and thread pools are closed when main() returns, so only
    # the streams and logging are left to flush.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe: nothing more can reach it anyway.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

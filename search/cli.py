"""The `imgsearch` command-line root, on click.

Each sub-command is a click command published in the `imgsearch.commands` entry-point
group (name = the command's name, value = "module:command_object"), so this module knows
neither the indexer nor the web UI. A command's module is imported only when that command
runs or `imgsearch --help` lists it, and heavy libraries only inside a command's body:
`imgsearch search --help` imports no torch, no indexer and no web UI (tests/test_cli.py).

A command takes the global options with ``@click.pass_obj`` (a GlobalOptions) and builds
its Settings with ``settings_from(options, flag=value, ...)``, a flag not given being None.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from search.errors import ImgsearchError, storage_failure

if TYPE_CHECKING:
    from search.settings import Settings

PROG = "imgsearch"
ENTRY_POINT_GROUP = "imgsearch.commands"
# click's own completion hook: `eval "$(_IMGSEARCH_COMPLETE=bash_source imgsearch)"`.
COMPLETE_VAR = "_IMGSEARCH_COMPLETE"
# The order `imgsearch --help` lists commands in; others (plug-ins, demo) follow by name.
ORDER = ["index", "search", "serve", "train", "eval", "models", "use", "status", "failures"]
CONTEXT_SETTINGS = {
    "help_option_names": ["-h", "--help"],
    "show_default": True,
    "max_content_width": 100,
}


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the command: `imgsearch [--home DIR] [--catalog URL] [-v]
    COMMAND`."""

    home: str | None = None
    catalog: str | None = None


def read_entry_points(group: str) -> dict[str, str]:
    """name → "module:object" for each entry point in `group` of the distributions on
    sys.path, the first distribution of a name counting, as importlib.metadata does.

    It reads the entry_points.txt files itself: importing importlib.metadata (with the
    email parser it brings) costs about 30 ms, a third of `imgsearch --help`. Where it
    finds nothing (an unusual install) it asks importlib.metadata after all."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in names:
            stem, _, kind = name.rpartition(".")
            if kind not in ("dist-info", "egg-info"):
                continue
            dist = re.sub(r"[-_.]+", "_", stem.split("-")[0]).lower()
            if dist in seen:
                continue  # shadowed by one earlier on sys.path
            seen.add(dist)
            try:
                with open(os.path.join(entry, name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            section = None
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == group and "=" in line and not line.startswith(("#", ";")):
                    key, _, value = line.partition("=")
                    found.setdefault(key.strip(), value.strip())
    if not found:
        from importlib.metadata import entry_points

        for ep in entry_points(group=group):
            found.setdefault(ep.name, ep.value)
    return found


def load_entry_point(value: str) -> object:
    """The object an entry point's "module:attr.attr [extras]" value names."""
    module, _, attrs = value.partition(":")
    obj = importlib.import_module(module.strip())
    for attr in attrs.split("[")[0].strip().split("."):
        if attr:
            obj = getattr(obj, attr)
    return obj


class EntryPointGroup(click.Group):
    """A group whose commands are the `imgsearch.commands` entry points, each loaded the
    first time it is asked for."""

    @functools.cached_property
    def entry_points(self) -> dict[str, str]:
        return read_entry_points(ENTRY_POINT_GROUP)

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(ORDER)}
        names = set(self.commands) | set(self.entry_points)
        return sorted(names, key=lambda n: (rank.get(n, len(ORDER)), n))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is not None:
            return command
        value = self.entry_points.get(cmd_name)
        if value is None:
            return None
        command = load_entry_point(value)
        if not isinstance(command, click.Command):
            raise TypeError(f"entry point {cmd_name} = {value} is not a click command")
        self.add_command(command, cmd_name)
        return command


@click.group(
    cls=EntryPointGroup,
    context_settings=CONTEXT_SETTINGS,
    help="Search your own images by typed description.",
)
@click.option(
    "--home",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="library folder (default: $IMGSEARCH_HOME or the user data dir)",
)
@click.option(
    "--catalog",
    metavar="URL",
    help="the catalog's database, a SQLAlchemy URL such as postgresql://user@host/db, "
    "for a library several machines share (default: $IMGSEARCH_CATALOG or catalog.db in "
    "the library folder)",
)
@click.option("-v", "--verbose", is_flag=True, help="log more to stderr")
@click.pass_context
def cli(ctx: click.Context, home: str | None, catalog: str | None, verbose: bool) -> None:
    import logging

    ctx.obj = GlobalOptions(home=home, catalog=catalog)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="imgsearch: %(message)s",
        stream=sys.stderr,
    )


def settings_from(options: GlobalOptions, **flags: object) -> Settings:
    """Settings for a command: defaults ← IMGSEARCH_* env ← the flags given (a flag not
    given is None, so the environment still applies)."""
    from search.settings import Settings

    return Settings.load(home=options.home, catalog=options.catalog, **flags)


json_option = click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")


def print_json(doc: object) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on argv (default: sys.argv[1:]) and return its exit code."""
    # Read by OpenMP when torch loads it, so before any command imports torch. Its worker
    # threads otherwise spin between parallel regions, taking cores from the decoding
    # threads: indexing 300 photos on 2 cores took 16.2 s with spinning, 13.7 s without
    # (bench/BENCHMARKS.md), and the model alone runs no slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    instruction = os.environ.get(COMPLETE_VAR)
    if instruction:
        from click.shell_completion import shell_complete

        return shell_complete(cli, {}, PROG, COMPLETE_VAR, instruction)
    # click's Command.main() would turn Ctrl-C into a blank line and its own "Aborted!",
    # and usage errors into a usage block; this is its core without those.
    ctx = None  # its global options, once parsed, say where the catalog is
    try:
        with cli.make_context(PROG, args) as ctx:
            return int(cli.invoke(ctx) or 0)
    except click.exceptions.Exit as exc:  # --help, or a command that exits with a code
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare `imgsearch`
        click.echo(exc.ctx.get_help(), err=True)
        return exc.exit_code
    except click.UsageError as exc:  # unknown option or command, bad or missing value
        see = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        print(f"{PROG}: error: {_one_line(exc.format_message())}{see}", file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        print(f"{PROG}: error: {_one_line(exc.format_message())}", file=sys.stderr)
        return exc.exit_code
    except ImgsearchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, click.Abort):
        print(f"{PROG}: interrupted; what was committed is kept, re-run to finish", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`imgsearch search cat | head -1`): it had what it wanted.
        # Point stdout at /dev/null, or the flush at exit raises the same error again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as a process killed by SIGPIPE
    except Exception as exc:
        line = storage_failure(exc, _catalog_path(getattr(ctx, "obj", None)))
        if line is None:
            raise
        print(f"{PROG}: error: {line}", file=sys.stderr)
        return 1


def _catalog_path(options: GlobalOptions | None) -> str:
    try:
        return settings_from(options or GlobalOptions()).catalog_name
    except ImgsearchError:
        return "catalog.db in the library folder"


def run() -> None:
    """The console script: main(), then an exit that skips tearing down the interpreter."""
    code = main()
    # Interpreter teardown after torch, torchvision and torch._dynamo (which brings sympy)
    # were imported takes about a second of a 15 s index run on 2 cores, and after
    # onnxruntime 0.2 s of a 0.3 s search. Nothing of ours needs it: the catalog, lock and
    # thread pools are closed when main() returns, so only the streams and logging are
    # left to flush.
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe: nothing more can reach it anyway.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

"""The dependency rule (DESIGN.md, "Layout"), read from the code: `search` imports neither
`indexer` nor `webui`; `webui` imports no `indexer`, and outside its own command module
(`serve`, which is part of the command line) none of the command-line modules."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def is_cli_module(module: str) -> bool:
    """The command line: its root and every module of sub-commands (search.commands,
    indexer.train_commands, ...)."""
    return module == "search.cli" or module.rsplit(".", 1)[-1].endswith("commands")


def imported_modules(file: Path, package_root: Path) -> set[str]:
    """Every module an import statement in `file` names, wherever the statement is
    (function bodies, TYPE_CHECKING blocks); `from a import b` counts a and a.b."""
    here = list(file.relative_to(package_root).parts[:-1])  # where `from .` starts
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def layering_violations(root: Path) -> list[str]:
    """'file: imports module' for each import under `root` that breaks the rule."""

    def forbidden(package: str, own_module: str, module: str) -> bool:
        top = module.split(".", 1)[0]
        if package == "search":
            return top in ("indexer", "webui")
        if package == "webui":
            return top == "indexer" or (is_cli_module(module) and not is_cli_module(own_module))
        return False

    found = []
    for package in ("search", "webui"):
        for file in sorted((root / package).rglob("*.py")):
            own = ".".join(file.relative_to(root).with_suffix("").parts)
            for module in sorted(imported_modules(file, root)):
                if forbidden(package, own, module):
                    found.append(f"{file.relative_to(root)}: imports {module}")
    return found


def test_search_and_webui_keep_the_dependency_rule() -> None:
    violations = layering_violations(REPO)
    assert not violations, "against DESIGN.md's dependency rule:\n" + "\n".join(violations)


def test_the_check_reports_a_wrong_import(tmp_path: Path) -> None:
    files = {
        "search/__init__.py": "",
        "search/query/searcher.py": "def f():\n    from indexer import sync\n",
        "search/cli.py": "import webui.files\n",
        "webui/__init__.py": "from . import pages\n",
        "webui/pages.py": "from search.commands import search_command\nfrom ..indexer import x\n",
        "webui/api.py": "from search import cli\nimport search.library\n",
        "webui/commands.py": "from search.cli import settings_from\n",
        "webui/models.py": "from . import commands\nfrom .api import library\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert layering_violations(tmp_path) == [
        "search/cli.py: imports webui.files",
        "search/query/searcher.py: imports indexer",
        "search/query/searcher.py: imports indexer.sync",
        "webui/api.py: imports search.cli",
        "webui/models.py: imports webui.commands",
        "webui/pages.py: imports indexer",
        "webui/pages.py: imports indexer.x",
        "webui/pages.py: imports search.commands",
    ]

"""What a tag's text means to the text tower: its name checked, prompts from templates,
and the starter vocabulary shipped with the package."""

from __future__ import annotations

import re
from importlib import resources

from search.errors import QueryError

# CLIP's prompt ensembling: a concept is the mean of its embeddings in a few phrasings,
# steadier than any one of them (the photo-style templates of open_clip's zero-shot set).
TEMPLATES = (
    "{}",
    "a photo of {}.",
    "a photo of a {}.",
    "a picture of {}.",
    "an image showing {}.",
)
MAX_NAME = 100
_SPACES = re.compile(r"\s+")


def tag_name(raw: str) -> str:
    """The stored form of a typed name: trimmed, inner spaces single, lower case (so
    'Beach' and 'beach ' are one tag)."""
    name = _SPACES.sub(" ", raw).strip().lower()
    if not name:
        raise QueryError("a tag needs a name")
    if len(name) > MAX_NAME:
        raise QueryError(f"a tag name is at most {MAX_NAME} characters")
    if any(ord(c) < 32 for c in name):
        raise QueryError("a tag name cannot hold control characters")
    return name


def phrasings(prompts: tuple[str, ...] | list[str]) -> list[str]:
    """Every prompt in every template."""
    return [t.format(p) for p in prompts for t in TEMPLATES]


def starter() -> list[str]:
    """The starter vocabulary's tag names (search/tags/starter.txt: one a line, # comments)."""
    text = resources.files("search.tags").joinpath("starter.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return list(dict.fromkeys(tag_name(line) for line in lines if line))

"""Tags as the `tags --json` command and `GET /api/tags` list them (DESIGN.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search.catalog.store import Catalog


def tag_rows(catalog: Catalog, model_id: str | None) -> list[dict]:
    """Every tag with how many images hold it by `model_id` (the serving model) and its
    threshold there (None: not applied for that model yet)."""
    counts = catalog.tags.counts(model_id)
    rows = []
    for t in catalog.tags.all():
        count, threshold = counts.get(t.id, (0, None))
        rows.append(
            {
                "name": t.name,
                "kind": t.kind,
                "count": count,
                "threshold": None if threshold is None else round(threshold, 6),
                "prompts": list(t.prompts),
            }
        )
    return rows

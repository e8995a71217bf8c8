"""The writer of an index run (clip-retrieval's writer role): every catalog write it makes.

First the plan's folder changes (new roots, moves, removals), once the model is known to
load; then each embedded batch in one transaction, so an interrupted run keeps every batch
written before the interruption.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from indexer.sync.pipeline import Decoded, Failed
from indexer.sync.plan import Plan
from search.catalog.store import Catalog
from search.models.spec import ModelSource


class CatalogWriter:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.root_ids: dict[str, int] = {}  # root path → catalog id
        self.model_id = ""
        self.dim = 0
        # Called once, after the first batch is committed (see sync: a first run serves
        # what it has committed).
        self.on_first_commit: Callable[[], None] | None = None
        self.glanced = 0  # photos recorded without text from the embedding's decode

    def apply(self, plan: Plan) -> None:
        """Add the plan's folders as roots, then write its moves and removals."""
        for path in plan.new_roots:
            self.catalog.add_root(path)
        self.root_ids = {r.path: r.id for r in self.catalog.roots()}
        self.catalog.move_images(
            [
                (m.image_id, m.path, self.root_ids[m.root], m.mtime_ns)
                for m in plan.moves + plan.refreshed
            ],
            checked_at=plan.checked_at,
        )
        self.catalog.remove_images(plan.removed_ids)
        self.catalog.remove_failures(plan.stale_failures)

    def start(self, source: ModelSource, dim: int) -> None:
        """Batches from here on hold vectors of this model (recorded if new)."""
        self.catalog.ensure_model(source.model_id, source.spec, dim)
        self.model_id, self.dim = source.model_id, dim

    def write(
        self, ok: list[Decoded], vectors: np.ndarray, bad: list[Failed], kept: list[Decoded]
    ) -> None:
        """One batch: vectors for catalogued images, new and changed images with theirs,
        the files that failed, and changed files whose pixels were not (`kept`: their new
        metadata only, their vectors stay)."""
        if kept:
            self.catalog.refresh_images([d.image_data(self.root_ids[d.item.root]) for d in kept])
        again = [i for i, d in enumerate(ok) if d.item.kind == "reembed"]
        fresh = [i for i, d in enumerate(ok) if d.item.kind != "reembed"]
        if again:
            ids = [ok[i].item.image_id for i in again]
            frames = [ok[i].frames for i in again]
            self.catalog.add_vectors(self.model_id, ids, vectors[again], frames)
        if fresh or bad:
            ids = self.catalog.write_batch(
                self.model_id,
                [ok[i].image_data(self.root_ids[ok[i].item.root]) for i in fresh],
                vectors[fresh] if fresh else np.zeros((0, self.dim), np.float32),
                [f.as_failure(self.root_ids[f.item.root]) for f in bad],
                [ok[i].frames for i in fresh],
            )
            # Photos the glance found without text are read: nothing to read again.
            blank = [(image_id, []) for image_id, i in zip(ids, fresh) if ok[i].textless]
            self.catalog.texts.record(blank)
            self.glanced += len(blank)
        if ok and self.on_first_commit is not None:
            first, self.on_first_commit = self.on_first_commit, None
            first()

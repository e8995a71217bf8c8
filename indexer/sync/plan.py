"""What an index run will do, decided before it does anything (nothing here writes).

The roots as they will be once the run's folders are added, each walked once; each
catalogued root's file and failure records read once; from those, the files to embed
(new and changed), the moves and renames, the removals; and, once the model's id is
known, the catalogued images that have no vector for it yet (one query per root).

A file whose size or time changed is hashed before it is called changed: `touch`, a copy
that keeps the bytes, a backup tool restoring times, none re-embeds (RELIABILITY 19).
And as git does with "racily clean" files, a file modified less than a coarse clock tick
before it was read is hashed again by later runs even when its size and time look the
same: on a file system that keeps whole (FAT: even) seconds, an edit made in that second
keeps both.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from indexer.sync.pipeline import WorkItem
from indexer.sync.scan import FoundFile, content_hash, storable_path
from search.catalog.records import FileRecord, RootInfo, utcnow
from search.catalog.store import Catalog, is_inside

# The coarsest file time step in use (FAT's two seconds), in nanoseconds.
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class RunRoot:
    """A root as it will be once the run's folders are added: its path, and the ids of
    the catalogued roots it is or takes in (none: a folder new to the catalog)."""

    path: str
    catalogued: tuple[int, ...] = ()


@dataclass(frozen=True)
class Move:
    """A catalogued image found under another name: its id and vector stay."""

    image_id: int
    path: str
    root: str
    mtime_ns: int


@dataclass
class Plan:
    roots: list[RunRoot]
    new_roots: list[str]  # the folders to add as roots, as given
    unavailable: list[str] = field(default_factory=list)  # roots kept as they are
    work: list[WorkItem] = field(default_factory=list)  # new and changed files
    moves: list[Move] = field(default_factory=list)
    # Catalogued files whose bytes were checked unchanged: new time recorded, no re-embed.
    refreshed: list[Move] = field(default_factory=list)
    # Before this plan read any file's bytes: the check time its moves and refreshes record.
    checked_at: datetime = field(default_factory=utcnow)
    removed_ids: list[int] = field(default_factory=list)
    stale_failures: list[str] = field(default_factory=list)
    unchanged: int = 0
    seen: int = 0
    # Catalogued images without a vector for `reembed_model` (see missing_vectors).
    reembed: list[WorkItem] = field(default_factory=list)
    reembed_model: str | None = None

    @property
    def reachable(self) -> list[RunRoot]:
        return [r for r in self.roots if r.path not in self.unavailable]


def run_roots(existing: Sequence[RootInfo], new_paths: Sequence[str]) -> list[RunRoot]:
    """The roots once `new_paths` are added one by one, as Catalog.add_root adds them: a
    folder inside a root is covered by it; roots inside a new folder fold into it."""
    paths = [r.path for r in existing]
    for p in new_paths:
        if not any(p == r or is_inside(p, r) for r in paths):
            paths = [r for r in paths if not is_inside(r, p)] + [p]
    return [
        RunRoot(p, tuple(r.id for r in existing if r.path == p or is_inside(r.path, p)))
        for p in paths
    ]


def root_available(path: str, found: list[FoundFile], catalogued: int) -> bool:
    """A missing folder, or one that lost every file at once, is an unplugged drive or an
    unmounted share far more often than a deliberate delete: don't sweep it."""
    return os.path.isdir(path) and (bool(found) or catalogued == 0)


def plan_run(
    catalog: Catalog,
    roots: list[RunRoot],
    new_roots: list[str],
    scans: dict[str, list[FoundFile]],
) -> Plan:
    """What to embed, move and remove, from each root's walk (`scans`, by path) and its
    catalogued records."""
    plan = Plan(roots, new_roots)
    gone: dict[int, list[FileRecord]] = defaultdict(list)  # size → catalogued, not found
    new: list[tuple[RunRoot, FoundFile]] = []
    for root in roots:
        records: dict[str, FileRecord] = {}
        failures: dict[str, tuple[int, int]] = {}
        for root_id in root.catalogued:
            records.update(catalog.file_records(root_id))
            failures.update(catalog.failure_records(root_id))
        found = scans[root.path]
        if not root_available(root.path, found, len(records)):
            plan.unavailable.append(root.path)
            continue
        plan.seen += len(found)
        found_paths = {f.path for f in found}
        for f in found:
            rec = records.get(f.path)
            if rec is not None:
                if (rec.size, rec.mtime_ns) == (f.size, f.mtime_ns) and not racy(rec):
                    plan.unchanged += 1
                elif rec.size == f.size and _hash(f) == rec.content_hash:
                    plan.unchanged += 1
                    plan.refreshed.append(Move(rec.id, f.path, root.path, f.mtime_ns))
                else:
                    plan.work.append(
                        WorkItem(
                            root.path,
                            f.path,
                            f.size,
                            f.mtime_ns,
                            "changed",
                            pixel_hash=rec.pixel_hash,
                        )
                    )
            elif failures.get(storable_path(f.path)) == (f.size, f.mtime_ns):
                plan.unchanged += 1  # known bad and untouched: not worth another try
            else:
                new.append((root, f))
        for path, rec in records.items():
            if path not in found_paths:
                gone[rec.size].append(rec)
        found_text = {storable_path(p) for p in found_paths}
        plan.stale_failures += [p for p in failures if p not in found_text]
    for root, f in new:
        match = _match_moved(gone.get(f.size), f)
        if match is not None:
            gone[f.size].remove(match)
            plan.moves.append(Move(match.id, f.path, root.path, f.mtime_ns))
        else:
            plan.work.append(WorkItem(root.path, f.path, f.size, f.mtime_ns))
    plan.removed_ids = [rec.id for recs in gone.values() for rec in recs]
    return plan


def racy(rec: FileRecord) -> bool:
    """Modified within a clock tick of being read: an edit since may have kept the file's
    size and time (see the module's docstring)."""
    read_at = rec.indexed_at.replace(tzinfo=timezone.utc).timestamp()
    return rec.mtime_ns > read_at * 1e9 - RACY_NS


def _hash(f: FoundFile) -> str | None:
    """The file's content hash; None when it cannot be read (the decoder reports why)."""
    try:
        return content_hash(f.path, f.size)
    except OSError:
        return None


def _match_moved(candidates: list[FileRecord] | None, f: FoundFile) -> FileRecord | None:
    """The catalogued file that `f` is, moved or renamed: same size and content hash."""
    if not candidates or (digest := _hash(f)) is None:
        return None
    return next((rec for rec in candidates if rec.content_hash == digest), None)


def missing_vectors(catalog: Catalog, plan: Plan, model_id: str) -> list[WorkItem]:
    """Catalogued images in the reachable roots that have no vector for `model_id`, as
    they will be once the plan's moves and removals are written (changed files are in
    the plan's work already, and those among them without a vector for the model are
    marked there to be embedded whatever their pixels); kept in the plan for that model."""
    if plan.reembed_model == model_id:
        return plan.reembed
    moved = {m.image_id: m for m in plan.moves}
    removed = set(plan.removed_ids)
    changed = {w.path for w in plan.work if w.kind == "changed"}
    lacking: set[str] = set()
    items = []
    for root in plan.reachable:
        for root_id in root.catalogued:
            for r in catalog.missing_embeddings(model_id, root_id):
                if r.path in changed:
                    lacking.add(r.path)
                    continue
                if r.id in removed:
                    continue
                item = WorkItem(root.path, r.path, r.size, r.mtime_ns, "reembed", r.id)
                if (m := moved.get(r.id)) is not None:
                    item = replace(item, root=m.root, path=m.path, mtime_ns=m.mtime_ns)
                items.append(item)
    plan.work = [replace(w, pixel_hash=None) if w.path in lacking else w for w in plan.work]
    plan.reembed, plan.reembed_model = items, model_id
    return items

"""The files a cluster run leaves in its folder, as Arrow tables: the work list the driver
planned (one row per file to embed) and the vector shards the job returns (one row per
file of the list: its vector, or why it failed, with what the catalog records of it).

Rows are named by their place in the work list (`row`), so a shard means the same thing
wherever it was made, and a block that comes back twice is recognised."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import numpy as np
import pyarrow as pa

from indexer.sync.pipeline import Decoded, Failed, WorkItem

WORK = pa.schema(
    [
        ("row", pa.int64()),
        ("root", pa.string()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("kind", pa.string()),
        ("image_id", pa.int64()),
        ("pixel_hash", pa.string()),
    ]
)

SHARD = pa.schema(
    [
        ("row", pa.int64()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("model_id", pa.string()),
        # "embedded", "kept" (a changed file whose pixels were not: no new vector) or
        # "failed" (then `reason` says why).
        ("status", pa.string()),
        ("reason", pa.string()),
        ("vector", pa.list_(pa.float32())),
        ("content_hash", pa.string()),
        ("pixel_hash", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("taken_at", pa.string()),  # ISO 8601, as the file said it (naive or not)
        ("read_at", pa.string()),
        ("keywords", pa.string()),
        ("signature", pa.binary()),
        ("duration", pa.float64()),
        ("frame_times", pa.list_(pa.float64())),
        ("frame_vectors", pa.list_(pa.float32())),  # the frames' vectors, row after row
    ]
)


def work_table(work: list[WorkItem]) -> pa.Table:
    rows = [{"row": n, **asdict(item)} for n, item in enumerate(work)]
    return pa.Table.from_pylist(rows, schema=WORK)


def work_items(table: pa.Table) -> dict[int, WorkItem]:
    """The work list's rows by number."""
    return {r.pop("row"): WorkItem(**r) for r in table.select(WORK.names).to_pylist()}


def shard_table(
    rows: dict[str, int],
    model_id: str,
    ok: list[Decoded],
    vectors: np.ndarray,
    bad: list[Failed],
    kept: list[Decoded],
) -> pa.Table:
    """One embedded batch (indexer.sync.pipeline.embed_batch) as shard rows; `rows` gives
    each file's row in the work list, by path."""
    out = []
    parts = (("embedded", ok, vectors), ("kept", kept, None), ("failed", bad, None))
    for status, done, vecs in parts:
        for n, r in enumerate(done):
            i = r.item
            row = {
                "row": rows[i.path],
                "path": i.path,
                "size": i.size,
                "mtime_ns": i.mtime_ns,
                "model_id": model_id,
                "status": status,
            }
            if isinstance(r, Failed):
                row["reason"] = r.reason
            else:
                row.update(
                    vector=None if vecs is None else vecs[n].astype(np.float32),
                    content_hash=r.content_hash,
                    pixel_hash=r.pixel_hash,
                    width=r.width,
                    height=r.height,
                    taken_at=_iso(r.taken_at),
                    read_at=_iso(r.read_at),
                    keywords=r.keywords,
                    signature=r.signature,
                    duration=r.duration,
                    frame_times=list(r.frame_times),
                    frame_vectors=None
                    if r.frame_vectors is None
                    else r.frame_vectors.astype(np.float32).ravel(),
                )
            out.append(row)
    return pa.Table.from_pylist(out, schema=SHARD)


def shard_batch(
    table: pa.Table, work: dict[int, WorkItem]
) -> tuple[list[int], list[Decoded], np.ndarray, list[Failed], list[Decoded]]:
    """A shard back as the writer takes a batch: (the work rows it holds, the embedded
    files, their vectors, the failed ones, the kept ones)."""
    rows, ok, vectors, bad, kept = [], [], [], [], []
    for r in table.to_pylist():
        item = work[r["row"]]
        rows.append(r["row"])
        if r["status"] == "failed":
            bad.append(Failed(item, r["reason"]))
            continue
        times = tuple(r["frame_times"] or ())
        frames = None
        if times:
            frames = np.asarray(r["frame_vectors"], np.float32).reshape(len(times), -1)
        decoded = Decoded(
            item,
            r["content_hash"],
            r["width"],
            r["height"],
            _parse(r["taken_at"]),
            None,
            read_at=_parse(r["read_at"]),
            keywords=r["keywords"] or "",
            pixel_hash=r["pixel_hash"],
            signature=r["signature"],
            duration=r["duration"],
            frame_times=times,
            frame_vectors=frames,
        )
        if r["status"] == "kept":
            kept.append(decoded)
        else:
            ok.append(decoded)
            vectors.append(np.asarray(r["vector"], np.float32))
    dim = len(vectors[0]) if vectors else 0
    stacked = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
    return rows, ok, stacked, bad, kept


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)

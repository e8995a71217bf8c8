"""The embedding of an index run on a Ray cluster (`imgsearch index --ray ADDRESS`).

The driver plans the run as always (scan, diff against the catalog: indexer.sync.plan)
and writes the work list (Parquet) into the run's folder. A Ray Data job hands blocks of
that list to a pool of actors, each holding the run's model (on a GPU where the cluster
has them): an actor decodes its files with the project's own loader (search.imageio:
EXIF orientation, CMYK, pixel caps checked before decoding; not Ray's read_images) and
embeds them as an index run on one machine would (indexer.sync.pipeline.embed_batch).
What the actors return streams back to the driver, which writes it as a vector shard
(indexer.cluster.shards) beside the work list and then commits it to the catalog, one
transaction a shard: workers never write SQL, so the catalog needs no network access.

Ray restarts an actor lost with its node and runs its block again on the others (Ray
Data's defaults for actor pools); the pool may shrink to what is left. A work row comes
back once per try: the driver commits each row once, and the catalog upserts by path, so
committing a shard again adds nothing.

The image files must be readable at the same paths on every node (a shared mount), and
the model's files too (a checkpoint under the library's models folder, or open_clip's
cache): the actors load the model from the same source as the driver.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from indexer.cluster.shards import shard_batch, shard_table, work_items, work_table
from indexer.sync.backoff import Backoff
from indexer.sync.pipeline import PipelineCounts, VideoOptions, WorkItem, embed_batch, make_decoder
from search.models.spec import ModelSource
from search.raycluster import connect, load_ray

RUNS = "cluster-runs"  # in the library folder: the latest run's work list and shards


@dataclass(frozen=True)
class ActorSetup:
    """What an actor needs to embed as the driver's run would."""

    source: ModelSource
    device: str
    precision: str
    max_megapixels: float
    video: VideoOptions
    batch: int


class Embedder:
    """A Ray Data actor: the model loaded once, then one block of the work list a call."""

    def __init__(self, setup: ActorSetup) -> None:
        from search.models.encoder import load_encoder

        self.setup = setup
        self.encoder = load_encoder(setup.source, setup.device, setup.precision)
        self.decode = make_decoder(
            self.encoder.prepare,
            max_megapixels=setup.max_megapixels,
            min_side=self.encoder.image_size,
            video=setup.video,
        )
        self.fitting = Backoff(self.encoder.encode_pixels)

    def __call__(self, block: pa.Table) -> pa.Table:
        items = work_items(block)
        rows = {item.path: n for n, item in items.items()}
        decoded = [self.decode(item) for item in items.values()]
        parts = []
        for start in range(0, len(decoded), self.setup.batch):
            batch = decoded[start : start + self.setup.batch]
            ok, vectors, bad, kept = embed_batch(batch, self.fitting)
            parts.append(shard_table(rows, self.setup.source.model_id, ok, vectors, bad, kept))
        return pa.concat_tables(parts)


def embed_on_ray(
    work: list[WorkItem],
    *,
    address: str,
    setup: ActorSetup,
    run_dir: Path,
    write: Callable,
    progress: Callable[[int], None] = lambda n: None,
) -> PipelineCounts:
    """Embed `work` on the cluster at `address` ("auto": a Ray instance started here for
    the run), committing each shard through `write` (CatalogWriter.write) as it arrives."""
    ray = load_ray()
    started = not ray.is_initialized()
    if started:
        connect(ray, address)
    try:
        return _run(ray, work, setup, run_dir, write, progress)
    finally:
        if started:
            ray.shutdown()


def _run(ray, work, setup, run_dir, write, progress) -> PipelineCounts:
    if run_dir.parent.is_dir():
        for old in run_dir.parent.iterdir():  # the latest run only: shards hold vectors
            shutil.rmtree(old, ignore_errors=True)
    run_dir.mkdir(parents=True)
    table = work_table(work)
    pq.write_table(table, run_dir / "work.parquet")
    items = work_items(table)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    block = max(1, min(setup.batch, -(-len(work) // max(1, 2 * cpus))))
    blocks = [table.slice(start, block) for start in range(0, len(work), block)]
    actors = max(1, gpus if gpus and setup.device != "cpu" else cpus)
    on_gpu = {"num_gpus": 1} if gpus and setup.device != "cpu" else {"num_cpus": 1}
    job = ray.data.from_arrow(blocks).map_batches(
        Embedder,
        fn_constructor_kwargs={"setup": setup},
        batch_size=None,  # a block a call: blocks are already the size of a batch or less
        batch_format="pyarrow",
        # The pool may shrink to the nodes left when one is lost.
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        **on_gpu,
    )
    counts = PipelineCounts()
    committed: set[int] = set()
    for n, shard in enumerate(job.iter_batches(batch_size=None, batch_format="pyarrow")):
        pq.write_table(shard, run_dir / f"shard-{n:05d}.parquet")
        ok, bad, kept = commit(shard, items, committed, write)
        counts.add(ok, bad, kept)
        progress(len(ok) + len(bad) + len(kept))  # a block run twice counts once
    return counts


def commit(shard: pa.Table, items: dict[int, WorkItem], committed: set[int], write: Callable):
    """Write the shard's rows not committed yet (`committed`, updated); returns (embedded,
    failed, kept) for the run's counts."""
    fresh = pa.array([row not in committed for row in shard.column("row").to_pylist()])
    rows, ok, vectors, bad, kept = shard_batch(shard.filter(fresh), items)
    if rows:
        write(ok, vectors, bad, kept)
        committed.update(rows)
    return ok, bad, kept


def commit_run(run_dir: Path, write: Callable) -> int:
    """Commit a finished run's shards again (as after a driver lost before its last
    commit); returns the rows written. Rows are upserted by path: nothing is added twice."""
    items = work_items(pq.read_table(run_dir / "work.parquet"))
    committed: set[int] = set()
    for path in sorted(run_dir.glob("shard-*.parquet")):
        commit(pq.read_table(path), items, committed, write)
    return len(committed)


def run_folder(home: Path) -> Path:
    return home / RUNS / time.strftime(f"%Y%m%d-%H%M%S-{os.getpid()}")

"""Tags in the catalog: their definitions and examples, each model's scorer for them, and
the images that hold them by that model. Plain data in and out (search.catalog.records);
each write is one transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from search.catalog import backend, tagreads
from search.catalog.records import TagInfo, TagScore, utcnow
from search.catalog.schema import Caption, Image, ImageTag, Model, Tag, TagExample, TagScorer
from search.catalog.tagreads import known_tags
from search.errors import NotFound, QueryError


class TagStore:
    def __init__(self, session: Callable[[], Session], tx: Callable[[], Session]) -> None:
        self._session = session
        self._tx = tx

    # -- definitions ----------------------------------------------------------------------
    def all(self) -> list[TagInfo]:
        with self._session() as s:
            return [_info(t) for t in s.scalars(select(Tag).order_by(Tag.name))]

    def get(self, name: str) -> TagInfo:
        with self._session() as s:
            tag = s.scalar(select(Tag).where(Tag.name == name))
            if tag is None:
                raise _unknown(s, name)
            return _info(tag)

    def define(self, name: str, kind: str, prompts: Sequence[str]) -> TagInfo:
        """Create the tag, or give an existing one these prompts (and kind); either way
        its version moves on, so every model's scorer is fitted again."""
        with self._tx() as s:
            tag = s.scalar(select(Tag).where(Tag.name == name))
            if tag is None:
                tag = Tag(name=name, kind=kind, prompts="", version=0, created_at=utcnow())
                s.add(tag)
            tag.kind, tag.prompts, tag.version = kind, json.dumps(list(prompts)), tag.version + 1
            s.flush()
            return _info(tag)

    def remove(self, name: str) -> None:
        with self._tx() as s:
            tag_id = s.scalar(select(Tag.id).where(Tag.name == name))
            if tag_id is None:
                raise _unknown(s, name)
            # Foreign keys cascade the rest (examples, scorers, image tags).
            s.execute(delete(Tag).where(Tag.id == tag_id))

    # -- examples ---------------------------------------------------------------------------
    def teach(
        self, name: str, yes: Iterable[int], no: Iterable[int], *, create: bool = False
    ) -> TagInfo:
        """Record images that are (yes) or are not (no) the tag; the tag becomes a probe.
        A later mark of the same image replaces an earlier one. `create`: a new name
        becomes a tag taught from examples alone, in the same transaction (a refused mark
        leaves no tag behind)."""
        yes, no = list(dict.fromkeys(yes)), list(dict.fromkeys(no))
        if set(yes) & set(no):
            both = sorted(set(yes) & set(no))
            raise QueryError(f"image {both[0]} is marked both as {name!r} and as not")
        with self._tx() as s:
            tag = s.scalar(select(Tag).where(Tag.name == name))
            if tag is None and not create:
                raise _unknown(s, name)
            if tag is None:
                tag = Tag(name=name, kind="probe", prompts="[]", version=0, created_at=utcnow())
                s.add(tag)
                s.flush()
            wanted = yes + no
            found = set(s.scalars(select(Image.id).where(Image.id.in_(wanted))))
            if missing := [i for i in wanted if i not in found]:
                raise NotFound(f"no image with id {missing[0]}")
            s.execute(
                delete(TagExample).where(
                    TagExample.tag_id == tag.id, TagExample.image_id.in_(wanted)
                )
            )
            rows = [{"tag_id": tag.id, "image_id": i, "positive": i in yes} for i in wanted]
            if rows:
                s.execute(insert(TagExample), rows)
            tag.kind, tag.version = "probe", tag.version + 1
            s.flush()
            return _info(tag)

    def examples(self, tag_id: int) -> tuple[list[int], list[int]]:
        """(yes, no) image ids, ascending."""
        stmt = (
            select(TagExample.image_id, TagExample.positive)
            .where(TagExample.tag_id == tag_id)
            .order_by(TagExample.image_id)
        )
        with self._session() as s:
            rows = s.execute(stmt).all()
        return [i for i, p in rows if p], [i for i, p in rows if not p]

    # -- scorers and the images they tag ---------------------------------------------------
    def scorer(self, tag_id: int, model_id: str) -> TagScore | None:
        with self._session() as s:
            row = s.get(TagScorer, (tag_id, model_id))
            return None if row is None else _score(row)

    def scorers(self, model_id: str) -> list[tuple[str, TagScore]]:
        """Every tag's scorer for this model, by tag name."""
        stmt = (
            select(Tag.name, TagScorer)
            .join(TagScorer, TagScorer.tag_id == Tag.id)
            .where(TagScorer.model_id == model_id)
            .order_by(Tag.name)
        )
        with self._session() as s:
            return [(name, _score(row)) for name, row in s.execute(stmt)]

    def apply(
        self, model_id: str, results: Sequence[tuple[int, TagScore, np.ndarray, np.ndarray]]
    ) -> list[bool]:
        """For each (tag id, scorer, image ids, their scores) of `results`: store the
        scorer and make exactly those images (with their scores) the ones holding the tag
        by this model. False, and nothing written for it, where the tag changed or went away
        meanwhile (its scorer was fitted from an older version). One transaction for all:
        an index run's tags land together, and at 50 tags the commits were a quarter of
        the writing."""
        done = []
        with self._tx() as s:
            for tag_id, score, ids, scores in results:
                version = s.scalar(select(Tag.version).where(Tag.id == tag_id))
                if version != score.tag_version:
                    done.append(False)
                    continue
                s.merge(
                    TagScorer(
                        tag_id=tag_id,
                        model_id=model_id,
                        weights=np.asarray(score.weights, dtype="<f4").tobytes(),
                        bias=float(score.bias),
                        threshold=float(score.threshold),
                        tag_version=score.tag_version,
                        applied_revision=score.applied_revision,
                        fitted_at=utcnow(),
                    )
                )
                _replace_rows(backend.execute(s.connection()), tag_id, model_id, ids, scores)
                done.append(True)
        return done

    def counts(self, model_id: str | None) -> dict[int, tuple[int, float | None]]:
        """Per tag id: (images holding it, threshold) by this model; (0, None) for a tag
        with no scorer for it."""
        counted: dict[int, tuple[int, float | None]] = {}
        with self._session() as s:
            for tag_id in s.scalars(select(Tag.id)):
                counted[tag_id] = (0, None)
            if model_id is None:
                return counted
            n = (
                select(ImageTag.tag_id, func.count())
                .where(ImageTag.model_id == model_id)
                .group_by(ImageTag.tag_id)
            )
            held = dict(s.execute(n).all())
            thresholds = s.execute(
                select(TagScorer.tag_id, TagScorer.threshold).where(TagScorer.model_id == model_id)
            ).all()
            for tag_id, threshold in thresholds:
                counted[tag_id] = (held.get(tag_id, 0), threshold)
        return counted

    def captioned(self) -> dict[int, str]:
        """Every captioned image's captions, joined: what zero-shot thresholds are
        calibrated against (search.tags.calibration)."""
        with self._session() as s:
            return tagreads.captioned(backend.execute(s.connection()))

    def stale(self, model_id: str) -> list[TagInfo]:
        """Tags whose images for this model are not current: no scorer, one fitted from
        an older version of the tag, or applied before the model's vectors last changed;
        and zero-shot tags calibrated before the newest caption was typed."""
        with self._session() as s:
            revision = s.scalar(select(Model.revision).where(Model.model_id == model_id))
            newest_caption = s.scalar(select(func.max(Caption.created_at)))
            scorers = {
                r.tag_id: r
                for r in s.execute(
                    select(
                        TagScorer.tag_id,
                        TagScorer.tag_version,
                        TagScorer.applied_revision,
                        TagScorer.fitted_at,
                    ).where(TagScorer.model_id == model_id)
                )
            }

            def current(t: Tag) -> bool:
                held = scorers.get(t.id)
                if held is None or (held.tag_version, held.applied_revision) != (
                    t.version,
                    revision,
                ):
                    return False
                return (
                    t.kind != "prompt"
                    or newest_caption is None
                    or (held.fitted_at >= newest_caption)
                )

            return [_info(t) for t in s.scalars(select(Tag).order_by(Tag.id)) if not current(t)]


def _replace_rows(run, tag_id: int, model_id: str, ids: np.ndarray, scores: np.ndarray) -> None:
    """Make (ids, scores) the rows of the tag by the model. Only the difference is written
    where most rows stay as they were (a re-application after new images: bench/
    tags_apply_bench.py), else all are replaced. The driver's executemany throughout: tens
    of thousands of rows per tag are common, and the ORM's insert costs several times the
    write itself."""
    key = (tag_id, model_id)
    where = "WHERE tag_id = ? AND model_id = ?"
    old = run(f"SELECT image_id, score FROM image_tags {where}", key).all()
    # Scores are float32 stored as doubles: an unchanged one compares equal.
    scores = np.asarray(scores, np.float32).astype(np.float64)
    old_ids = np.fromiter((r[0] for r in old), np.int64, len(old))
    old_scores = np.fromiter((r[1] for r in old), np.float64, len(old))
    _, at_old, at_new = np.intersect1d(old_ids, ids, assume_unique=True, return_indices=True)
    kept = np.zeros(len(ids), bool)
    kept[at_new[old_scores[at_old] == scores[at_new]]] = True
    if 2 * kept.sum() < len(old):
        run(f"DELETE FROM image_tags {where}", key)
        kept[:] = False
    else:
        gone = np.setdiff1d(old_ids, ids[kept], assume_unique=True)
        if len(gone):
            run(
                f"DELETE FROM image_tags {where} AND image_id = ?",
                [(*key, i) for i in gone.tolist()],
            )
    rows = [(*key, i, v) for i, v in zip(ids[~kept].tolist(), scores[~kept].tolist())]
    if rows:
        run("INSERT INTO image_tags (tag_id, model_id, image_id, score) VALUES (?, ?, ?, ?)", rows)


def _info(tag: Tag) -> TagInfo:
    return TagInfo(tag.id, tag.name, tag.kind, tuple(json.loads(tag.prompts)), tag.version)


def _score(row: TagScorer) -> TagScore:
    weights = np.frombuffer(row.weights, dtype="<f4").astype(np.float32)
    return TagScore(weights, row.bias, row.threshold, row.tag_version, row.applied_revision)


def _unknown(s: Session, name: str) -> NotFound:
    listing = known_tags(backend.execute(s.connection()))
    return NotFound(f"no tag named {name!r}; {listing}")

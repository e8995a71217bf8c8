"""Plain data passed across module seams (ORM objects stay inside search.catalog.store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from search.models.spec import ModelSpec


def utcnow() -> datetime:
    """Naive UTC, as the catalog stores times."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class RootInfo:
    id: int
    path: str
    added_at: datetime
    image_count: int = 0


@dataclass(frozen=True)
class FileRecord:
    """What the indexer needs to decide whether a file on disk changed."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    indexed_at: datetime
    pixel_hash: str | None = None  # of the decoded pixels; None: not known


@dataclass(frozen=True)
class ImageData:
    """A decoded file's metadata, ready to be written with its vector."""

    root_id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    taken_at: datetime | None
    date: datetime
    # When the file's read began; stored as the image's indexed_at (None: the commit's
    # time). A file modified shortly before it was read is hashed again by later runs.
    read_at: datetime | None = None
    keywords: str = ""  # words embedded in the file (search.keywords)
    pixel_hash: str | None = None  # of the decoded pixels (None: decoded on the device)
    signature: bytes | None = None  # search.duplicates.signature (None: as pixel_hash)
    duration: float | None = None  # seconds, for a video; None: a photo


@dataclass(frozen=True)
class FrameSet:
    """A video's embedded frames: their times (seconds) and one model's vectors."""

    times: tuple[float, ...]
    vectors: np.ndarray


@dataclass(frozen=True)
class ImageMeta:
    id: int
    root_id: int
    path: str
    size: int
    mtime_ns: int
    width: int
    height: int
    taken_at: datetime | None
    date: datetime
    duration: float | None = None  # seconds, for a video

    @property
    def kind(self) -> str:
        return "image" if self.duration is None else "video"


@dataclass(frozen=True)
class FailureData:
    root_id: int
    path: str
    size: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class FailureInfo:
    path: str
    reason: str
    failed_at: datetime

    def to_json(self) -> dict:
        """As `failures --json` and GET /api/failures give it."""
        return {"path": self.path, "reason": self.reason, "failed_at": self.failed_at.isoformat()}


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    spec: ModelSpec
    dim: int
    revision: int
    vectors: int


@dataclass(frozen=True)
class Manifest:
    model_id: str
    generation: int
    filename: str
    kind: str
    count: int
    checksum: str
    revision: int
    built_at: datetime
    # Trailing and defaulted, so older positional construction still works.
    params: dict | None = None
    recall_at_10: float | None = None


@dataclass(frozen=True)
class CaptionInfo:
    id: int
    image_id: int
    text: str
    source: str
    created_at: datetime


@dataclass(frozen=True)
class TagInfo:
    """A tag as defined: its prompts, and its version (bumped by every change)."""

    id: int
    name: str
    kind: str  # "prompt" (zero-shot) or "probe" (taught from examples)
    prompts: tuple[str, ...]
    version: int


@dataclass(frozen=True)
class TagScore:
    """A tag's scorer in one model's space: score = weights · vector + bias; the images
    scoring at least `threshold` hold the tag. `applied_revision`: the model revision
    those images were found at; `tag_version`: the tag version it was fitted from."""

    weights: np.ndarray
    bias: float
    threshold: float
    tag_version: int
    applied_revision: int

"""SQLAlchemy 2 typed models of the catalog. ORM objects never leave search.catalog.store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# A naming convention gives every constraint a stable name, which batch migrations on
# SQLite need to alter tables.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Root(Base):
    __tablename__ = "roots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    added_at: Mapped[datetime] = mapped_column(DateTime)


class Image(Base):
    __tablename__ = "images"
    # AUTOINCREMENT: ids are FAISS ids and URLs, so a deleted image's id is never reused.
    __table_args__ = (
        Index("ix_images_root_id_path", "root_id", "path"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("roots.id", ondelete="CASCADE"))
    # Absolute path as found under the root (not resolved), unique across the library.
    path: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    # Partial-content hash: lets a renamed or moved file keep its id and vectors.
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime)
    # EXIF capture time when known, else the file's mtime: what date filters and sorts use.
    date: Mapped[datetime] = mapped_column(DateTime, index=True)
    indexed_at: Mapped[datetime] = mapped_column(DateTime)
    # Words embedded in the file (IPTC, XMP, EXIF: search.keywords), one piece a line;
    # NULL: not read yet (catalogued before revision 0004). The lexical index holds them.
    keywords: Mapped[str | None] = mapped_column(Text)
    # A digest of the decoded pixels (search.imageio.pixel_digest): a file whose
    # bytes changed but whose pixels did not (new keywords, a new date) keeps its vectors.
    pixel_hash: Mapped[str | None] = mapped_column(String(32))
    # A 384-byte picture of the pixels (search.duplicates.signature) the duplicate finder
    # compares; NULL: not made yet (catalogued before revision 0006, or device-decoded).
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A video's length in seconds; NULL: a photo. A video's vector (in embeddings) is the
    # mean of its frames' (in frames), which are what the index holds for it.
    duration: Mapped[float | None] = mapped_column(Float)


class Embedding(Base):
    __tablename__ = "embeddings"
    # What changed since an index was built: its manifest's revision, then this index.
    __table_args__ = (Index("ix_embeddings_model_id_revision", "model_id", "revision"),)

    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # float32, L2-normalised, little-endian.
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # The model's revision in the transaction that wrote this vector.
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Frame(Base):
    """A video frame's vector for one model, at its time in the video. Frames go with
    their video's vectors: written, replaced and dropped together."""

    __tablename__ = "frames"
    __table_args__ = (Index("ix_frames_model_id_revision", "model_id", "revision"),)

    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0, 1, ... in time order
    t: Mapped[float] = mapped_column(Float)  # seconds from the start
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # as Embedding.vector
    revision: Mapped[int] = mapped_column(Integer, default=0)


class ImageText(Base):
    """The text OCR read in an image (search.ocr): its lines joined, for the lexical
    index (whose `text` column triggers keep in step), and each line with its box and
    confidence. A row with no text: read, none found. No row: not read (yet)."""

    __tablename__ = "image_text"

    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    text: Mapped[str] = mapped_column(Text)
    folded: Mapped[str] = mapped_column(Text)  # the text as the trigram index holds it
    lines: Mapped[str] = mapped_column(Text)  # JSON: [[text, [left, top, right, bottom], conf]]
    read_at: Mapped[datetime] = mapped_column(DateTime)


class Model(Base):
    """Every model that has embedded something, with the spec that loads it again."""

    __tablename__ = "models"

    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)  # JSON: {"model": ..., "pretrained": ...}
    dim: Mapped[int] = mapped_column(Integer)
    # Bumped in every transaction that changes this model's vectors; the index manifest
    # records the revision it was built from, so a stale index file is detected.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class IndexManifest(Base):
    __tablename__ = "index_manifest"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True
    )
    generation: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(40))
    count: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer)
    built_at: Mapped[datetime] = mapped_column(DateTime)
    # JSON: the index's structure and tuned search parameter (efSearch, nprobe), shown by
    # `status`; the FAISS file itself carries the values the search uses.
    params: Mapped[str | None] = mapped_column(Text)
    # Measured against exact search when the index was built; None for an exact index.
    recall_at_10: Mapped[float | None] = mapped_column(Float)


class Failure(Base):
    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("roots.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(DateTime)


class Caption(Base):
    __tablename__ = "captions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(40), default="user")
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Setting(Base):
    """Library-wide state: the active model spec, the serving model id."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Tag(Base):
    """A tag: zero-shot from its prompts ("prompt"), or a probe taught from examples
    ("probe", which keeps its prompts as a prior). What it is, not how a model scores it."""

    __tablename__ = "tags"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    prompts: Mapped[str] = mapped_column(Text)  # JSON list of texts
    # Bumped by every change (prompts, examples): a model's scorer fitted from an older
    # version is fitted again.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class TagExample(Base):
    """An image a person marked as being the tag, or not; independent of any model, so a
    model switch trains the probe again from the same examples."""

    __tablename__ = "tag_examples"

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    positive: Mapped[bool] = mapped_column(Boolean)


class TagScorer(Base):
    """A tag's linear scorer in one model's vector space (score = weights · vector + bias)
    and its calibrated threshold; applied = the model revision its image_tags reflect."""

    __tablename__ = "tag_scorers"

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True, index=True
    )
    weights: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    bias: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    tag_version: Mapped[int] = mapped_column(Integer)
    applied_revision: Mapped[int] = mapped_column(Integer)
    fitted_at: Mapped[datetime] = mapped_column(DateTime)


class ImageTag(Base):
    """An image that holds a tag by one model's scorer (only those: no row, no tag)."""

    __tablename__ = "image_tags"
    __table_args__ = (Index("ix_image_tags_model_id_image_id", "model_id", "image_id"),)

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    score: Mapped[float] = mapped_column(Float)


class DuplicateMember(Base):
    """An image in a group of exact copies, edits of one photo, or a burst
    (search.duplicates); one image may be in one group of each kind."""

    __tablename__ = "duplicate_members"

    group_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(10))

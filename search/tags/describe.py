"""Describing a photo in words (image → text): the tags that fit it best, and the closest
captions the library knows (typed captions, and the captions its saved models were
trained on), ranked by the serving model's cosine."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.models.encoder import Encoder
from search.models.spec import CAPTIONS

if TYPE_CHECKING:
    from search.catalog.store import Catalog

MAX_CAPTIONS = 100_000  # known captions considered, newest typed first
BATCH = 256


@dataclass(frozen=True)
class Description:
    model_id: str
    tags: list[dict]
    captions: list[dict]

    def to_json(self) -> dict:
        return {"model_id": self.model_id, "tags": self.tags, "captions": self.captions}


def known_captions(catalog: Catalog, models_dir: Path) -> list[str]:
    """Distinct caption texts: typed in the library (newest first), then each saved
    model's training set."""
    return known_texts([c.text for c in reversed(catalog.captions())], models_dir)


def known_texts(typed: Iterable[str], models_dir: Path) -> list[str]:
    """Distinct caption texts: `typed`, then each saved model's training set."""
    texts = [" ".join(t.split()) for t in typed]
    for path in sorted(models_dir.glob(f"*/{CAPTIONS}")):
        try:
            texts += path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue  # a model folder being replaced, or damaged: its captions are optional
    return [t for t in dict.fromkeys(texts) if t][:MAX_CAPTIONS]


class CaptionVectors:
    """Caption embeddings by one model, kept in `cache_dir` so each caption is embedded
    once (a library's training captions run to thousands)."""

    def __init__(self, cache_dir: Path, model_id: str, encoder: Callable[[], Encoder]) -> None:
        """`encoder`: gives the model's encoder, called only when the cache lacks a text."""
        digest = hashlib.sha256(model_id.encode()).hexdigest()[:24]
        self.path = cache_dir / "captions" / f"{digest}.npz"
        self.encoder = encoder

    def of(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), np.float32)
        held: dict[str, np.ndarray] = {}
        try:
            with np.load(self.path, allow_pickle=False) as f:
                held = dict(zip(f["texts"].tolist(), f["vectors"]))
        except (OSError, ValueError, KeyError):
            held = {}  # none yet, or unreadable: embedded again
        missing = [t for t in texts if t not in held]
        encoder = self.encoder() if missing else None
        for i in range(0, len(missing), BATCH):
            chunk = missing[i : i + BATCH]
            held.update(zip(chunk, encoder.encode_texts(chunk)))
        if missing:
            self._save(held)
        return np.stack([held[t] for t in texts]).astype(np.float32)

    def _save(self, held: dict[str, np.ndarray]) -> None:
        from search.diskfiles import replacing

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, texts=np.array(list(held)), vectors=np.stack(list(held.values())))


class NearestCaptions:
    """For a sample of the library (the relevance cutoff's), the known captions nearest each
    image, kept in `cache_dir` per model: finding them is a product of the sample with
    every known caption (a few tenths of a second at 4,096 × 4,000 × 512 on 2 cores), which
    a one-query process would otherwise pay each time. Valid while the model, the sampled
    images, their vectors and the known captions are the same (a digest of them)."""

    def __init__(self, cache_dir: Path, model_id: str) -> None:
        digest = hashlib.sha256(model_id.encode()).hexdigest()[:24]
        self.path = cache_dir / "nearest" / f"{digest}.npz"
        self.model_id = model_id

    def of(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        known: list[str],
        known_vectors: Callable,
        *,
        many: int,
    ) -> np.ndarray:
        """The indices into `known` of the `many` nearest each of `vectors` (rows of images
        `ids`; a column each, in no order); `known_vectors()` gives the known captions'
        embeddings, called on a miss only."""
        from search.diskfiles import replacing
        from search.tags.calibration import nearest_known

        key = hashlib.sha256(self.model_id.encode())
        key.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
        # Every 16th component: a re-embedded image changes it, at a sixteenth of the hashing.
        key.update(np.ascontiguousarray(vectors[:, ::16], dtype=np.float32).tobytes())
        key.update("\n".join(known).encode())
        key.update(f"\n{many}".encode())
        try:
            with np.load(self.path, allow_pickle=False) as f:
                if str(f["key"]) == key.hexdigest():
                    return f["nearest"]
        except (OSError, ValueError, KeyError):
            pass  # none yet, or unreadable: found again
        nearest = nearest_known(vectors, known_vectors(), many)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with replacing(self.path) as tmp, open(tmp, "wb") as f:
                np.savez(f, key=np.array(key.hexdigest()), nearest=nearest)
        except OSError:
            pass  # a cache: a full or read-only disk only costs finding them again
        return nearest


KnownCaptions = Callable[[str], tuple[list[str], np.ndarray]]


def known_caption_vectors(
    catalog: Catalog, models_dir: Path, cache_dir: Path, encoder_for: Callable[[str], Encoder]
) -> KnownCaptions:
    """model id → the captions the library knows (known_captions) and their embeddings
    by that model (cached; its encoder loaded only for captions not embedded before)."""

    def read(model_id: str) -> tuple[list[str], np.ndarray]:
        texts = known_captions(catalog, models_dir)
        cache = CaptionVectors(cache_dir, model_id, lambda: encoder_for(model_id))
        return texts, cache.of(texts)

    return read


def describe(
    catalog: Catalog,
    model_id: str,
    vector: np.ndarray,
    captions: list[str],
    caption_vectors: np.ndarray,
    k: int = 5,
) -> Description:
    """Tags: every one the image holds, best margin over its threshold first, then the
    nearest misses up to `k`. Captions: the `k` closest by cosine."""
    scored = []
    for name, s in catalog.tags.scorers(model_id):
        score = float(vector @ s.weights + s.bias)
        scored.append((score >= s.threshold, score - s.threshold, name, score))
    scored.sort(key=lambda t: (not t[0], -t[1]))
    held = sum(1 for t in scored if t[0])
    tags = [
        {"name": name, "score": round(score, 6), "holds": holds}
        for holds, _, name, score in scored[: max(held, k)]
    ]
    cosines = caption_vectors @ vector if len(captions) else np.zeros(0)
    best = np.argsort(-cosines, kind="stable")[:k]
    return Description(
        model_id,
        tags,
        [{"text": captions[i], "score": round(float(cosines[i]), 6)} for i in best],
    )

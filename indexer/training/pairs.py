"""(image, caption) pairs for training and evaluation: from a CSV/TSV/JSONL file or from
captions stored in the catalog; decoded once into model-ready pixels.

Rows whose image is missing or undecodable are skipped and reported, never fatal. The
pixels live in one array that the training and validation splits share: in memory while
it takes at most a quarter of it (50,000 images at 224 px are 7.5 GB), else in a file
mapped into memory, which the OS pages in as batches need it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.catalog.store import Catalog
from search.errors import ConfigError, ImageDecodeError
from search.imageio import load_image
from search.index.ann import physical_memory


@dataclass(frozen=True)
class Pair:
    image: Path
    caption: str


@dataclass
class PairSet:
    """Decoded pairs: image_index maps each caption to one of the set's images (several
    captions may describe one image); image i's pixels are pixels[rows[i]], as subsets
    share the array of the set they came from."""

    pixels: np.ndarray  # uint8 (N, S, S, 3): a plain or memory-mapped array
    captions: list[str]
    image_index: np.ndarray  # int64 (n_captions,): the set's image of each caption
    paths: list[Path]  # the set's images
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (row, reason)
    rows: np.ndarray | None = None  # the set's images in `pixels`; None: all, in order

    def __post_init__(self) -> None:
        if self.rows is None:
            self.rows = np.arange(len(self.paths), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def n_images(self) -> int:
        return len(self.rows)

    def image_pixels(self, images: np.ndarray) -> np.ndarray:
        """uint8 (len(images), S, S, 3) of the set's images numbered `images` (a copy)."""
        return self.pixels[self.rows[np.asarray(images, dtype=np.int64)]]

    def digest(self) -> str:
        """Identifies the data a model was trained on (paths and captions, in order)."""
        h = hashlib.sha256()
        for cap, idx in zip(self.captions, self.image_index):
            h.update(f"{self.paths[idx]}\t{cap}\n".encode())
        return h.hexdigest()[:16]

    def subset(self, caption_rows: np.ndarray) -> PairSet:
        """These captions and their images, sharing this set's pixel array."""
        used = np.unique(self.image_index[caption_rows])
        return PairSet(
            self.pixels,
            [self.captions[i] for i in caption_rows],
            np.searchsorted(used, self.image_index[caption_rows]).astype(np.int64),
            [self.paths[i] for i in used],
            rows=self.rows[used],
        )


def read_pairs_file(path: Path) -> tuple[list[Pair], list[tuple[str, str]]]:
    """Rows of a pairs file, image paths resolved against the file's folder."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such pairs file")
    base = path.parent
    rows: list[tuple[str, dict]] = []
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append((f"line {n}", json.loads(line)))
                        except ValueError:
                            rows.append((f"line {n}", {}))
        else:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f, delimiter=delimiter)
                fields = {name.strip().lower() for name in reader.fieldnames or []}
                if not {"image", "caption"} <= fields:
                    raise ConfigError(
                        f"{path}: needs a header with 'image' and 'caption' columns "
                        f"(found: {', '.join(sorted(fields)) or 'none'})"
                    )
                for n, row in enumerate(reader, 2):
                    rows.append((f"line {n}", {k.strip().lower(): v for k, v in row.items() if k}))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    pairs, skipped = [], []
    for where, row in rows:
        image, caption = row.get("image"), row.get("caption")
        if not isinstance(image, str) or not isinstance(caption, str) or not image.strip():
            skipped.append((where, "missing image or caption"))
        elif not caption.strip():
            skipped.append((where, "empty caption"))
        else:
            pairs.append(Pair((base / image.strip()).absolute(), caption.strip()))
    if not pairs and not skipped:
        raise ConfigError(f"{path}: no pairs (needs 'image' and 'caption' keys)")
    return pairs, skipped


def catalog_pairs(catalog: Catalog) -> list[Pair]:
    """Captions stored in the catalog (e.g. typed into the web UI)."""
    caps = catalog.captions()
    metas = catalog.images({c.image_id for c in caps})
    return [Pair(Path(metas[c.image_id].path), c.text) for c in caps if c.image_id in metas]


def decode_pairs(
    pairs: list[Pair],
    prepare: Callable,
    image_size: int,
    *,
    max_megapixels: float = 100.0,
    workers: int = 2,
    skipped: list[tuple[str, str]] | None = None,
    memory_budget: int | None = None,
    spill_dir: Path | None = None,
) -> PairSet:
    """Decode each distinct image once (threads), straight into the pixel array; drop
    pairs whose image fails. Past `memory_budget` bytes (default: a quarter of physical
    memory) the array is a file in `spill_dir`, removed once mapped."""
    skipped = list(skipped or [])
    unique = list(dict.fromkeys(p.image for p in pairs))
    shape = (len(unique), image_size, image_size, 3)
    pixels = _pixel_array(shape, memory_budget or physical_memory() // 4, spill_dir)

    def decode(at: int) -> str | None:
        try:
            image = load_image(unique[at], max_megapixels=max_megapixels, min_side=image_size)
            pixels[at] = prepare(image.image)
        except ImageDecodeError as exc:
            return exc.reason
        except OSError as exc:
            return f"cannot read file: {exc.strerror or exc}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        failures = list(pool.map(decode, range(len(unique))))
    good: dict[Path, int] = {}
    for at, (path, reason) in enumerate(zip(unique, failures)):
        if reason is not None:
            skipped.append((str(path), reason))
            continue
        if len(good) != at:
            pixels[len(good)] = pixels[at]  # close the gap in place: no second array
        good[path] = len(good)
    if not good:
        raise ConfigError("no usable pairs: every image is missing or undecodable")
    kept = [p for p in pairs if p.image in good]
    return PairSet(
        pixels[: len(good)],
        [p.caption for p in kept],
        np.array([good[p.image] for p in kept], dtype=np.int64),
        list(good),
        skipped,
    )


def _pixel_array(shape: tuple[int, ...], budget: int, spill_dir: Path | None) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64))
    if size <= budget:
        return np.empty(shape, dtype=np.uint8)
    folder = spill_dir or Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="pairs-", suffix=".u8") as f:
        try:
            # Claim the blocks now: a full disk found while pages are written back would
            # kill the process with SIGBUS instead of saying so.
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as exc:
            raise ConfigError(
                f"{size / 2**30:.1f} GB of training images do not fit in memory, nor on "
                f"disk in {folder}: {exc.strerror}"
            ) from exc
        # Mapped, then unlinked when the with ends: the OS frees the disk space when the
        # mapping goes, even if the process is killed.
        return np.memmap(f.name, dtype=np.uint8, mode="w+", shape=shape)

"""(image, caption) pairs for training and evaluation: from a CSV/TSV/JSONL file or from
captions stored in the catalog; decoded once into model-ready pixels.

Rows whose image is missing or undecodable are skipped and reported, never fatal.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.catalog import Catalog
from search.errors import ConfigError, ImageDecodeError
from search.imageio import load_image


@dataclass(frozen=True)
class Pair:
    image: Path
    caption: str


@dataclass
class PairSet:
    """Decoded pairs: pixels[i] is the image of captions[i]'s row; image_index maps each
    caption to its unique image (several captions may describe one image)."""

    pixels: np.ndarray  # uint8 (n_images, S, S, 3), unique images
    captions: list[str]
    image_index: np.ndarray  # int64 (n_captions,)
    paths: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (row, reason)

    def __len__(self) -> int:
        return len(self.captions)

    def digest(self) -> str:
        """Identifies the data a model was trained on (paths and captions, in order)."""
        h = hashlib.sha256()
        for cap, idx in zip(self.captions, self.image_index):
            h.update(f"{self.paths[idx]}\t{cap}\n".encode())
        return h.hexdigest()[:16]

    def subset(self, caption_rows: np.ndarray) -> PairSet:
        used = np.unique(self.image_index[caption_rows])
        remap = {int(old): new for new, old in enumerate(used)}
        return PairSet(
            self.pixels[used],
            [self.captions[i] for i in caption_rows],
            np.array([remap[int(self.image_index[i])] for i in caption_rows], dtype=np.int64),
            [self.paths[i] for i in used],
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
) -> PairSet:
    """Decode each distinct image once (threads), drop pairs whose image fails."""
    skipped = list(skipped or [])
    unique = list(dict.fromkeys(p.image for p in pairs))

    def decode(path: Path) -> np.ndarray | str:
        try:
            return prepare(
                load_image(path, max_megapixels=max_megapixels, min_side=image_size).image
            )
        except ImageDecodeError as exc:
            return exc.reason
        except OSError as exc:
            return f"cannot read file: {exc.strerror or exc}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        decoded = list(pool.map(decode, unique))
    good = {}
    for path, result in zip(unique, decoded):
        if isinstance(result, str):
            skipped.append((str(path), result))
        else:
            good[path] = len(good)
    if not good:
        raise ConfigError("no usable pairs: every image is missing or undecodable")
    kept = [p for p in pairs if p.image in good]
    ok_pixels = [r for r in decoded if not isinstance(r, str)]
    return PairSet(
        np.stack(ok_pixels),
        [p.caption for p in kept],
        np.array([good[p.image] for p in kept], dtype=np.int64),
        list(good),
        skipped,
    )

"""Camera-like test photos: 4000×3000 JPEGs of smooth colour fields plus sensor grain,
about 4–5 MB each, so decoding costs what it costs on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def camera_photo(seed: int, size: tuple[int, int] = (4000, 3000)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    grain = rng.normal(0, 7, (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def make_photos(folder: Path, n: int) -> list[Path]:
    """n photos in folder (kept between runs: generating them is slow)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"IMG_{i:05d}.JPG"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            camera_photo(i).save(tmp, "JPEG", quality=92)
            tmp.replace(path)
        paths.append(path)
    return paths

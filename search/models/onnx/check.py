"""What an export is checked on before anything uses it, and the bar it must clear."""

from __future__ import annotations

import numpy as np

# The lowest cosine between a fast path's vectors and the reference's that is accepted:
# below it, rankings start to differ from the model's own.
MIN_COSINE = 0.999


def check_pixels(size: int, n: int = 6) -> np.ndarray:
    """Photo-like uint8 images: smooth colour fields with grain, and one flat grey."""
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n - 1):
        coarse = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
        grain = rng.normal(0, 8, (size, size, 1))
        out.append(np.clip(smooth + grain, 0, 255).astype(np.uint8))
    out.append(np.full((size, size, 3), 128, np.uint8))
    return np.stack(out)


def worst_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest cosine between matching rows of two sets of unit vectors."""
    return float((a * b).sum(axis=1).min())

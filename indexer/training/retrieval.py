"""Retrieval metrics: how well captions find their images (and images their captions)."""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def ranks_text_to_image(text: np.ndarray, image: np.ndarray, image_index: np.ndarray) -> np.ndarray:
    """0-based rank of each caption's own image among all images: the number of images
    strictly closer to the caption (a tie with its own image does not push it down)."""
    sims = text @ image.T
    own = sims[np.arange(len(text)), image_index]
    return (sims > own[:, None]).sum(axis=1)


def ranks_image_to_text(text: np.ndarray, image: np.ndarray, image_index: np.ndarray) -> np.ndarray:
    """For each image, the best rank among its captions."""
    sims = image @ text.T
    best = []
    for img in range(len(image)):
        mine = np.flatnonzero(image_index == img)
        if len(mine):
            best.append((sims[img][None, :] > sims[img, mine][:, None]).sum(axis=1).min())
    return np.array(best, dtype=np.int64)


def recall_report(ranks: np.ndarray) -> dict:
    return {
        "n": int(len(ranks)),
        **{f"recall@{k}": round(float((ranks < k).mean()), 4) for k in KS},
        "median_rank": float(np.median(ranks) + 1),
    }

"""Synthetic embedding sets for the query benchmark: unit vectors, clustered as real image
embeddings are (uniform noise would be a worst case no photo library looks like)."""

from __future__ import annotations

import numpy as np

DIM = 512


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _shuffled_unit(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out /= np.linalg.norm(out, axis=1, keepdims=True)  # in place: 1M × 512 is 2 GiB
    return out[rng.permutation(len(out))]


def clip_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """Shaped like CLIP image embeddings of a photo library: one direction shared by all
    (CLIP's "cone": random pairs have cosine ≈ 0.5), 100 topics, events of about 200
    photos each within a topic, and photos spread inside an event along 16 directions of
    its own (a photo's nearest neighbour is at cosine ≈ 0.9). Mixture weights are squared
    norms of the parts: shared 0.5, topic 0.15, event 0.15, within-event 0.17, noise 0.03.
    """
    shared, topic, event, spread, noise = np.sqrt([0.5, 0.15, 0.15, 0.17, 0.03])
    direction = _unit(rng.standard_normal(DIM))
    topics = _unit(rng.standard_normal((100, DIM)))
    events = max(1, n // 200)
    event_topic = rng.integers(0, len(topics), events)
    out = np.empty((n, DIM), np.float32)
    start = 0
    for k, size in enumerate(rng.multinomial(n, np.full(events, 1 / events))):
        center = shared * direction + topic * topics[event_topic[k]]
        center += event * _unit(rng.standard_normal(DIM))
        basis = _unit(rng.standard_normal((16, DIM)))
        local = rng.standard_normal((size, 16)) / 4 @ basis
        jitter = _unit(rng.standard_normal((size, DIM)))
        out[start : start + size] = center + spread * local + noise * jitter
        start += size
    return _shuffled_unit(out, rng)


def separated(n: int, rng: np.random.Generator) -> np.ndarray:
    """A stress case: one cluster per 1,000 vectors around mutually orthogonal centres,
    each spread along 32 directions of its own. No photo library is this fragmented (a
    random pair has cosine ≈ 0, a nearest neighbour ≈ 0.58); graph indexes find it hard
    to cross between clusters."""
    clusters = max(10, n // 1000)
    centers = _unit(rng.standard_normal((clusters, DIM)))
    out = np.empty((n, DIM), np.float32)
    start = 0
    for c, size in enumerate(rng.multinomial(n, np.full(clusters, 1 / clusters))):
        basis = rng.standard_normal((32, DIM)) / np.sqrt(DIM)
        spread = rng.standard_normal((size, 32)) * 0.5
        noise = rng.standard_normal((size, DIM)) * 0.02
        out[start : start + size] = centers[c] + spread @ basis + noise
        start += size
    return _shuffled_unit(out, rng)


DATASETS = {"clip-like": clip_like, "separated": separated}

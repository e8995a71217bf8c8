"""Pairs of images found and judged from their signatures and capture times, then grouped.

- exact: the same pixels, whatever the container or metadata (a JPEG saved again as PNG).
  Judged by decoding both files in full, only for pairs whose signatures already agree.
- near: the same photo edited (recompressed, resized, cropped, retouched): the luma of
  one matches the other's, or a crop of it, almost perfectly, colours agree, and the
  capture times do not tell two different moments.
- burst: different shots of the same scene seconds apart: capture times within
  BURST_SECONDS and pictures alike, though not alike enough to be one photo.

Candidates come from each image's nearest neighbours by coarse luma and chroma (FAISS:
exact search on small libraries, HNSW on large ones), from the capture-time order (for
bursts) and from identical signatures (blank pictures), so the cost grows with the
library, not with its square.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from search.duplicates.signature import CHROMA, LUMA, unpack

NEIGHBOURS = 8  # candidates per image by coarse similarity
# Coarse similarity below which neighbours are not looked at closely. Versions of one
# photo score above it (by luma alone, 5th percentile 0.82-0.91 on the bench's families;
# their colours agree too) except some crops of crops, which join their group through the
# original.
COARSE = 0.8
CHROMA_WEIGHT = 0.5
NEAR = 0.95  # aligned luma correlation of one photo and its edit
BURST = 0.75  # of two shots of one scene
CHROMA_NEAR = 10.0  # mean chroma difference (of 0..255) one photo's edits stay within
CHROMA_BURST = 12.0
# Luma spread (standard deviation) of one photo over its edit's: retouching moves it by
# 15% or so, recompressing and resizing by less. Correlation alone ignores it, so a faint
# picture and a strong one laid out alike would pass for one photo (a dim square on
# purple and a bright disc on purple did, on the sample pictures).
AMPLITUDE_NEAR = 1.5
BURST_SECONDS = 10.0
SAME_MOMENT = 1.0  # capture times closer than this may be one photo
# Mean signature difference within which a pair may be the same pixels, and is decoded in
# full to know: the indexer reduces a JPEG while decoding it and a PNG after, so two
# files of the same pixels give signatures a little apart.
EXACT_TOLERANCE = 2.0
FLAT_LIMIT = 30_000  # above this many images, neighbours come from HNSW
# Crops looked for: the width kept at 70-100% (the height follows from the two aspect
# ratios), placed at the start, middle or end of each axis; then refined twice around
# the best, halving the steps.
SCALES = (1.0, 0.9, 0.8, 0.7)
SCALE_STEP = 0.1
ANCHORS = (0.0, 0.5, 1.0)
ANCHOR_STEP = 0.5
MIN_SCALE = 0.65
REFINE_ROUNDS = 2
REFINE_MARGIN = 0.1  # how far below a threshold the grid's best may be and still be refined


@dataclass(frozen=True)
class Group:
    kind: str  # "exact", "near" or "burst"
    ids: tuple[int, ...]


@dataclass(frozen=True)
class Pairs:
    """Candidate pairs (positions i < j) with what was measured of each."""

    i: np.ndarray
    j: np.ndarray
    aligned: np.ndarray  # best luma correlation over the crops either way
    chroma: np.ndarray  # mean absolute chroma difference
    amplitude: np.ndarray  # ratio ≥ 1 of the two luma spreads over the aligned crop
    seconds: np.ndarray  # |capture time difference|; nan where either is unknown


def find_groups(
    ids: np.ndarray,
    signatures: np.ndarray,
    sizes: np.ndarray,
    taken: np.ndarray,
    same_pixels: Callable[[int, int], bool],
) -> list[Group]:
    """Groups of the images `ids` (with their (N, SIZE) signatures, (N, 2) upright sizes
    and (N,) capture times in seconds, nan when unknown). `same_pixels(a, b)` decodes two
    images (by id) in full and compares them."""
    if len(ids) < 2:
        return []
    found = candidates(signatures, taken)
    if len(found) == 0:
        return []
    pairs = measure(signatures, sizes, taken, found)
    return group(ids, signatures, sizes, pairs, same_pixels)


def candidates(signatures: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """(M, 2) positions i < j worth a close look, each pair once."""
    coarse = _coarse(signatures)
    k = min(NEIGHBOURS + 1, len(coarse))
    if len(coarse) <= FLAT_LIMIT:
        index = faiss.IndexFlatIP(coarse.shape[1])
    else:
        index = faiss.IndexHNSWFlat(coarse.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.hnsw.efSearch = 32
    index.add(coarse)
    sims, nbrs = index.search(coarse, k)
    rows = np.repeat(np.arange(len(coarse)), k)
    keep = (nbrs.ravel() >= 0) & (sims.ravel() >= COARSE) & (nbrs.ravel() != rows)
    found = [
        np.stack([rows[keep], nbrs.ravel()[keep]], axis=1),
        _close_in_time(taken),
        _same_signature(signatures),
    ]
    pairs = np.concatenate(found)
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0)


def measure(
    signatures: np.ndarray, sizes: np.ndarray, taken: np.ndarray, pairs: np.ndarray
) -> Pairs:
    luma, chroma = unpack(signatures)
    i, j = pairs[:, 0], pairs[:, 1]
    aspect = np.log(sizes[:, 0] / np.maximum(sizes[:, 1], 1))
    seconds = np.abs(taken[i] - taken[j])
    # What a pair must reach to count for anything: BURST when its times are close, else NEAR.
    floor = np.where(seconds <= BURST_SECONDS, BURST, NEAR) - REFINE_MARGIN
    in_i, where_i = _aligned(luma[i], luma[j], aspect[j] - aspect[i], floor)
    in_j, where_j = _aligned(luma[j], luma[i], aspect[i] - aspect[j], floor)
    # The chroma and the luma spread are compared over the crop the luma found: a crop
    # that cuts off a red coat changes the colours of the whole frame, not those of what
    # it kept.
    first = in_i >= in_j
    where = np.where(first[:, None], where_i, where_j)
    ratio = np.exp(np.where(first, aspect[j] - aspect[i], aspect[i] - aspect[j]))
    sx, ax, ay = where.T

    def crop(whole: np.ndarray, side: int) -> np.ndarray:
        ry = _resamplers(ay, sx / ratio, side)
        rx = _resamplers(ax, sx, side)
        if whole.ndim == 4:  # chroma: two planes
            ry, rx = ry[:, None], rx[:, None]
        return ry @ whole @ np.swapaxes(rx, -1, -2)

    whole = np.where(first[:, None, None, None], chroma[i], chroma[j])
    part = np.where(first[:, None, None, None], chroma[j], chroma[i])
    # As 2×2 means: what the alignment leaves over does not count.
    view = crop(whole, CHROMA)
    chroma_diff = np.abs(_pooled_chroma(view) - _pooled_chroma(part)).mean(axis=(1, 2, 3))
    whole = np.where(first[:, None, None], luma[i], luma[j])
    part = np.where(first[:, None, None], luma[j], luma[i])
    spreads = np.stack([crop(whole, LUMA).std(axis=(1, 2)), part.std(axis=(1, 2))], axis=1)
    spreads = np.maximum(spreads, 1.0)  # flat pictures: no spread to compare
    amplitude = spreads.max(axis=1) / spreads.min(axis=1)
    return Pairs(i, j, np.maximum(in_i, in_j), chroma_diff, amplitude, seconds)


def _pooled_chroma(chroma: np.ndarray) -> np.ndarray:
    return chroma.reshape(-1, 2, 2, CHROMA // 2, 2, CHROMA // 2).mean(axis=(3, 5))


def group(
    ids: np.ndarray,
    signatures: np.ndarray,
    sizes: np.ndarray,
    pairs: Pairs,
    same_pixels: Callable[[int, int], bool],
) -> list[Group]:
    different_moments = pairs.seconds >= SAME_MOMENT  # False where a time is unknown
    near = (
        (pairs.aligned >= NEAR)
        & (pairs.chroma <= CHROMA_NEAR)
        & (pairs.amplitude <= AMPLITUDE_NEAR)
        & ~different_moments
    )
    burst = (
        (pairs.seconds <= BURST_SECONDS)
        & (pairs.aligned >= BURST)
        & (pairs.chroma <= CHROMA_BURST)
        & ~near
    )
    sig = signatures.astype(np.int16)
    same_size = (sizes[pairs.i] == sizes[pairs.j]).all(axis=1)
    difference = np.abs(sig[pairs.i] - sig[pairs.j]).mean(axis=1)
    # Identical signatures are asked about even when nothing in them aligns: blank or
    # single-colour pictures (a black frame, an empty screenshot) have no pattern to.
    maybe = same_size & (((difference <= EXACT_TOLERANCE) & near) | (difference == 0))
    exact = np.zeros(len(pairs.i), bool)
    for n in np.flatnonzero(maybe):
        exact[n] = same_pixels(int(ids[pairs.i[n]]), int(ids[pairs.j[n]]))
    near |= exact
    # Each kind's groups are the connected pieces of its pairs and the stronger kinds'.
    exact_groups = _components(len(ids), pairs.i[exact], pairs.j[exact], pairs.i[exact])
    near_groups = _components(len(ids), pairs.i[near], pairs.j[near], pairs.i[near & ~exact])
    # Two versions of one photo that match each other less well than each matches the
    # original (two different crops) are still one photo, not a burst.
    photo = np.arange(len(ids))
    for members in near_groups:
        photo[members] = members[0]
    burst &= photo[pairs.i] != photo[pairs.j]
    edges = near | burst
    burst_groups = _components(len(ids), pairs.i[edges], pairs.j[edges], pairs.i[burst])
    return [
        Group(kind, tuple(sorted(int(ids[m]) for m in members)))
        for kind, found in (("exact", exact_groups), ("near", near_groups), ("burst", burst_groups))
        for members in found
    ]


def _coarse(signatures: np.ndarray) -> np.ndarray:
    """Luma at 8×8, centred and of unit length, beside the chroma at 4×4 (its distance
    from grey, weighted by CHROMA_WEIGHT); of unit length, so cosine compares both. The
    chroma keeps apart pictures laid out alike in different colours: without it, 100,000
    random smooth pictures gave 4 neighbours each above COARSE; with it, none."""
    luma, chroma = unpack(signatures)
    small = luma.reshape(-1, 8, 2, 8, 2).mean(axis=(2, 4)).reshape(len(luma), -1)
    colour = chroma.reshape(-1, 2, 4, 2, 4, 2).mean(axis=(3, 5)).reshape(len(luma), -1)
    both = np.hstack([_normalised(small), CHROMA_WEIGHT * (colour - 128) / 64])
    norm = np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-6)  # a flat grey picture
    return np.ascontiguousarray(both / norm, np.float32)


def _normalised(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norm, 1e-6), dtype=np.float32)


def _close_in_time(taken: np.ndarray) -> np.ndarray:
    """Pairs whose capture times lie within BURST_SECONDS (at most 16 later ones each)."""
    dated = np.flatnonzero(~np.isnan(taken))
    order = dated[np.argsort(taken[dated], kind="stable")]
    times = taken[order]
    out = []
    for step in range(1, 17):
        close = times[step:] - times[:-step] <= BURST_SECONDS
        if not close.any():
            break
        out.append(np.stack([order[:-step][close], order[step:][close]], axis=1))
    return np.concatenate(out) if out else np.empty((0, 2), np.int64)


def _same_signature(signatures: np.ndarray) -> np.ndarray:
    """Pairs with identical signatures, chained (each to the next of its kind)."""
    _, inverse = np.unique(signatures, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    same = inverse.ravel()[order[1:]] == inverse.ravel()[order[:-1]]
    return np.stack([order[:-1][same], order[1:][same]], axis=1)


def _resampler(start: float, scale: float, side: int) -> np.ndarray:
    """(side, side) bilinear weights taking the part [start, start + scale) of an axis
    to the full `side` samples."""
    pos = (start + (np.arange(side) + 0.5) / side * scale) * side - 0.5
    pos = np.clip(pos, 0, side - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, side - 1)
    weights = np.zeros((side, side), np.float32)
    weights[np.arange(side), lo] += 1 - (pos - lo)
    weights[np.arange(side), hi] += pos - lo
    return weights


# Every crop the search can look at, on a grid finer than its last refinement step:
# side -> [scale index, anchor index] -> resampler, so a look is a gather.
_GRID = 1 / 64
_SCALE_STEPS = round((1 - MIN_SCALE) / _GRID) + 1
_ANCHOR_STEPS = round(1 / _GRID) + 1
COARSE_SIDE = LUMA // 2  # the grid search runs on luma pooled to 8×8, four times cheaper
_TABLES = {
    side: np.stack(
        [
            np.stack([_resampler(a * _GRID * (1 - s), s, side) for a in range(_ANCHOR_STEPS)])
            for s in (1 - np.arange(_SCALE_STEPS) * _GRID)
        ]
    )
    for side in {COARSE_SIDE, CHROMA, LUMA}
}


def _resamplers(anchor: np.ndarray, scale: np.ndarray, side: int) -> np.ndarray:
    """(M, side, side): the resamplers keeping `scale` of an axis at `anchor` (0: the
    start, 1: the end), from the table."""
    s = np.clip(np.rint((1 - scale) / _GRID), 0, _SCALE_STEPS - 1).astype(np.intp)
    a = np.clip(np.rint(anchor / _GRID), 0, _ANCHOR_STEPS - 1).astype(np.intp)
    return _TABLES[side][s, a]


class _Search:
    """The best crop of `whole` for `part`, per pair, at one resolution."""

    def __init__(self, whole: np.ndarray, part: np.ndarray, aspect: np.ndarray) -> None:
        self.side = whole.shape[1]
        self.whole = whole
        self.target = _normalised(part.reshape(len(part), -1))
        self.aspect = aspect
        self.best = np.full(len(part), -1.0, np.float32)
        self.where = np.zeros((len(part), 3), np.float32)  # sx, x anchor, y anchor

    def look(self, rows: np.ndarray, sx: np.ndarray, ax: np.ndarray, ay: np.ndarray) -> None:
        sy = sx / self.aspect[rows]
        fits = (sy <= 1.0 + 1e-6) & (sy >= MIN_SCALE) & (sx <= 1.0 + 1e-6) & (sx >= MIN_SCALE)
        rows, sx, sy, ax, ay = rows[fits], sx[fits], sy[fits], ax[fits], ay[fits]
        if len(rows) == 0:
            return
        ry = _resamplers(ay, sy, self.side)
        rx = _resamplers(ax, sx, self.side)
        view = ry @ self.whole[rows] @ rx.transpose(0, 2, 1)
        corr = (_normalised(view.reshape(len(rows), -1)) * self.target[rows]).sum(axis=1)
        better = corr > self.best[rows]
        self.best[rows[better]] = corr[better]
        self.where[rows[better]] = np.stack([sx, ax, ay], axis=1)[better]


def _aligned(
    whole: np.ndarray, part: np.ndarray, log_aspect: np.ndarray, floor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best correlation of `part` with a crop of `whole`, and that crop (sx, x anchor,
    y anchor). A crop keeps scale sx of the
    width, and of the height the share the two images' aspect ratios then require
    (log_aspect: log(aspect of part / aspect of whole)).

    Searched on a grid of scales and placements at 8×8, then at 16×16 from the best of
    those and refined around it, only for pairs whose 8×8 best reaches `floor` (pooling
    smooths away differences, so the others almost never reach it at 16×16) and while not
    yet NEAR: refining cannot change what is decided of the others."""
    m = len(part)
    aspect = np.exp(log_aspect).astype(np.float32)
    coarse = _Search(_pooled(whole), _pooled(part), aspect)
    every = np.arange(m)
    ones = np.ones(m, np.float32)
    for sx in SCALES:
        for ax in ANCHORS if sx < 1 else (0.0,):
            for ay in ANCHORS:
                coarse.look(every, sx * ones, ax * ones, ay * ones)
    fine = _Search(whole, part, aspect)
    rows = np.flatnonzero(coarse.best >= floor)
    fine.look(rows, *coarse.where[rows].T)
    step_s, step_a = SCALE_STEP / 2, ANCHOR_STEP / 2
    for _ in range(REFINE_ROUNDS):
        rows = np.flatnonzero((fine.best >= floor) & (fine.best < NEAR))
        centre = fine.where[rows]
        for ds in (-step_s, 0.0, step_s):
            for dx in (-step_a, 0.0, step_a):
                for dy in (-step_a, 0.0, step_a):
                    fine.look(
                        rows,
                        centre[:, 0] + ds,
                        np.clip(centre[:, 1] + dx, 0, 1),
                        np.clip(centre[:, 2] + dy, 0, 1),
                    )
        step_s, step_a = step_s / 2, step_a / 2
    # Pairs never looked at closely keep their 8×8 best, below their floor all the same.
    looked = fine.best > -1.0
    best = np.where(looked, fine.best, np.minimum(coarse.best, floor - 1e-3))
    return best, np.where(looked[:, None], fine.where, coarse.where)


def _pooled(luma: np.ndarray) -> np.ndarray:
    return luma.reshape(-1, COARSE_SIDE, 2, COARSE_SIDE, 2).mean(axis=(2, 4))


def _components(n: int, a: np.ndarray, b: np.ndarray, must_touch: np.ndarray) -> list[list[int]]:
    """Connected pieces (≥ 2 members) of the graph on n nodes with edges a–b, keeping only
    those holding a node of `must_touch` (an endpoint of the kind's own pairs)."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    wanted = {root(x) for x in must_touch.tolist()}
    pieces: dict[int, list[int]] = {}
    for x in set(a.tolist()) | set(b.tolist()):
        r = root(x)
        if r in wanted:
            pieces.setdefault(r, []).append(x)
    return [sorted(p) for p in pieces.values() if len(p) > 1]

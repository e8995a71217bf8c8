"""The library's duplicate groups: found again only when its images changed since the last
time (the catalog keeps them), after making the signatures images still lack."""

from __future__ import annotations

from search.catalog.dupstore import StoredGroup
from search.catalog.store import Catalog
from search.duplicates.grouping import find_groups
from search.duplicates.signature import SIZE, signature
from search.errors import ImageDecodeError
from search.imageio import load_image, pixel_digest
from search.progress import Progress

# What images are decoded to for a missing signature: the size the indexer decodes to for
# CLIP models (224 px), which the signature's 16×16 average barely depends on.
SIGNATURE_SIDE = 224
BATCH = 200


def duplicate_groups(
    catalog: Catalog, max_megapixels: float, shown: Progress | None = None, *, again=False
) -> list[StoredGroup]:
    """The groups, found again when the images changed since they were stored (or
    `again`)."""
    store = catalog.duplicates
    state = store.state()
    if not again and store.stored_state() == state:
        return store.groups()
    shown = shown or Progress(show=False)
    sign_missing(catalog, max_megapixels, shown)
    data = store.signatures(SIZE)
    digests: dict[int, str | None] = {}

    def digest(image_id: int) -> str | None:
        """The full-size pixels' digest, each image decoded once at most."""
        if image_id not in digests:
            path = catalog.image(image_id).path
            try:
                image = load_image(path, max_megapixels=max_megapixels).image
                digests[image_id] = pixel_digest(image)
            except (ImageDecodeError, OSError):
                digests[image_id] = None  # gone or unreadable now: not a proven copy
        return digests[image_id]

    def same_pixels(a: int, b: int) -> bool:
        return digest(a) is not None and digest(a) == digest(b)

    with shown.bar(None, desc="finding duplicates", unit="img") as bar:
        found = find_groups(data.ids, data.signatures, data.sizes, data.taken, same_pixels)
        bar.update(len(data.ids))
    store.replace([(g.kind, g.ids) for g in found], state)
    return store.groups()


def sign_missing(catalog: Catalog, max_megapixels: float, shown: Progress) -> int:
    """Make the signatures of images catalogued before they existed (or decoded on the
    device); an image that cannot be read now is left without one."""
    todo = catalog.duplicates.unsigned()
    if not todo:
        return 0
    made: list[tuple[int, bytes]] = []
    with shown.bar(len(todo), desc="reading pictures for duplicates", unit="img") as bar:
        for image_id, path in todo:
            try:
                image = load_image(path, max_megapixels=max_megapixels, min_side=SIGNATURE_SIDE)
                made.append((image_id, signature(image.image)))
            except (ImageDecodeError, OSError):
                pass
            bar.update(1)
            if len(made) >= BATCH:
                catalog.duplicates.set_signatures(made)
                made = []
    catalog.duplicates.set_signatures(made)
    return len(todo)

"""Out of memory on the model's device: smaller batches, not a failed run (RELIABILITY 30).

A GPU shared with a game or another job, or a batch size set for a larger card, makes
the encoder raise out-of-memory mid-run. The batch is then split in halves until the
parts fit, and the largest part that fitted is the batch size from there on; an image
that does not fit even alone is recorded as a failure and the run goes on.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

TOO_LARGE = "too_large: out of memory on the model's device even alone"

# What out-of-memory reads as: torch's OutOfMemoryError (CUDA, and MPS's RuntimeError
# text), ONNX Runtime's allocation failure, Python's MemoryError.
_OOM_TEXTS = ("out of memory", "failed to allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXTS)


def _release_cached_memory() -> None:
    """What the failed attempt left in torch's CUDA cache goes back before the retry."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class Backoff:
    """`encode` (pixels → vectors) over a batch's items, halving on out-of-memory."""

    def __init__(self, encode: Callable[[object], np.ndarray]) -> None:
        self.encode = encode
        self.limit: int | None = None  # the batch size to use, once one did not fit
        self._fitted = 0  # the largest part that fitted in this run

    def __call__(self, items: list, pixels) -> tuple[list, np.ndarray, list]:
        """(the items embedded, their vectors in order, the items that never fitted)."""
        step = min(len(items), self.limit or len(items))
        kept: list = []
        parts: list[np.ndarray] = []
        too_large: list = []
        start = 0
        while start < len(items):
            end = min(start + step, len(items))
            try:
                vectors = self.encode(pixels[start:end])
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                _release_cached_memory()
                if end - start > 1:
                    step = (end - start) // 2
                else:
                    # Alone and still too large: every other image gets the largest
                    # part that fitted, not this one's size.
                    too_large.append(items[start])
                    start, step = end, self._fitted or 1
                self._lower(step)
                continue
            kept.extend(items[start:end])
            parts.append(vectors)
            self._fitted = max(self._fitted, end - start)
            start = end
        vectors = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        return kept, vectors, too_large

    def _lower(self, step: int) -> None:
        if self.limit != step:
            self.limit = step
            log.warning("out of memory on the model's device: batches of %d now", step)

"""Decoding while the model loads: the first seconds of an index run, overlapped.

Importing torch and open_clip, resolving the model and loading its weights take 4–5 s on a
2-core machine, one core's worth of work. Decoding the first photos needs only the model's
input size, which its config file tells without importing anything (a guess, checked once
the model is loaded). So the model loads in a thread while the other core decodes the first
files the run's plan embeds; the pipeline then takes those results instead of decoding
again. Nothing here writes: a model that fails to load leaves the catalog as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from itertools import islice

from indexer.sync.pipeline import Decoded, Failed, VideoOptions, WorkItem, make_decoder
from search.library import Library
from search.models.encoder import Encoder, prepare_pixels
from search.models.spec import ModelSource, ModelSpec, PrepareGuess, preprocess_guess

# Files decoded ahead at most: ~50 MB of 256 px pixels, more than a 5 s start decodes.
PREFETCH_MAX = 256


class ModelLoader:
    """Resolves a model spec in a thread (at once, or from start()), and loads the encoder
    when asked."""

    def __init__(
        self,
        resolve: Callable[[], ModelSource],
        load: Callable[[ModelSource], Encoder],
        *,
        start: bool = True,
    ):
        self._source: Future[ModelSource] = Future()
        self._encoder: Future[Encoder] = Future()
        self._wanted = threading.Event()
        self._cancelled = False
        self._thread = threading.Thread(
            target=self._run, args=(resolve, load), name="model-load", daemon=True
        )
        if start:
            self.start()

    def start(self) -> None:
        """Begin resolving now, if not begun (source() and encoder() begin it too)."""
        if self._thread.ident is None:
            self._thread.start()

    def _run(self, resolve, load) -> None:
        try:
            source = resolve()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._source.set_exception(exc)
            return
        self._source.set_result(source)
        self._wanted.wait()
        if self._cancelled:
            return
        try:
            self._encoder.set_result(load(source))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._encoder.set_exception(exc)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def loaded(self) -> Encoder | None:
        """The encoder if it was loaded (without asking for it)."""
        done = self._encoder.done() and self._encoder.exception() is None
        return self._encoder.result() if done else None

    def source(self) -> ModelSource:
        self.start()
        return self._source.result()

    def encoder(self) -> Encoder:
        self.start()
        self._wanted.set()
        return self._encoder.result()

    def close(self, wait: bool = True) -> None:
        """Stop before loading if not asked to. Normally wait for the thread (torch code
        still running in a daemon thread at interpreter exit can crash it); after an
        interrupt, don't: resolving may be a download, and the CLI exits without tearing
        the interpreter down anyway."""
        if self._thread.ident is None:
            return  # never needed
        self._cancelled = not self._encoder.done() and not self._wanted.is_set()
        self._wanted.set()
        if wait:
            self._thread.join()


class Prefetch:
    """The first of a run's work items decoded ahead for a guessed model input; the
    pipeline takes each result by its item."""

    def __init__(
        self,
        items: Iterable[WorkItem],
        decode: Callable[[WorkItem], Decoded | Failed],
        guess: PrepareGuess,
        workers: int,
    ) -> None:
        self.guess = guess
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch")
        self._futures: dict[WorkItem, Future] = {
            item: self._pool.submit(decode, item) for item in islice(items, PREFETCH_MAX)
        }

    def matches(self, encoder: Encoder) -> bool:
        actual = PrepareGuess(encoder.image_size, encoder.resize_mode, encoder.resample)
        return actual == self.guess

    def take(self, item: WorkItem) -> Decoded | Failed | None:
        """The prefetched result for `item` (waiting if it is being decoded); None when it
        was never prefetched or not started yet (decode it normally)."""
        with self._lock:
            future = self._futures.pop(item, None)
        if future is None or future.cancel():
            return None
        return future.result()

    def stop(self) -> None:
        """No new prefetching: what has not started is decoded by the pipeline, in order."""
        with self._lock:
            for future in self._futures.values():
                future.cancel()

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._futures.clear()
        self._pool.shutdown(wait=True)


def start_prefetch(
    lib: Library,
    spec: ModelSpec,
    items: list[WorkItem],
    *,
    light_model: bool = False,
    textless: Callable | None = None,
) -> Prefetch | None:
    """Start decoding the first of `items` (the plan's work) for the input the model's
    config file names; None when there is nothing to decode or no config to read.
    `light_model`: the model loads in a fraction of a second (an ONNX export), so every
    core decodes instead of one staying with the loading. `textless`: as make_decoder's."""
    if not items:
        return None
    guess = preprocess_guess(spec, lib.settings.models_dir)
    if guess is None:
        return None
    decode = make_decoder(
        partial(
            prepare_pixels, size=guess.size, resize_mode=guess.resize_mode, resample=guess.resample
        ),
        max_megapixels=lib.settings.max_megapixels,
        min_side=guess.size,
        video=VideoOptions.of(lib.settings),
        textless=textless,
    )
    workers = lib.settings.decode_workers()
    # One core stays with the model loading (torch: seconds of importing and building).
    return Prefetch(items, decode, guess, workers if light_model else max(1, workers - 1))


def prefetched_first(prefetch: Prefetch, decode):
    """`decode`, taking the prefetched result for an item when there is one."""

    def first(item: WorkItem) -> Decoded | Failed:
        return prefetch.take(item) or decode(item)

    return first

"""A library opened from Settings: catalog, index store, searcher, model resolution.

The one place that wires the parts together; the CLI and the web app both start here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from search.errors import ConfigError, ModelError, NotFound
from search.models.spec import ModelSource, ModelSpec, quick_model_id, resolve
from search.settings import Settings

if TYPE_CHECKING:
    from search.catalog.reader import CatalogReader
    from search.catalog.store import Catalog
    from search.models.encoder import Encoder
    from search.models.onnx.choose import Preload
    from search.query.relevance import Described
    from search.tags.tagger import Tagger

# Catalog settings: the model the next index run embeds with (a spec, set by `use`), and
# the model whose complete index searches use (a model id, set when an index run completes).
ACTIVE_MODEL = "active_model"
SERVING_MODEL = "serving_model"
READS_TEXT = "reads_text"  # "1": index runs read the text in photos (search.ocr)


@dataclass(frozen=True)
class RootStatus:
    path: str
    images: int
    available: bool  # reachable now (an unplugged drive keeps its images)


@dataclass(frozen=True)
class IndexStatus:
    model_id: str
    kind: str
    count: int
    generation: int
    built_at: datetime
    current: bool  # holds every vector of its model (else rebuilt on the next query)
    params: dict | None
    recall_at_10: float | None


@dataclass(frozen=True)
class LibraryStatus:
    """What `imgsearch status`, GET /api/status and the status page report."""

    home: Path
    roots: list[RootStatus]
    images: int
    failures: int
    active_model: ModelSpec
    serving_model: str | None
    index: IndexStatus | None
    indexing: bool  # another process holds the index lock

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["home"] = str(self.home)
        if self.index is not None:
            doc["index"]["built_at"] = self.index.built_at.isoformat()
        return doc


class Library:
    def __init__(
        self,
        settings: Settings,
        *,
        preload: Preload | None = None,
        catalog: Catalog | CatalogReader | None = None,
    ) -> None:
        """`catalog`: already open (for_one_query's reader); default: open the Catalog."""
        self.settings = settings
        self._preload = preload
        from search.index.ann import IndexPolicy
        from search.index.lock import IndexLock
        from search.index.store import IndexStore
        from search.query.searcher import Searcher

        if catalog is None:
            from search.catalog.store import Catalog  # SQLAlchemy (see for_one_query)

            catalog = Catalog.open(settings.catalog_target)
        self.catalog = catalog
        self.lock = IndexLock(settings.home)
        policy = IndexPolicy(
            ann_threshold=settings.ann_threshold, target_recall=settings.target_recall
        )
        self.store = IndexStore(self.catalog, settings.index_dir, self.lock, policy)
        self.searcher = Searcher(
            self.catalog,
            self.store,
            self.load_encoder,
            lambda: self.serving_model,
            max_megapixels=settings.max_megapixels,
            describe=self.described,
        )

    @classmethod
    def for_one_query(cls, settings: Settings, *, load_model: bool = True) -> Library:
        """A library opened to answer a query at once (the `search` command): the serving
        model's text tower opens in a thread from this moment, beside the catalog and the
        index (a cold query then costs the larger of the two, not their sum), and the
        catalog is read without SQLAlchemy while it is current (search.catalog.reader).
        `load_model` False: a query the words alone answer (text mode) loads no model."""
        from search.catalog.reader import CatalogReader
        from search.models.onnx.choose import Preload

        preload = Preload(settings) if load_model else None
        try:
            # A database server's catalog: SQLAlchemy's own (the plain reader is SQLite's).
            reader = None if settings.catalog else CatalogReader.open(settings.catalog_path)
            return cls(settings, preload=preload, catalog=reader)
        except BaseException:
            if preload is not None:
                preload.close()
            raise

    def serve_from_shards(self, ray) -> None:
        """Searches from here on go to shards on the Ray cluster `ray` is connected to
        (`serve --ray`: search.index.fanout), built from the catalog's vectors."""
        from search.index.fanout import ShardedStore

        folder = self.settings.index_dir / "shards"
        self.store = ShardedStore(
            self.catalog,
            folder,
            ray,
            self.settings.target_recall,
            busy=self.store.busy,  # the files' lock, or a shared catalog's run lock
        )
        self.searcher.store = self.store

    def close(self) -> None:
        if self._preload is not None:
            self._preload.close()
        if hasattr(self.store, "close"):
            self.store.close()
        self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def serving_model(self) -> str | None:
        """The id of the model searches use; None until a first index run commits its
        first batch (then that model, switched only by a later run that completes)."""
        return self.catalog.get_setting(SERVING_MODEL)

    def set_serving(self, model_id: str) -> None:
        self.catalog.set_setting(SERVING_MODEL, model_id)

    def active_spec(self) -> ModelSpec:
        """The model to index with: --model if given, else the one chosen by `use`."""
        if self.settings.model:
            return ModelSpec(self.settings.model, self.settings.pretrained)
        recorded = self._recorded_active()
        return ModelSpec() if recorded is None else recorded

    def recorded_active_spec(self) -> ModelSpec:
        """The active model as the library records it (what `use` chose, or the model of
        the last complete index), whatever --model or IMGSEARCH_MODEL this process was
        started with: what an `index` run without those embeds with."""
        recorded = self._recorded_active()
        return self.active_spec() if recorded is None else recorded

    def _recorded_active(self) -> ModelSpec | None:
        stored = self.catalog.get_setting(ACTIVE_MODEL)
        return ModelSpec.loads(stored) if stored else None

    def set_active(self, spec: ModelSpec) -> None:
        self.catalog.set_setting(ACTIVE_MODEL, spec.dumps())

    def set_reads_text(self, on: bool) -> None:
        """Turn reading the text in photos on or off for this library; on without the
        ocr extra is a ConfigError, and nothing is recorded."""
        if on:
            self._need_ocr("")
        self.catalog.set_setting(READS_TEXT, "1" if on else "0")

    def reads_text(self) -> bool:
        """Whether index runs read the text in photos: once IMGSEARCH_OCR or `index --ocr`
        turned it on, until `index --no-ocr`."""
        if self.settings.ocr:
            self.set_reads_text(True)
        if self.catalog.get_setting(READS_TEXT) != "1":
            return False
        # Uninstalled since: said before the run writes anything.
        self._need_ocr(" (or `imgsearch index --no-ocr` stops reading text)")
        return True

    @staticmethod
    def _need_ocr(alternative: str) -> None:
        from search import ocr

        if not ocr.available():
            raise ConfigError(ocr.MISSING + alternative)

    def status(self) -> LibraryStatus:
        serving = self.serving_model
        manifest = self.store.manifest(serving) if serving else None
        index = None
        if manifest is not None:
            index = IndexStatus(
                manifest.model_id,
                manifest.kind,
                manifest.count,
                manifest.generation,
                manifest.built_at,
                self.store.is_current(serving),
                manifest.params,
                manifest.recall_at_10,
            )
        return LibraryStatus(
            home=self.settings.home,
            roots=[
                RootStatus(r.path, r.image_count, Path(r.path).is_dir())
                for r in self.catalog.roots()
            ],
            images=self.catalog.image_count(),
            failures=len(self.catalog.failures()),
            active_model=self.active_spec(),
            serving_model=serving,
            index=index,
            indexing=self.store.busy(),
        )

    def resolve(self, spec: ModelSpec) -> ModelSource:
        return resolve(
            spec.model,
            spec.pretrained,
            models_dir=self.settings.models_dir,
            cache_dir=self.settings.cache_dir,
        )

    def known_model_id(self, spec: ModelSpec) -> str | None:
        """The id `spec` resolves to when it is cheap to tell and the catalog (or the
        model's ONNX export) already holds that model for this very spec: a sync with
        nothing to embed then never imports torch (a no-op `index` took ~3 s, nearly all
        of it importing open_clip), nor does a small one run on the export."""
        model_id = quick_model_id(spec, self.settings.models_dir, self.settings.cache_dir)
        if model_id is None:
            return None
        try:
            stored = self.catalog.model(model_id).spec
        except NotFound:
            from search.models.onnx import store

            export = store.find(self.settings.cache_dir, model_id)
            stored = export.source.get("spec") if export is not None else None
            stored = ModelSpec.from_dict(stored) if isinstance(stored, dict) else None
        return model_id if stored == spec else None

    def load_source(self, source: ModelSource) -> Encoder:
        from search.models.encoder import load_encoder

        return load_encoder(source, self.settings.device, self.settings.precision)

    def load_encoder(self, model_id: str) -> Encoder:
        """The encoder that made a stored model's vectors, refusing look-alikes: its ONNX
        export where there is one (search.models.onnx; no torch), else torch."""
        if self._preload is not None:
            early, self._preload = self._preload.take(model_id), None
            if early is not None:
                early.fallback = lambda: self.load_torch_encoder(model_id)
                return early
        spec = self.catalog.model(model_id).spec
        from search.models.onnx.choose import usable_export

        export = usable_export(self.settings, model_id, spec, text=True)
        if export is not None:
            from search.models.onnx.encoder import OnnxEncoder

            encoder = OnnxEncoder(export)
            encoder.fallback = lambda: self.load_torch_encoder(model_id)
            return encoder
        return self.load_torch_encoder(model_id)

    def described(self, model_id: str, ids, vectors) -> Described | None:
        """What the captions this library knows (typed here, or a saved model's training
        captions) say of these images, by the model: the relevance cutoff reads its
        queries' words in them (search.query.relevance). None when it knows no caption."""
        from search.query.relevance import NEAR, Described
        from search.tags.describe import CaptionVectors, NearestCaptions, known_texts

        typed = self.catalog.captioned()
        known = known_texts(
            (line for text in typed.values() for line in text.splitlines()),
            self.settings.models_dir,
        )
        if not known:
            return None
        # Embedded once per model and kept (the searcher's encoder: loaded for the query).
        embedded = CaptionVectors(
            self.settings.cache_dir, model_id, lambda: self.searcher.encoder(model_id)
        )
        nearest = NearestCaptions(self.settings.cache_dir, model_id).of(
            ids, vectors, known, lambda: embedded.of(known), many=NEAR
        )
        checked = self._checked(model_id, vectors.shape[1])
        return Described.of([typed.get(int(i)) for i in ids], known, nearest, checked)

    def _checked(self, model_id: str, dim: int):
        """The pairs a model trained here was trained and validated on, as the trainer
        saved them beside its weights (search.query.relevance.Checked); None for any other
        model, or where the folder no longer holds those weights."""
        from search.models.spec import PAIRS, SIDECAR, read_json_object
        from search.query.relevance import Checked

        folder = self.settings.models_dir / model_id.split("/")[0]
        if read_json_object(folder / SIDECAR).get("model_id") != model_id:
            return None
        checked = Checked.load(folder / PAIRS)
        return checked if checked is not None and checked.vectors.shape[1:] == (dim,) else None

    def tagger(self, encoder_for: Callable[[str], Encoder] | None = None) -> Tagger:
        """Tags for this library: fitted from the served index's vectors, zero-shot
        thresholds calibrated against the captions it knows. `encoder_for`: default
        load_encoder, each model's loaded once and only when a text needs embedding."""
        from search.tags.describe import known_caption_vectors
        from search.tags.tagger import Tagger, index_vectors

        encoder_for = encoder_for or functools.cache(self.load_encoder)
        captions = known_caption_vectors(
            self.catalog, self.settings.models_dir, self.settings.cache_dir, encoder_for
        )
        return Tagger(self.catalog, encoder_for, index_vectors(self.store), captions)

    def load_torch_encoder(self, model_id: str) -> Encoder:
        """load_encoder, always with torch."""
        source = self.resolve(self.catalog.model(model_id).spec)
        if source.model_id != model_id:
            raise ModelError(
                f"the weights behind {model_id} changed (they now fingerprint as "
                f"{source.model_id}); run `imgsearch index` to re-embed"
            )
        return self.load_source(source)

"""A library opened from Settings: catalog, index store, searcher, model resolution.

The one place that wires the parts together; the CLI and the web app both start here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from search.errors import ModelError, NotFound
from search.modelspec import ModelSource, quick_model_id, resolve
from search.settings import Settings

if TYPE_CHECKING:
    from search.catalog import Catalog
    from search.catalogread import CatalogReader
    from search.encoder import Encoder
    from search.onnxmodel.choose import Preload

ACTIVE_MODEL = "active_model"


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
        from search.ann import IndexPolicy
        from search.indexstore import IndexStore
        from search.lock import IndexLock
        from search.query import Searcher

        if catalog is None:
            from search.catalog import Catalog  # SQLAlchemy (see for_one_query)

            catalog = Catalog.open(settings.catalog_path)
        self.catalog = catalog
        self.lock = IndexLock(settings.home)
        policy = IndexPolicy(
            ann_threshold=settings.ann_threshold, target_recall=settings.target_recall
        )
        self.store = IndexStore(self.catalog, settings.index_dir, self.lock, policy)
        self.searcher = Searcher(
            self.catalog, self.store, self.load_encoder, max_megapixels=settings.max_megapixels
        )

    @classmethod
    def for_one_query(cls, settings: Settings) -> Library:
        """A library opened to answer a query at once (the `search` command): the serving
        model's text tower opens in a thread from this moment, beside the catalog and the
        index (a cold query then costs the larger of the two, not their sum), and the
        catalog is read without SQLAlchemy while it is current (search.catalogread)."""
        from search.catalogread import CatalogReader
        from search.onnxmodel.choose import Preload

        preload = Preload(settings)
        try:
            return cls(settings, preload=preload, catalog=CatalogReader.open(settings.catalog_path))
        except BaseException:
            preload.close()
            raise

    def close(self) -> None:
        if self._preload is not None:
            self._preload.close()
        self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def active_spec(self) -> dict:
        """The model to index with: --model if given, else the one chosen by `use`."""
        if self.settings.model:
            return {"model": self.settings.model, "pretrained": self.settings.pretrained}
        stored = self.catalog.get_setting(ACTIVE_MODEL)
        return json.loads(stored) if stored else {"model": None, "pretrained": None}

    def set_active(self, spec: dict) -> None:
        self.catalog.set_setting(ACTIVE_MODEL, json.dumps(spec, sort_keys=True))

    def resolve(self, spec: dict) -> ModelSource:
        return resolve(
            spec.get("model"),
            spec.get("pretrained"),
            models_dir=self.settings.models_dir,
            cache_dir=self.settings.cache_dir,
        )

    def known_model_id(self, spec: dict) -> str | None:
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
            from search.onnxmodel import store

            export = store.find(self.settings.cache_dir, model_id)
            stored = export.source.get("spec") if export is not None else None
        return model_id if stored == spec else None

    def load_source(self, source: ModelSource) -> Encoder:
        from search.encoder import load_encoder

        return load_encoder(source, self.settings.device, self.settings.precision)

    def load_encoder(self, model_id: str) -> Encoder:
        """The encoder that made a stored model's vectors, refusing look-alikes: its ONNX
        export where there is one (search.onnxmodel; no torch), else torch."""
        if self._preload is not None:
            early, self._preload = self._preload.take(model_id), None
            if early is not None:
                early.fallback = lambda: self.load_torch_encoder(model_id)
                return early
        spec = self.catalog.model(model_id).spec
        from search.onnxmodel.choose import usable_export

        export = usable_export(self.settings, model_id, spec, text=True)
        if export is not None:
            from search.onnxmodel.encoder import OnnxEncoder

            encoder = OnnxEncoder(export)
            encoder.fallback = lambda: self.load_torch_encoder(model_id)
            return encoder
        return self.load_torch_encoder(model_id)

    def load_torch_encoder(self, model_id: str) -> Encoder:
        """load_encoder, always with torch."""
        source = self.resolve(self.catalog.model(model_id).spec)
        if source.model_id != model_id:
            raise ModelError(
                f"the weights behind {model_id} changed (they now fingerprint as "
                f"{source.model_id}); run `imgsearch index` to re-embed"
            )
        return self.load_source(source)

"""A library opened from Settings: catalog, index store, searcher, model resolution.

The one place that wires the parts together; the CLI and the web app both start here.
"""

from __future__ import annotations

import json

from search.ann import IndexPolicy
from search.catalog import Catalog
from search.encoder import Encoder
from search.errors import ModelError, NotFound
from search.indexstore import IndexStore
from search.lock import IndexLock
from search.modelspec import ModelSource, quick_model_id, resolve
from search.query import Searcher
from search.settings import Settings

ACTIVE_MODEL = "active_model"


class Library:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = Catalog.open(settings.catalog_path)
        self.lock = IndexLock(settings.home)
        policy = IndexPolicy(
            ann_threshold=settings.ann_threshold, target_recall=settings.target_recall
        )
        self.store = IndexStore(self.catalog, settings.index_dir, self.lock, policy)
        self.searcher = Searcher(
            self.catalog, self.store, self.load_encoder, max_megapixels=settings.max_megapixels
        )

    def close(self) -> None:
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
        """The id `spec` resolves to when it is cheap to tell and the catalog already holds
        that model for this very spec: a sync with nothing to embed then never imports
        torch (a no-op `index` took ~3 s, nearly all of it importing open_clip)."""
        model_id = quick_model_id(spec, self.settings.models_dir, self.settings.cache_dir)
        if model_id is None:
            return None
        try:
            stored = self.catalog.model(model_id).spec
        except NotFound:
            return None
        return model_id if stored == spec else None

    def load_source(self, source: ModelSource) -> Encoder:
        from search.encoder import load_encoder

        return load_encoder(source, self.settings.device, self.settings.precision)

    def load_encoder(self, model_id: str) -> Encoder:
        """The encoder that made a stored model's vectors, refusing look-alikes."""
        source = self.resolve(self.catalog.model(model_id).spec)
        if source.model_id != model_id:
            raise ModelError(
                f"the weights behind {model_id} changed (they now fingerprint as "
                f"{source.model_id}); run `imgsearch index` to re-embed"
            )
        return self.load_source(source)

"""The models a library knows, for `imgsearch models` and the web UI's Models page: those
it holds vectors for (the catalog) and those `imgsearch train` saved under models/, each
marked active (what the next `index` embeds with) and serving (what searches use).

A saved model that was indexed is one entry, matched by its model id; its sidecar
(imgsearch.json) says what it was trained from, on how many pairs, and how well it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from search.models.spec import (
    CURVES,
    OPEN_CLIP_CONFIG,
    SIDECAR,
    ModelSpec,
    quick_model_id,
    read_json_object,
)


@dataclass(frozen=True)
class SavedModel:
    """A model folder under models/ (what `train --out NAME` writes)."""

    name: str
    folder: Path
    model_id: str | None  # None when its weights cannot be fingerprinted (a broken folder)
    sidecar: dict = field(default_factory=dict)  # {} when absent or unreadable

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.name)

    @property
    def curves(self) -> Path | None:
        path = self.folder / CURVES
        return path if path.is_file() else None


@dataclass(frozen=True)
class ModelEntry:
    model_id: str | None
    spec: ModelSpec  # what `use` takes to make it active again
    vectors: int
    active: bool
    serving: bool
    indexed: bool  # the catalog holds this model (it embedded some images)
    saved: SavedModel | None = None

    @property
    def name(self) -> str | None:
        return self.saved.name if self.saved else None


@dataclass(frozen=True)
class ModelListing:
    active: ModelSpec
    serving: str | None
    entries: list[ModelEntry]

    @property
    def saved(self) -> list[SavedModel]:
        return [e.saved for e in self.entries if e.saved is not None]

    def find(self, key: str) -> ModelEntry | None:
        """The entry a saved model's name or a model id names; None for anything else."""
        by_name = next((e for e in self.entries if e.name == key), None)
        return by_name or next((e for e in self.entries if e.model_id == key), None)


def saved_models(models_dir: Path, cache_dir: Path) -> list[SavedModel]:
    """The saved model folders, by name. Hidden ones are a save or a checkpoint under way."""
    if not models_dir.is_dir():
        return []
    found = []
    for folder in sorted(models_dir.iterdir()):
        if folder.name.startswith(".") or not (folder / OPEN_CLIP_CONFIG).is_file():
            continue
        model_id = quick_model_id(ModelSpec(folder.name), models_dir, cache_dir)
        found.append(SavedModel(folder.name, folder, model_id, read_json_object(folder / SIDECAR)))
    return found


def list_models(lib, active: ModelSpec | None = None) -> ModelListing:
    """Every model of `lib` (a search.library.Library): the catalog's first, then saved
    ones not indexed yet. `active` defaults to the library's active spec."""
    active = lib.active_spec() if active is None else active
    serving = lib.serving_model
    saved = saved_models(lib.settings.models_dir, lib.settings.cache_dir)
    linked: set[str] = set()  # saved models shown with the catalog's entry for their id
    entries = []
    for m in lib.catalog.models():
        # The folder the catalog's spec names, else a copy of it (same weights, same id).
        same = [s for s in saved if s.model_id == m.model_id and s.name not in linked]
        folder = next((s for s in same if s.spec == m.spec), same[0] if same else None)
        if folder is not None:
            linked.add(folder.name)
        entries.append(
            ModelEntry(
                m.model_id,
                m.spec,
                m.vectors,
                active=m.spec == active,
                serving=m.model_id == serving,
                indexed=True,
                saved=folder,
            )
        )
    for s in saved:
        if s.name not in linked:
            entries.append(
                ModelEntry(
                    s.model_id,
                    s.spec,
                    0,
                    active=s.spec == active,
                    serving=False,
                    indexed=False,
                    saved=s,
                )
            )
    return ModelListing(active, serving, entries)

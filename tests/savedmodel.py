"""A real saved model for tests of the Models page: the tiny architecture fine-tuned for a
couple of epochs on generated pairs (the trainer draws its curves beside it)."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.synthetic import generate
from indexer.training import TrainConfig, train
from indexer.training.pairs import Pair, decode_pairs
from search.models.encoder import load_encoder
from search.models.spec import SIDECAR, resolve


def train_saved_model(home: Path, name: str, work: Path, n: int = 40, epochs: int = 2) -> dict:
    """models/NAME in `home`, trained from the random-init tiny model; returns its sidecar."""
    models_dir, cache_dir = home / "models", home / "cache"
    source = resolve("imgsearch-tiny", "none", models_dir=models_dir, cache_dir=cache_dir)
    encoder = load_encoder(source, "cpu", "fp32")
    samples = generate(work, n, seed=7)
    pairs = decode_pairs(
        [Pair(s.path, s.caption) for s in samples], encoder.prepare, encoder.image_size
    )
    config = TrainConfig(epochs=epochs, batch_size=8, lr=2e-3, val_fraction=0.25, device="cpu")
    result = train(encoder, pairs, models_dir, name, config)
    return json.loads((result.path / SIDECAR).read_text())

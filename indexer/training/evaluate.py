"""Validation: how well a model's captions find their images, and the other way round."""

from __future__ import annotations

import contextlib

import numpy as np

from indexer.training.pairs import PairSet
from indexer.training.retrieval import ranks_image_to_text, ranks_text_to_image, recall_report
from search.models.encoder import ClipEncoder


def embed_images(encoder: ClipEncoder, pairs: PairSet, batch: int = 256) -> np.ndarray:
    """The set's images (rows as pairs.image_index counts them), by the model in eval mode."""
    n = pairs.n_images
    with _evaluating(encoder):
        return np.concatenate(
            [
                encoder.encode_pixels(pairs.image_pixels(np.arange(i, min(i + batch, n))))
                for i in range(0, n, batch)
            ]
        )


def embed_pairs(encoder: ClipEncoder, pairs: PairSet, batch: int = 256):
    img = embed_images(encoder, pairs, batch)
    with _evaluating(encoder):
        txt = np.concatenate(
            [
                encoder.encode_texts(pairs.captions[i : i + batch])
                for i in range(0, len(pairs), batch)
            ]
        )
    return txt, img


@contextlib.contextmanager
def _evaluating(encoder: ClipEncoder):
    was_training = encoder.model.training
    encoder.model.eval()
    try:
        yield
    finally:
        encoder.model.train(was_training)


def evaluate(encoder: ClipEncoder, pairs: PairSet) -> dict:
    """Text→image (the search direction) and image→text recall@1/5/10 on `pairs`."""
    txt, img = embed_pairs(encoder, pairs)
    t2i = recall_report(ranks_text_to_image(txt, img, pairs.image_index))
    i2t = recall_report(ranks_image_to_text(txt, img, pairs.image_index))
    return {"text_to_image": t2i, "image_to_text": i2t}


def score(metrics: dict) -> float:
    """One number to pick the best epoch by: text→image recall@1 + @5 + @10."""
    t2i = metrics["text_to_image"]
    return t2i["recall@1"] + t2i["recall@5"] + t2i["recall@10"]

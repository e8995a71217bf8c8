"""Validation: how well a model's captions find their images, and the other way round."""

from __future__ import annotations

import numpy as np

from indexer.training.pairs import PairSet
from indexer.training.retrieval import ranks_image_to_text, ranks_text_to_image, recall_report
from search.models.encoder import ClipEncoder


def embed_pairs(encoder: ClipEncoder, pairs: PairSet, batch: int = 256):
    was_training = encoder.model.training
    encoder.model.eval()
    n = pairs.n_images
    try:
        img = np.concatenate(
            [
                encoder.encode_pixels(pairs.image_pixels(np.arange(i, min(i + batch, n))))
                for i in range(0, n, batch)
            ]
        )
        txt = np.concatenate(
            [
                encoder.encode_texts(pairs.captions[i : i + batch])
                for i in range(0, len(pairs), batch)
            ]
        )
    finally:
        encoder.model.train(was_training)
    return txt, img


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

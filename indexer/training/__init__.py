"""Contrastive fine-tuning of the dual encoder on (image, caption) pairs.

open_clip owns the model and ClipLoss; this package owns the rest, laid out as
open_clip_train is: `main` (set-up, resume, roll-back, the final save), `loop` (one
epoch), `guard` (divergence), `checkpoint`, `evaluate`, `artifacts` (the saved folder) and
`curves` (its picture).
"""

from indexer.training.config import TrainConfig, TrainResult
from indexer.training.evaluate import embed_pairs, evaluate
from indexer.training.main import split, train

__all__ = ["TrainConfig", "TrainResult", "embed_pairs", "evaluate", "split", "train"]

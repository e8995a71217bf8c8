"""What a training run is asked to do (TrainConfig) and what it reports (TrainResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Peak learning rates. From random init: decided by the sweep in bench/train_sweep.py
# (four data families, three seeds each; bench/BENCHMARKS.md). From weights someone else
# trained (a hub tag, a weights file): gentle, as CLIP fine-tuning usually is, since a
# large rate wrecks what pretraining learned. From a model this trainer saved: a tenth of
# the rate that model was trained at, which keeps what it learned (bench/train_bench.py).
SCRATCH_LR = 5e-4
PRETRAINED_LR = 1e-5
CONTINUE_FACTOR = 0.1

# Validation images, unless a fraction is asked for: a tenth, at most VAL_MAX_IMAGES. The
# held-out images pick the best epoch and tell a collapse; a hundred does both, and past
# that every image held out is one the model never learns from (on 2,000 pairs of the
# sweep's glyphs, holding out 200 cost the trainer ~0.03 recall@10 against 100).
VAL_FRACTION = 0.1
VAL_MAX_IMAGES = 100


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    accum_steps: int = 1  # micro-batches per step; features are cached so the loss sees all
    lr: float | None = None  # None: picked from where the weights came from (see above)
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    # open_clip_train's AdamW settings for ViTs: PyTorch's default beta2 = 0.999 lets the
    # second moment lag behind a sudden gradient surge, the classic cause of loss spikes.
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip: float | None = 1.0  # max gradient norm; None: no clipping
    lock_image: bool = False
    lock_text: bool = False
    val_fraction: float | None = None  # None: VAL_FRACTION, at most VAL_MAX_IMAGES
    seed: int = 0
    device: str = "auto"
    max_recoveries: int = 3  # roll-backs after a divergence before the run stops early


@dataclass
class TrainResult:
    name: str
    path: Path
    model_id: str
    before: dict
    after: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0
    train_pairs: int = 0
    val_pairs: int = 0
    peak_lr: float = 0.0
    recoveries: list[dict] = field(default_factory=list)

"""Contrastive fine-tuning of the dual encoder on (image, caption) pairs.

open_clip owns the model and ClipLoss; this module owns the data split, the loop,
validation and the artifacts. Every epoch ends with a checkpoint, so an interrupted run
resumes where it stopped; the best epoch by validation recall is what gets saved.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from indexer.artifacts import model_config, read_state, save_model, save_tensors, write_state
from indexer.pairs import PairSet
from indexer.retrieval import ranks_image_to_text, ranks_text_to_image, recall_report
from search.catalog import utcnow
from search.encoder import ClipEncoder, build_model, pick_device
from search.errors import ConfigError
from search.modelspec import SIDECAR, ModelSource

CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    accum_steps: int = 1  # micro-batches per step; features are cached so the loss sees all
    lr: float | None = None  # None: 1e-5 from pretrained weights, 1e-3 from random init
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    lock_image: bool = False
    lock_text: bool = False
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"

    def resolved_lr(self, from_scratch: bool) -> float:
        # Pretrained CLIP is easily wrecked: fine-tune gently. Random init needs real steps.
        return self.lr if self.lr is not None else (1e-3 if from_scratch else 1e-5)


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


def split(pairs: PairSet, fraction: float, seed: int) -> tuple[PairSet, PairSet | None]:
    """Hold out whole images, so no validation image was seen in training."""
    n_img = pairs.n_images
    n_val = int(round(n_img * fraction)) if fraction > 0 else 0
    if n_val == 0 or n_val >= n_img:
        return pairs, None
    held = set(np.random.default_rng(seed).permutation(n_img)[:n_val].tolist())
    val_rows = np.array([i for i, img in enumerate(pairs.image_index) if int(img) in held])
    train_rows = np.array([i for i, img in enumerate(pairs.image_index) if int(img) not in held])
    return pairs.subset(train_rows), pairs.subset(val_rows)


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


def _score(metrics: dict) -> float:
    t2i = metrics["text_to_image"]
    return t2i["recall@1"] + t2i["recall@5"] + t2i["recall@10"]


def _param_groups(model, weight_decay: float) -> list[dict]:
    # As open_clip's training: no decay on gains, biases, norms and the temperature.
    def no_decay(name: str, p) -> bool:
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in params if no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in params if not no_decay(n, p)], "weight_decay": weight_decay},
    ]


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def train(
    source: ModelSource,
    pairs: PairSet,
    models_dir: Path,
    name: str,
    cfg: TrainConfig,
    *,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Fine-tune `source` on `pairs` and save models_dir/name. `stop_after_epoch` ends the
    run early as an interruption would (tests of resuming use it)."""
    import open_clip
    import torch
    from safetensors.torch import load_file

    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--out {name!r}: give a plain model name")
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    model, tokenizer = build_model(source, device)
    encoder = ClipEncoder(model, tokenizer, source, device)
    train_set, val_set = split(pairs, cfg.val_fraction, cfg.seed)
    if len(train_set) < 2:
        raise ConfigError("need at least 2 training pairs")
    if cfg.lock_image:
        model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=True)
    if cfg.lock_text:
        model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    tokens = tokenizer(train_set.captions)
    micro = min(cfg.batch_size, len(train_set))
    per_step = micro * cfg.accum_steps
    steps_per_epoch = max(1, len(train_set) // per_step)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay),
        lr=cfg.resolved_lr(from_scratch=source.seed is not None),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total_steps, max(1, int(total_steps * cfg.warmup_fraction)))
    )
    loss_fn = open_clip.ClipLoss()

    ckpt_dir = models_dir / f".{name}.{CHECKPOINT}"
    fingerprint = {"config": asdict(cfg), "data": pairs.digest(), "base": source.model_id}
    history: list[dict] = []
    start_epoch, best_epoch, best_score = 0, 0, -1.0
    state = read_state(ckpt_dir, fingerprint)
    if state:
        model.load_state_dict(load_file(ckpt_dir / "model.safetensors", device=device))
        optimizer.load_state_dict(
            torch.load(ckpt_dir / "optimizer.pt", map_location=device, weights_only=True)
        )
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], state["history"]
        best_epoch, best_score = state["best_epoch"], state["best_score"]
        before = state["before"]
    else:
        before = evaluate(encoder, val_set) if val_set else {}
    resumed_from = start_epoch

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = torch.randperm(
            len(train_set), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        )
        epoch_loss, seen, t0 = 0.0, 0, time.perf_counter()
        from tqdm import tqdm

        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="step",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        for step in bar:
            rows = order[step * per_step : (step + 1) * per_step]
            chunks = [rows[j : j + micro] for j in range(0, len(rows), micro)]
            loss = _step(model, encoder, loss_fn, optimizer, train_set, tokens, chunks, device)
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            epoch_loss += loss * len(rows)
            seen += len(rows)
            bar.set_postfix(
                loss=f"{loss:.3f}",
                lr=f"{scheduler.get_last_lr()[0]:.1e}",
                samples_s=f"{seen / (time.perf_counter() - t0):.0f}",
            )
        bar.close()
        record = {"epoch": epoch + 1, "loss": round(epoch_loss / max(1, seen), 4)}
        if val_set:
            record["val"] = evaluate(encoder, val_set)
        history.append(record)
        score = _score(record["val"]) if val_set else float(epoch)
        if score > best_score:
            best_score, best_epoch = score, epoch + 1
            save_tensors(model, ckpt_dir / "best.safetensors")
        save_tensors(model, ckpt_dir / "model.safetensors")
        torch.save(optimizer.state_dict(), ckpt_dir / "optimizer.pt")
        write_state(
            ckpt_dir,
            {
                **fingerprint,
                "epoch": epoch + 1,
                "history": history,
                "best_epoch": best_epoch,
                "best_score": best_score,
                "before": before,
                "scheduler": scheduler.state_dict(),
            },
        )
        if (
            stop_after_epoch is not None
            and epoch + 1 >= stop_after_epoch
            and epoch + 1 < cfg.epochs
        ):
            raise KeyboardInterrupt

    model.load_state_dict(load_file(ckpt_dir / "best.safetensors", device=device))
    after = history[best_epoch - 1].get("val", {}) if history else {}
    out = save_model(
        model,
        source,
        models_dir,
        name,
        {
            "base": {"model_id": source.model_id, "spec": source.spec},
            "architecture": model_config(source),
            "data_digest": pairs.digest(),
            "pairs": {
                "train": len(train_set),
                "val": len(val_set) if val_set else 0,
                "skipped": len(pairs.skipped),
            },
            "settings": asdict(cfg),
            "metrics": {
                "before": before,
                "after": after,
                "best_epoch": best_epoch,
                "history": history,
            },
            "created_at": utcnow().isoformat(),
        },
        open_clip.get_model_preprocess_cfg(model),
    )
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return TrainResult(
        name,
        out,
        json.loads((out / SIDECAR).read_text())["model_id"],
        before,
        after,
        best_epoch,
        history,
        resumed_from,
        len(train_set),
        len(val_set) if val_set else 0,
    )


def _step(model, encoder, loss_fn, optimizer, data: PairSet, tokens, chunks, device) -> float:
    """One optimizer step over `chunks` (micro-batches), open_clip's accum_freq way: the
    loss of each micro-batch is taken against the cached features of all of them."""
    import torch

    def inputs(rows):
        images = encoder.to_tensor(data.image_pixels(data.image_index[rows.numpy()]))
        return images, tokens[rows].to(device)

    optimizer.zero_grad(set_to_none=True)
    if len(chunks) == 1:
        with encoder.autocast():
            img, txt, scale = model(*inputs(chunks[0]))[:3]
            loss = loss_fn(img.float(), txt.float(), scale)
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    with torch.no_grad(), encoder.autocast():
        cached = [model(*inputs(c))[:2] for c in chunks]
    total = 0.0
    for j, c in enumerate(chunks):
        with encoder.autocast():
            img, txt, scale = model(*inputs(c))[:3]
            all_img = torch.cat(
                [f[0] for f in cached[:j]] + [img] + [f[0] for f in cached[j + 1 :]]
            )
            all_txt = torch.cat(
                [f[1] for f in cached[:j]] + [txt] + [f[1] for f in cached[j + 1 :]]
            )
            loss = loss_fn(all_img.float(), all_txt.float(), scale)
        loss.backward()
        total += float(loss.detach())
    optimizer.step()
    return total / len(chunks)

"""A training run, set up the way open_clip_train's main.py does it: data split, optimizer
and schedule, resume from a checkpoint, the epochs (training/loop.py does one), validation
after each, roll-back on divergence, and the final save of the best validated state."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from indexer.training.artifacts import model_config, save_model
from indexer.training.checkpoint import Checkpoints, Snapshot, Weights
from indexer.training.config import (
    CONTINUE_FACTOR,
    PRETRAINED_LR,
    SCRATCH_LR,
    VAL_FRACTION,
    VAL_MAX_IMAGES,
    TrainConfig,
    TrainResult,
)
from indexer.training.evaluate import embed_images, evaluate, score
from indexer.training.guard import DivergenceGuard
from indexer.training.loop import Batches, train_one_epoch
from indexer.training.pairs import PairSet
from search.catalog.store import utcnow
from search.errors import ConfigError, StorageError, storage_failure
from search.models.encoder import ClipEncoder
from search.models.spec import SIDECAR, ModelSource
from search.progress import Progress

CHECKPOINT = "checkpoint"
# Writing a checkpoint (fsynced) takes seconds for a small ViT; on small data sets that
# was more than an epoch's training. A kill loses at most this much; Ctrl-C loses nothing.
CHECKPOINT_EVERY_S = 60.0
# The pairs' images saved, embedded, beside a model for the relevance cutoff's check: at most
# this many, so neither the extra pass at the end of training nor a cold search's loading of
# them grows with the training set (2,500 added 34 ms to a cold search of 0.47 s, 1,000 about
# 17 ms; the relevance bench's figures are as good with 1,000: bench/BENCHMARKS.md).
CHECKED_IMAGES = 1000
# Each roll-back halves the learning rate the schedule is scaled to.
BACKOFF = 0.5
# The saved curves keep at most this many loss points (bucket means past it).
CURVE_POINTS = 2000

EpochHook = Callable[[int, dict], None]


def split(pairs: PairSet, fraction: float | None, seed: int) -> tuple[PairSet, PairSet | None]:
    """Hold out whole images, so no validation image was seen in training: `fraction` of
    them, or with None the default share up to its cap (config.py)."""
    n_img = pairs.n_images
    if fraction is None:
        n_val = min(int(round(n_img * VAL_FRACTION)), VAL_MAX_IMAGES)
    else:
        n_val = int(round(n_img * fraction)) if fraction > 0 else 0
    if n_val == 0 or n_val >= n_img:
        return pairs, None
    held = np.isin(pairs.image_index, np.random.default_rng(seed).permutation(n_img)[:n_val])
    return pairs.subset(np.flatnonzero(~held)), pairs.subset(np.flatnonzero(held))


def peak_lr(cfg: TrainConfig, source: ModelSource) -> float:
    """The asked rate, else one that suits where the weights came from (config.py)."""
    if cfg.lr is not None:
        return cfg.lr
    if source.seed is not None:
        return SCRATCH_LR
    trained_at = _trained_at(source)
    return trained_at * CONTINUE_FACTOR if trained_at else PRETRAINED_LR


def _trained_at(source: ModelSource) -> float | None:
    """The peak rate a model saved by this trainer was trained at."""
    if not source.name.startswith("local-dir:"):
        return None
    try:
        meta = json.loads((Path(source.name[len("local-dir:") :]) / SIDECAR).read_text())
        return float(meta["metrics"]["peak_lr"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def training_autocast(device: str) -> Callable:
    """bf16 autocast where a GPU has it (weights stay fp32; bf16 needs no loss scaling);
    fp32 elsewhere: on a CPU, bf16 training costs accuracy for little speed."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def train(
    encoder: ClipEncoder,
    pairs: PairSet,
    models_dir: Path,
    name: str,
    cfg: TrainConfig,
    *,
    progress: Progress | None = None,
    on_epoch_end: EpochHook | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY_S,
) -> TrainResult:
    """Train `encoder`'s model (in place, fp32) on `pairs`, save the best validated state
    as models_dir/name. `on_epoch_end(epoch, record)` runs after each epoch; a checkpoint
    to resume from is written after an epoch once `checkpoint_every` seconds have passed
    since the last one (and on an interruption)."""
    import open_clip
    import torch
    from open_clip_train.scheduler import cosine_lr

    progress = progress or Progress(show=False)
    source, model, device = encoder.source, encoder.model, encoder.device
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--out {name!r}: give a plain model name")
    train_set, val_set = split(pairs, cfg.val_fraction, cfg.seed)
    if len(train_set) < 2:
        held = f" after holding out {len(pairs) - len(train_set)} for validation" if val_set else ""
        raise ConfigError(
            f"too few pairs: contrastive training needs at least 2 per batch, and "
            f"{len(train_set)} are left{held}; add pairs or lower --val-fraction"
        )
    checkpoints = Checkpoints(
        models_dir / f".{name}.{CHECKPOINT}",
        {"config": asdict(cfg), "data": pairs.digest(), "base": source.model_id},
    )
    try:
        checkpoints.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot write to the models folder {models_dir}: {exc.strerror}"
        ) from exc

    torch.manual_seed(cfg.seed)
    if cfg.lock_image:
        model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=True)
    if cfg.lock_text:
        model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    tokens = encoder.tokenizer(train_set.captions)
    micro = min(cfg.batch_size, len(train_set))
    per_step = micro * cfg.accum_steps
    steps_per_epoch = max(1, len(train_set) // per_step)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, int(total_steps * cfg.warmup_fraction))
    lr = peak_lr(cfg, source)
    optimizer = _adamw(
        _param_groups(model, cfg.weight_decay), lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps
    )
    loss_fn = open_clip.ClipLoss()
    autocast = training_autocast(device)
    guard = DivergenceGuard(chance=math.log(min(per_step, len(train_set))))
    best, last_good = Weights(), Snapshot()

    state = checkpoints.read()
    if state:
        checkpoints.restore(state, model, optimizer, best, device)
        guard.restart(state["guard_floor"])
    else:
        before = evaluate(encoder, val_set) if val_set else {}
        state = {
            "epoch": 0,
            "history": [],
            "steps": [],
            "recoveries": [],
            "before": before,
            "best_epoch": 0,  # 0: the weights it started from
            "best_score": score(before) if val_set else -1.0,
            "after": before,
            "lr_scale": 1.0,
            "guard_floor": guard.floor,
            "seconds": 0.0,
        }
        best.take(model)
    last_good.take(model, optimizer, state)
    resumed_from = state["epoch"]
    t_start = time.perf_counter() - state["seconds"]
    written = time.monotonic()

    try:
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            schedule = cosine_lr(optimizer, lr * state["lr_scale"], warmup, total_steps)
            shuffle = torch.Generator().manual_seed(
                cfg.seed * 1000 + epoch + 100_000 * len(state["recoveries"])
            )
            batches = Batches(
                torch.randperm(len(train_set), generator=shuffle), micro, per_step, steps_per_epoch
            )
            run = train_one_epoch(
                encoder,
                train_set,
                tokens,
                batches,
                optimizer=optimizer,
                loss_fn=loss_fn,
                schedule=schedule,
                first_step=epoch * steps_per_epoch,
                taken=len(state["steps"]),
                epoch=epoch + 1,
                grad_clip=cfg.grad_clip,
                autocast=autocast,
                guard=guard,
                progress=progress,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
            )
            last_lr = run.steps[-1]["lr"] if run.steps else lr
            record = {"epoch": epoch + 1, "loss": round(run.loss, 4), "lr": last_lr}
            why, at_step = run.diverged, run.diverged_at
            if why is None and val_set:
                record["val"] = evaluate(encoder, val_set)
                why = guard.validation(score(record["val"]), state["best_score"])
                at_step = (epoch + 1) * steps_per_epoch
            steps = state["steps"] + run.steps
            if why is not None:
                # Back to the last good epoch at half the rate; the steps that diverged
                # stay in the log: they are what the curves must show.
                recovery = {
                    "epoch": epoch + 1,
                    "step": at_step,
                    "n": len(steps),
                    "reason": why,
                    "lr": lr * state["lr_scale"] * BACKOFF,  # the peak rate it goes on with
                }
                recoveries = state["recoveries"] + [recovery]
                state = last_good.restore(model, optimizer)
                state.update(steps=steps, recoveries=recoveries, lr_scale=recovery["lr"] / lr)
                guard.restart(state["guard_floor"])
                if len(recoveries) > cfg.max_recoveries:
                    break  # no rate low enough: keep the best state reached
                continue
            epoch_score = score(record["val"]) if val_set else float(epoch + 1)
            state.update(
                epoch=epoch + 1,
                history=state["history"] + [record],
                steps=steps,
                guard_floor=guard.floor,
                seconds=time.perf_counter() - t_start,
            )
            if epoch_score > state["best_score"]:
                best.take(model)
                state.update(
                    best_epoch=epoch + 1, best_score=epoch_score, after=record.get("val", {})
                )
            last_good.take(model, optimizer, state)
            if state["epoch"] < cfg.epochs and time.monotonic() - written >= checkpoint_every:
                checkpoints.write(f"epoch-{epoch + 1}", model, optimizer, best, state)
                written = time.monotonic()
            if on_epoch_end:
                on_epoch_end(epoch + 1, record)
    except KeyboardInterrupt:
        # Keep the last good epoch, so that the same command resumes from it.
        _keep(checkpoints, last_good, model, optimizer, best)
        raise

    best.give(model)
    after = state["after"]
    metrics = {
        "before": state["before"],
        "after": after,
        "best_epoch": state["best_epoch"],
        "history": state["history"],
        "steps": _thin(state["steps"], CURVE_POINTS),
        "recoveries": state["recoveries"],
        "peak_lr": lr,
        "stopped_early": len(state["recoveries"]) > cfg.max_recoveries,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    meta = {
        "base": {"model_id": source.model_id, "spec": source.spec.as_dict()},
        "architecture": model_config(source),
        "data_digest": pairs.digest(),
        "pairs": {
            "train": len(train_set),
            "val": len(val_set) if val_set else 0,
            "skipped": len(pairs.skipped),
        },
        "settings": asdict(cfg),
        "metrics": metrics,
        "created_at": utcnow().isoformat(),
    }
    try:
        out = save_model(
            model,
            models_dir,
            name,
            meta,
            open_clip.get_model_preprocess_cfg(model),
            captions=pairs.captions,
            pairs=_checked(encoder, pairs, cfg.seed),
        )
    except OSError as exc:
        kept = _keep(checkpoints, last_good, model, optimizer, best)
        then = (
            "the last epoch is kept: the same command finishes from it"
            if kept
            else "no checkpoint fitted either: the same command trains again"
        )
        line = storage_failure(exc, "", advice=f"free space (or fix the disk) and re-run; {then}")
        raise StorageError(
            line or f"cannot save the model into {models_dir}: {exc.strerror}; {then}"
        ) from exc
    checkpoints.remove()
    return TrainResult(
        name,
        out,
        json.loads((out / SIDECAR).read_text())["model_id"],
        state["before"],
        after,
        state["best_epoch"],
        state["history"],
        resumed_from,
        len(train_set),
        len(val_set) if val_set else 0,
        lr,
        state["recoveries"],
    )


def checked_images(n_images: int, seed: int) -> np.ndarray:
    """The pairs' images (their numbers, ascending) saved, embedded, beside the model: all
    of them, or a seeded sample of CHECKED_IMAGES."""
    if n_images <= CHECKED_IMAGES:
        return np.arange(n_images)
    return np.sort(np.random.default_rng(seed).permutation(n_images)[:CHECKED_IMAGES])


def _checked(encoder, pairs: PairSet, seed: int) -> tuple:
    """(image vectors, captions, each caption's image) of checked_images, by the final
    weights: saved beside the model for the relevance cutoff (search.query.relevance.Checked)."""
    keep = checked_images(pairs.n_images, seed)
    if len(keep) < pairs.n_images:
        pairs = pairs.subset(np.flatnonzero(np.isin(pairs.image_index, keep)))
    return embed_images(encoder, pairs), pairs.captions, pairs.image_index


def _keep(checkpoints, last_good, model, optimizer, best) -> bool:
    """Write the last good epoch to disk on the way out (an interruption, a failed save),
    so the same command resumes from it; best effort, as the disk may be what failed.
    True when a checkpoint to resume from is on disk."""
    state = last_good.restore(model, optimizer)
    tag = f"epoch-{state['epoch']}"
    on_disk = checkpoints.read()
    if state["epoch"] > 0 and (on_disk is None or on_disk["current"] != tag):
        with contextlib.suppress(OSError):
            checkpoints.write(tag, model, optimizer, best, state)
    if checkpoints.read() is None:
        checkpoints.remove()  # nothing to resume from: leave nothing behind
        return False
    return True


def _thin(steps: list[dict], limit: int) -> list[dict]:
    """At most `limit` points: means over equal buckets of steps past that."""
    if len(steps) <= limit:
        return steps
    edges = np.linspace(0, len(steps), limit + 1).astype(int)
    return [
        # The bucket's last step, with the bucket's mean loss.
        {**steps[b - 1], "loss": round(float(np.mean([s["loss"] for s in steps[a:b]])), 4)}
        for a, b in zip(edges[:-1], edges[1:])
        if b > a
    ]


def _adamw(groups: list[dict], **settings):
    """AdamW fused into one kernel where this torch has one for the device (CPU since
    torch 2.4, CUDA): the sweep's tiny model (13 M parameters, 2 CPU cores) took 120 ms an
    update one tensor at a time, 12 ms fused; short runs spent a fifth of their time there."""
    import torch

    try:
        return torch.optim.AdamW(groups, fused=True, **settings)
    except RuntimeError:  # an older torch, or a device without the kernel
        return torch.optim.AdamW(groups, **settings)


def _param_groups(model, weight_decay: float) -> list[dict]:
    # As open_clip's training: no decay on gains, biases, norms and the temperature.
    def no_decay(name: str, p) -> bool:
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in params if no_decay(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in params if not no_decay(n, p)], "weight_decay": weight_decay},
    ]

"""One epoch of contrastive training (open_clip_train's `train_one_epoch`, for pairs
decoded in memory): steps, gradient accumulation, clipping, the schedule, and the guard."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from indexer.training.guard import DivergenceGuard
from indexer.training.pairs import PairSet
from search.models.encoder import ClipEncoder
from search.progress import Progress


@dataclass
class Epoch:
    """How an epoch went: its mean loss and steps, or why it diverged (it then stopped at
    that step, and the caller rolls back)."""

    loss: float
    steps: list[dict]
    diverged: str | None = None
    diverged_at: int = 0  # the step (1-based, counted over the run)


@dataclass
class Batches:
    """The order of an epoch's pairs, cut into optimizer steps of micro-batches."""

    order: object  # torch LongTensor, a permutation of the training pairs
    micro: int
    per_step: int
    steps: int

    def step(self, i: int) -> list:
        rows = self.order[i * self.per_step : (i + 1) * self.per_step]
        return [rows[j : j + self.micro] for j in range(0, len(rows), self.micro)]


def train_one_epoch(
    encoder: ClipEncoder,
    data: PairSet,
    tokens,
    batches: Batches,
    *,
    optimizer,
    loss_fn,
    schedule: Callable[[int], float],
    first_step: int,
    taken: int,
    epoch: int,
    grad_clip: float | None,
    autocast,
    guard: DivergenceGuard,
    progress: Progress,
    desc: str,
) -> Epoch:
    import torch

    model = encoder.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    total, seen, steps, t0 = 0.0, 0, [], time.perf_counter()
    with progress.bar(batches.steps, desc, "step") as bar:
        for i in range(batches.steps):
            step = first_step + i
            lr = schedule(step)
            chunks = batches.step(i)
            loss = _step(encoder, loss_fn, data, tokens, chunks, autocast)
            why = guard.step(loss)
            if why is not None:
                # The update is not applied: the caller restores the last good state.
                optimizer.zero_grad(set_to_none=True)
                return Epoch(total / max(1, seen), steps, why, step + 1)
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            with torch.no_grad():
                # As CLIP: a temperature past 100 makes the logits explode.
                model.logit_scale.clamp_(0, math.log(100))
            n = sum(len(c) for c in chunks)
            total, seen = total + loss * n, seen + n
            steps.append(
                # "n" counts every step taken, through roll-backs; "step" is the schedule's.
                {
                    "n": taken + i + 1,
                    "step": step + 1,
                    "epoch": epoch,
                    "loss": round(loss, 4),
                    "lr": lr,
                }
            )
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.3f}",
                lr=f"{lr:.1e}",
                samples_s=f"{seen / (time.perf_counter() - t0):.0f}",
            )
    return Epoch(total / max(1, seen), steps)


def _step(encoder: ClipEncoder, loss_fn, data: PairSet, tokens, chunks, autocast) -> float:
    """Gradients for one optimizer step over `chunks` (micro-batches), open_clip's
    accum_freq way: each micro-batch's loss is taken against the cached features of all
    of them, so the contrastive batch is the whole step. Returns the mean loss."""
    import torch

    model = encoder.model

    def inputs(rows):
        images = encoder.to_tensor(data.image_pixels(data.image_index[rows.numpy()]))
        return images, tokens[rows].to(encoder.device)

    model.zero_grad(set_to_none=True)
    if len(chunks) == 1:
        with autocast():
            img, txt, scale = model(*inputs(chunks[0]))[:3]
            loss = loss_fn(img.float(), txt.float(), scale)
        loss.backward()
        return float(loss.detach())
    with torch.no_grad(), autocast():
        cached = [model(*inputs(c))[:2] for c in chunks]
    total = 0.0
    for j, c in enumerate(chunks):
        with autocast():
            img, txt, scale = model(*inputs(c))[:3]
            features = [*cached[:j], (img, txt), *cached[j + 1 :]]
            all_img = torch.cat([f[0] for f in features])
            all_txt = torch.cat([f[1] for f in features])
            loss = loss_fn(all_img.float(), all_txt.float(), scale)
        loss.backward()
        total += float(loss.detach())
    return total / len(chunks)

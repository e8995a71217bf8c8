"""Training curves as a picture beside a saved model: what a person looks at to tell a
run that learned from one that diverged, overfitted or was rescued by a recovery.

Three panels from the metrics the trainer stores in the model's sidecar: training loss per
step (recoveries marked, epoch boundaries light), validation text→image recall@1/5/10 per
epoch (the base model's at epoch 0, the best epoch marked) and the learning rate per step.
Older sidecars without per-step records fall back to the per-epoch numbers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from search.diskfiles import replacing
from search.models.spec import CURVES

__all__ = ["CURVES", "draw_curves"]

RECALLS = ("recall@1", "recall@5", "recall@10")
SIZE_INCHES = (13.5, 3.6)
DPI = 100


def draw_curves(metrics: dict, path: Path) -> Path:
    """Draw `metrics` (a saved model's ``metrics``) into `path` (PNG, or SVG by suffix),
    replacing it atomically; returns `path`."""
    # Imported here: matplotlib takes most of a second to import and only training draws.
    # The figure is built without pyplot, on the Agg canvas: no global state, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, recall_ax, lr_ax = fig.subplots(1, 3)
    steps = [s for s in metrics.get("steps") or [] if isinstance(s, dict) and "step" in s]
    history = [h for h in metrics.get("history") or [] if isinstance(h, dict)]
    _loss_panel(loss_ax, steps, history, metrics.get("recoveries") or [])
    _recall_panel(recall_ax, history, metrics.get("before") or {}, metrics.get("best_epoch"))
    _lr_panel(lr_ax, steps, history)
    path = Path(path)
    with replacing(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png")
        # Temporary files are private; the picture is as readable as the model beside it.
        os.chmod(tmp, 0o644)
    return path


def _finite(value: object) -> float:
    """A number to plot; anything else (a NaN loss, a missing value) leaves a gap."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _nothing(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", color="0.45", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _whole_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _x(record: dict) -> float:
    """Where a step goes on the x axis: its place among the steps taken ("n", which
    keeps counting through roll-backs), else its place in the schedule ("step")."""
    return _finite(record.get("n", record.get("step")))


def _epoch_boundaries(steps: list[dict]) -> list[float]:
    """Steps where a new epoch begins (between the last step of one and the first of the
    next)."""
    return [
        (_x(before) + _x(after)) / 2
        for before, after in zip(steps, steps[1:])
        if before.get("epoch") != after.get("epoch")
    ]


def _per_step(ax, steps: list[dict], key: str, **style) -> None:
    """Each step's `key`, against where the step goes on the x axis."""
    ax.plot([_x(s) for s in steps], [_finite(s.get(key)) for s in steps], **style)
    ax.set_xlabel("steps taken (rolled-back ones included)" if "n" in steps[0] else "step")


def _per_epoch(ax, history: list[dict], key: str, color: str, xlabel: str) -> None:
    """Each epoch's `key`: the fallback for records without per-step numbers."""
    ax.plot(
        [h.get("epoch") for h in history],
        [_finite(h.get(key)) for h in history],
        color=color,
        marker="o",
    )
    ax.set_xlabel(xlabel)
    _whole_epochs(ax)


def _loss_panel(ax, steps: list[dict], history: list[dict], recoveries: list) -> None:
    ax.set_title("training loss")
    if steps:
        _per_step(ax, steps, "loss", color="tab:blue", linewidth=1.2)
        for edge in _epoch_boundaries(steps):
            ax.axvline(edge, color="0.85", linewidth=0.8, zorder=0)
    elif any("loss" in h for h in history):
        _per_epoch(ax, history, "loss", "tab:blue", "epoch (mean loss; steps not recorded)")
    else:
        _nothing(ax, "no loss recorded")
        return
    marked = [r for r in recoveries if isinstance(r, dict) and "step" in r]
    for i, r in enumerate(marked):
        where = _x(r) if steps else _finite(r.get("epoch", r["step"]))
        ax.axvline(
            where,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=None if i else "recovery",
        )
    if marked:
        ax.legend(loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)


def _recall_panel(ax, history: list[dict], before: dict, best_epoch: object) -> None:
    ax.set_title("validation text→image recall")
    points = []
    if before.get("text_to_image"):
        points.append((0, before["text_to_image"]))
    for h in history:
        t2i = (h.get("val") or {}).get("text_to_image")
        if t2i and "epoch" in h:
            points.append((h["epoch"], t2i))
    if not points:
        _nothing(ax, "no validation split")
        return
    epochs = [e for e, _ in points]
    for name, color in zip(RECALLS, ("tab:blue", "tab:orange", "tab:green")):
        ax.plot(
            epochs, [_finite(t.get(name)) for _, t in points], marker="o", color=color, label=name
        )
    if isinstance(best_epoch, int) and best_epoch in epochs:
        ax.axvline(best_epoch, color="0.5", linestyle=":", linewidth=1.2)
        ax.annotate(
            f"best epoch {best_epoch}",
            (best_epoch, 1.0),
            xytext=(3, -3),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize="small",
            color="0.35",
        )
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("epoch (0: before training)")
    _whole_epochs(ax)
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)


def _lr_panel(ax, steps: list[dict], history: list[dict]) -> None:
    ax.set_title("learning rate")
    if any("lr" in s for s in steps):
        _per_step(ax, steps, "lr", color="tab:purple")
    elif any("lr" in h for h in history):
        _per_epoch(ax, history, "lr", "tab:purple", "epoch")
    else:
        _nothing(ax, "not recorded")
        return
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.grid(alpha=0.3)

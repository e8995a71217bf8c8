"""Training curves: a real picture from a full run's metrics, and from an old or
validation-less one, written atomically."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from indexer.training.curves import CURVES, draw_curves


def recall(r1: float) -> dict:
    return {
        "n": 40,
        "recall@1": r1,
        "recall@5": min(1.0, r1 * 2),
        "recall@10": min(1.0, r1 * 3),
        "median_rank": 5.0,
    }


def both(r1: float) -> dict:
    return {"text_to_image": recall(r1), "image_to_text": recall(r1 * 0.9)}


def full_metrics(epochs: int = 4, steps_per_epoch: int = 12) -> dict:
    steps = []
    for e in range(epochs):
        for s in range(steps_per_epoch):
            step = e * steps_per_epoch + s + 1
            steps.append(
                {
                    "step": step,
                    "epoch": e + 1,
                    "loss": 3.0 * math.exp(-step / 20) + 0.1,
                    "lr": 1e-3 * min(1.0, step / 5) * (1 - step / (epochs * steps_per_epoch)),
                }
            )
    steps[20]["loss"] = float("nan")  # the step a recovery rolled back
    history = [
        {"epoch": e + 1, "loss": 2.0 / (e + 1), "lr": 1e-3 / (e + 1), "val": both(0.1 * (e + 2))}
        for e in range(epochs)
    ]
    return {
        "before": both(0.05),
        "after": both(0.4),
        "best_epoch": 3,
        "history": history,
        "steps": steps,
        "recoveries": [{"epoch": 2, "step": 21, "reason": "loss was NaN", "lr": 5e-4}],
    }


def looks_drawn(path, lines: bool = True) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert im.width >= 800 and im.height >= 250
    # Not blank: many pixels differ from the background, and there is colour (the lines).
    background = rgb[0, 0]
    differs = np.abs(rgb - background).sum(axis=2) > 30
    assert differs.mean() > 0.01
    if lines:
        colourful = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
        assert colourful.sum() > 200
    return im


def test_curves_from_a_full_run(tmp_path):
    out = draw_curves(full_metrics(), tmp_path / "model" / CURVES)
    assert out == tmp_path / "model" / CURVES
    looks_drawn(out)
    # Written whole: nothing but the picture is left in the folder.
    assert [p.name for p in out.parent.iterdir()] == [CURVES]


@pytest.mark.parametrize(
    "metrics, lines",
    [
        # An old sidecar: per-epoch loss only, no validation split, no steps or recoveries.
        (
            {
                "before": {},
                "after": {},
                "best_epoch": 2,
                "history": [{"epoch": 1, "loss": 2.5}, {"epoch": 2, "loss": 2.1}],
            },
            True,
        ),
        ({}, False),  # nothing at all: the picture says so rather than failing
    ],
    ids=["no-validation-no-steps", "empty"],
)
def test_curves_without_validation_or_steps(tmp_path, metrics, lines):
    looks_drawn(draw_curves(metrics, tmp_path / CURVES), lines)


def test_curves_replace_an_older_picture(tmp_path):
    path = tmp_path / CURVES
    path.write_bytes(b"old")
    draw_curves(full_metrics(epochs=2), path)
    looks_drawn(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CURVES]


def test_curves_as_svg(tmp_path):
    path = draw_curves(full_metrics(epochs=2), tmp_path / "curves.svg")
    assert path.read_text().lstrip().startswith("<?xml") and "<svg" in path.read_text()

"""Pictures of words for the OCR tests, drawn in DejaVu fonts: Debian's where installed,
else the copy matplotlib (a dependency) ships."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

_FOLDERS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf",
)


def font(px: int, face: str = "DejaVuSans.ttf") -> ImageFont.FreeTypeFont:
    path = next(folder / face for folder in _FOLDERS if (folder / face).is_file())
    return ImageFont.truetype(str(path), px)


def words_picture(
    lines: list[str], *, px: int = 40, size=(640, 480), seed: int = 0, photo: bool = False
) -> Image.Image:
    """Dark lines of text on a light background (`photo`: a noisy gradient with blobs)."""
    rng = np.random.default_rng(seed)
    if photo:
        ramp = np.linspace(180, 240, size[0])[None, :, None].repeat(size[1], axis=0)
        base = ramp.repeat(3, axis=2) + rng.normal(0, 8, (size[1], size[0], 3))
        image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    else:
        image = Image.new("RGB", size, (235, 230, 220))
    draw = ImageDraw.Draw(image)
    y = 30
    for line in lines:
        draw.text((30, y), line, font=font(px), fill=(15, 15, 15))
        y += int(px * 1.8)
    return image

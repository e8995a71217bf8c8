"""Phone and camera pictures made in the tests: HEIC (pillow-heif encodes it), AVIF
(Pillow's own codec) and a DNG (tifffile writes a linear DNG LibRaw decodes), each stored
sideways with EXIF orientation 6 and a capture date, as a phone held upright writes them.

The stored picture is blue on its left half and red on its right, so shown upright
(turned a quarter clockwise) it is blue on top and red below: `upright_ok` checks that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112
EXIF_IFD_TAG = 0x8769
DATETIME_ORIGINAL_TAG = 36867
BLUE = (20, 40, 230)
RED = (230, 30, 20)
STORED = (96, 64)
PREVIEW_GREEN = 200  # width, height as stored; upright it is 64 wide, 96 tall


def sideways_pixels(size: tuple[int, int] = STORED) -> np.ndarray:
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = BLUE
    arr[:, w // 2 :] = RED
    return arr


def _exif(date: str) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    exif.get_ifd(EXIF_IFD_TAG)[DATETIME_ORIGINAL_TAG] = date
    return exif.tobytes()


def make_heic(path: Path, date: str, size: tuple[int, int] = STORED) -> Path:
    import pillow_heif  # the imgsearch[heif] extra

    path.parent.mkdir(parents=True, exist_ok=True)
    heif = pillow_heif.from_bytes(mode="RGB", size=size, data=sideways_pixels(size).tobytes())
    heif.save(path, quality=95, exif=_exif(date))
    return path


def make_avif(path: Path, date: str, size: tuple[int, int] = STORED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sideways_pixels(size)).save(path, format="AVIF", quality=95, exif=_exif(date))
    return path


def make_dng(path: Path, date: str, size: tuple[int, int] = STORED, preview: bool = False) -> Path:
    """A linear (already demosaiced) 16-bit DNG; with `preview`, an 8-bit preview first,
    as cameras write, and the raw data in a sub-IFD. The preview is tinted green
    (`PREVIEW_GREEN`), so a test can tell which of the two was decoded."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = sideways_pixels(size).astype(np.uint16) * 257
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "imgsearch test camera", True),  # UniqueCameraModel
        (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (ORIENTATION_TAG, "H", 1, 6, True),
        (306, "s", 0, date, True),  # DateTime
    ]
    with tifffile.TiffWriter(path) as tif:
        if preview:
            tinted = sideways_pixels(size)
            tinted[..., 1] = PREVIEW_GREEN
            tif.write(
                tinted, photometric="rgb", subfiletype=1, subifds=1,
                extratags=tags, metadata=None,
            )  # fmt: skip
            tif.write(rgb, photometric=34892, subfiletype=0, metadata=None)
        else:
            tif.write(rgb, photometric=34892, extratags=tags, metadata=None)
    return path


def truncated(data_path: Path, out: Path) -> Path:
    """The first half of a file: a download cut short."""
    data = data_path.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def upright_ok(image: Image.Image) -> bool:
    """Portrait, blue at the top, red at the bottom: the sideways picture turned upright."""
    rgb = image.convert("RGB")
    w, h = rgb.size
    top = np.asarray(rgb.crop((0, 0, w, h // 4)), np.float32).mean(axis=(0, 1))
    bottom = np.asarray(rgb.crop((0, 3 * h // 4, w, h)), np.float32).mean(axis=(0, 1))
    return h > w and top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2]

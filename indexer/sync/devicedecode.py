"""JPEG decoding on the model's device (nvJPEG through torchvision), for indexing on a GPU.

With the model on a GPU, CPU decoding is the whole cost of indexing: a 12 MP JPEG takes
~35 ms of a core even with DCT-domain scaling, while the GPU embeds a ViT-B/32 image in well
under a millisecond. So on a GPU the decoding threads only hash a file and read its header
and bytes; each batch's JPEG bytes are decoded in one ``decode_jpeg`` call on the device,
then turned upright, resized and cropped there. What nvJPEG cannot take — other formats,
CMYK and MPO files, bytes that do not end in an end-of-image marker, any file it rejects —
is decoded on the CPU, that file alone, by the ordinary decoder (which also gives the same
failure reasons as the CPU path).

The same code runs with device "cpu" (torchvision then decodes with libjpeg-turbo); that is
how the tests check it where no GPU is at hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from indexer.sync.pipeline import Decoded, Failed, WorkItem
from search.imageio import ImageHeader
from search.models.encoder import Encoder

# Pillow's stored modes that nvJPEG turns into the same RGB as Pillow: YCbCr ("RGB") and
# greyscale. CMYK/YCCK (Adobe-inverted) go to the CPU.
_DEVICE_MODES = frozenset({"RGB", "L"})
# Decoded full-resolution pixels held on the device at once (bytes): 24 × 12 MP photos.
DEVICE_DECODE_BYTES = 24 * 36_000_000


@dataclass(frozen=True)
class JpegBytes:
    data: bytes
    orientation: int  # EXIF orientation, applied on the device after decoding


def read_jpeg(source: str | BinaryIO, header: ImageHeader) -> JpegBytes | None:
    """The file's bytes (from its path, or read whole from an open file) when the device
    decoder can take it, else None (CPU decodes it)."""
    if header.format != "JPEG" or header.mode not in _DEVICE_MODES:
        return None  # includes MPO: decode_jpeg would need the primary image cut out first
    if isinstance(source, str):
        data = Path(source).read_bytes()
    else:
        source.seek(0)
        data = source.read()
    # A truncated download decodes to grey on some decoders instead of failing; Pillow
    # says "truncated", so it decides. Trailing bytes after the marker also go to Pillow.
    if not data.endswith(b"\xff\xd9"):
        return None
    return JpegBytes(data, header.orientation)


# EXIF orientation -> the view of a (C, H, W) tensor that is upright (as imageio's _UPRIGHT).
_UPRIGHT = {
    2: lambda x: x.flip(-1),
    3: lambda x: x.flip(-1, -2),
    4: lambda x: x.flip(-2),
    5: lambda x: x.transpose(-1, -2),
    6: lambda x: x.rot90(-1, (-2, -1)),
    7: lambda x: x.transpose(-1, -2).flip(-1, -2),
    8: lambda x: x.rot90(1, (-2, -1)),
}


def upright(x, orientation: int):
    """(C, H, W) → the upright view, as search.imageio's EXIF transposes on PIL images."""
    turn = _UPRIGHT.get(orientation)
    return x if turn is None else turn(x)


def resize_crop(x, size: int, resize_mode: str = "shortest", resample: str = "bicubic"):
    """(3, H, W) uint8 → (size, size, 3) uint8, the tensor twin of encoder.prepare_pixels
    (antialiased, so it follows Pillow's resampling within rounding)."""
    import torch
    import torch.nn.functional as F

    mode = resample if resample in ("bicubic", "bilinear", "nearest") else "bicubic"
    _, h, w = x.shape

    def resized(new_h: int, new_w: int):
        if (new_h, new_w) == (h, w):
            return x
        aa = mode != "nearest"
        y = F.interpolate(x[None].float(), (new_h, new_w), mode=mode, antialias=aa)[0]
        return y.round_().clamp_(0, 255).to(torch.uint8)

    if resize_mode == "squash":
        out = resized(size, size)
    elif resize_mode == "longest":
        scale = size / max(w, h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        out = torch.zeros((3, size, size), dtype=torch.uint8, device=x.device)
        top, left = (size - new_h) // 2, (size - new_w) // 2
        out[:, top : top + new_h, left : left + new_w] = resized(new_h, new_w)
    else:
        new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        y = resized(new_h, new_w)
        left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
        out = y[:, top : top + size, left : left + size]
    return out.permute(1, 2, 0)


@dataclass
class DeviceJpegDecoder:
    """Batches of JPEG bytes → model-ready uint8 (size, size, 3) tensors on `device`."""

    device: str
    size: int
    resize_mode: str = "shortest"
    resample: str = "bicubic"

    def __call__(self, jpegs: list[JpegBytes], megapixels: list[float]) -> list:
        """One tensor per input, or None where the device decoder refused the file."""
        out: list = []
        start = 0
        while start < len(jpegs):
            # Bound the full-resolution pixels held at once; always at least one file.
            end, held = start + 1, megapixels[start] * 3e6
            while end < len(jpegs) and held + megapixels[end] * 3e6 <= DEVICE_DECODE_BYTES:
                held += megapixels[end] * 3e6
                end += 1
            out += self._decode(jpegs[start:end])
            start = end
        return out

    def _decode(self, jpegs: list[JpegBytes]) -> list:
        import torch

        raw = [torch.frombuffer(bytearray(j.data), dtype=torch.uint8) for j in jpegs]
        try:
            images = _decode_jpeg(raw, self.device)
        except RuntimeError:
            # One bad file fails the whole call (no partial results): retry one by one.
            images = []
            for r in raw:
                try:
                    images.append(_decode_jpeg([r], self.device)[0])
                except RuntimeError:
                    images.append(None)
        return [
            None
            if im is None
            else resize_crop(upright(im, j.orientation), self.size, self.resize_mode, self.resample)
            for im, j in zip(images, jpegs, strict=True)
        ]


def _decode_jpeg(raw: list, device: str) -> list:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    if device.startswith("cuda"):
        # nvJPEG's hardware decoder writes to its new outputs outside the stream's order,
        # and the caching allocator may hand it memory that kernels queued for the last
        # chunk (resizes of freed full-size images) still read: let them finish first
        # (torchvision PR 9606 describes the corruption).
        torch.cuda.current_stream(device).synchronize()

    with warnings.catch_warnings():
        # torchvision 0.29 marks its decoders deprecated in favour of TorchCodec, which
        # has no batched nvJPEG image decoding yet.
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)


@dataclass
class DeviceCollate:
    """The pipeline's collate stage on a GPU: decodes a batch's JPEG bytes on the device and
    sends each file the device refused through `cpu_decode` (the ordinary decoder)."""

    decoder: DeviceJpegDecoder
    cpu_decode: Callable[[WorkItem], Decoded | Failed]

    def __call__(self, ok: list[Decoded]) -> tuple[list[Decoded], object, list[Failed]]:
        waiting = [i for i, d in enumerate(ok) if d.encoded is not None]
        decoded = self.decoder(
            [ok[i].encoded for i in waiting],
            [ok[i].width * ok[i].height / 1e6 for i in waiting],
        )
        on_device = dict(zip(waiting, decoded, strict=True))
        keep: list[Decoded] = []
        pixels: list = []
        failed: list[Failed] = []
        for i, d in enumerate(ok):
            p = on_device.get(i) if d.encoded is not None else d.pixels
            if p is None:
                r = self.cpu_decode(d.item)
                if isinstance(r, Failed):
                    failed.append(r)
                    continue
                d, p = r, r.pixels
            keep.append(d)
            pixels.append(p)
        return keep, stack_on_device(pixels, self.decoder.device) if keep else None, failed


def stack_on_device(pixels: list, device: str):
    """A (B, S, S, 3) uint8 batch on `device` from device tensors and CPU numpy arrays."""
    import torch

    # torch.tensor copies: Pillow's arrays are read-only, which from_numpy warns about.
    parts = [p if isinstance(p, torch.Tensor) else torch.tensor(p, device=device) for p in pixels]
    return torch.stack(parts)


def device_decoder(encoder: Encoder) -> DeviceJpegDecoder:
    """The device decoder that prepares pixels as `encoder.prepare` does on the CPU."""
    return DeviceJpegDecoder(
        encoder.device, encoder.image_size, encoder.resize_mode, encoder.resample
    )

"""Videos through PyAV (the imgsearch[video] extra): the frames worth embedding, and one
frame at a time for thumbnails.

A video is read once, front to back. Every CHECK_EVERY seconds a frame is shrunk to
16×16 and compared with the last one looked at (a cut) and with the last one kept (a
slow change: a pan, a fade); a frame is kept at a cut, after such a change, and at least
every `every` seconds. At most `most` frames are held: when one more is kept, the one
worth least goes, its difference from the frame kept before it times the time it stands
for (a still stretch's periodic frames first, then the cuts into the shortest shots). So
a 10-minute video costs at most `most` frames' embedding, and memory holds only those
frames, each reduced to the model's size.

Decoding is bounded: the frame size is checked against the pixel cap before any frame is
decoded, a run longer than `timeout` seconds stops with a failure, and a stream whose
frames end well before its stated duration (a truncated copy) is a failure too.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import numpy as np
from PIL import Image

from search.errors import ImageDecodeError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi"})
# search.codecs lists videos with this reason when PyAV is missing.
MISSING = "codec missing: install imgsearch[video] to index videos"
CHECK_EVERY = 0.25  # seconds between frames compared (the others are decoded, not looked at)
CUT = 0.1  # mean 16×16 colour difference (of 1) from the frame before: a new shot
DRIFT = 0.15  # from the last frame kept: the picture changed enough to keep another
# A stream whose frames stop this much before its stated duration is missing its end.
TRUNCATED_SLACK = 1.0  # seconds, or
TRUNCATED_SHARE = 0.05  # of the duration, whichever is more


@functools.cache
def av_module():
    """PyAV, or None when the imgsearch[video] extra is not installed."""
    try:
        import av
    except ImportError:
        return None
    return av


def _av():
    av = av_module()
    if av is None:
        raise ImageDecodeError(MISSING)
    return av


def is_video(name: str | None) -> bool:
    return name is not None and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoFrames:
    width: int  # upright
    height: int
    duration: float  # seconds
    taken_at: datetime | None  # the container's creation time, in local time
    times: tuple[float, ...]  # of the frames kept, ascending
    images: tuple[Image.Image, ...]  # those frames, RGB, upright, shorter side >= min_side


@dataclass
class _Kept:
    t: float
    novelty: float  # difference from the frame kept before it
    image: Image.Image


def read_video(
    source: str | BinaryIO,
    *,
    every: float,
    most: int,
    min_side: int,
    max_megapixels: float,
    timeout: float,
) -> VideoFrames:
    """The frames of a video worth embedding (see the module's docstring). Raises
    ImageDecodeError with a short reason for anything that cannot be read."""
    av = _av()
    started = time.monotonic()
    try:
        container = av.open(source, metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise ImageDecodeError(f"cannot open video: {_ffmpeg_reason(exc)}") from exc
    with container:
        if not container.streams.video:
            raise ImageDecodeError("no video stream in the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_megapixels * 1e6:
            raise ImageDecodeError(f"too large: more than {max_megapixels:.0f} MP")
        duration = _duration(container, stream)
        kept: list[_Kept] = []
        checked = last = None  # 16×16 of the last frame looked at, of the last kept
        next_check = -1.0
        end = 0.0
        rotation = decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                if time.monotonic() - started > timeout:
                    raise ImageDecodeError(
                        f"video decoding took over {timeout:.0f} s (IMGSEARCH_VIDEO_TIMEOUT)"
                    )
                t = frame.time if frame.time is not None else end
                end = max(end, t)
                if t < next_check:
                    continue
                next_check = t + CHECK_EVERY
                small = frame.to_ndarray(width=16, height=16, format="rgb24").astype(np.float32)
                cut = checked is not None and _difference(small, checked) > CUT
                drift = 1.0 if last is None else _difference(small, last[1])
                checked = small
                if not (cut or drift > DRIFT or last is None or t - last[0] >= every):
                    continue
                rotation = getattr(frame, "rotation", 0) or 0
                kept.append(_Kept(t, drift, _upright(frame, rotation, min_side)))
                last = (t, small)
                if len(kept) > most:
                    del kept[_least_worth(kept)]
        except av.FFmpegError as exc:
            if not kept:
                raise ImageDecodeError(f"corrupt video data: {_ffmpeg_reason(exc)}") from exc
            raise ImageDecodeError(
                f"truncated or corrupt video: decoding stopped at {end:.1f} s"
                f" ({_ffmpeg_reason(exc)})"
            ) from exc
        if not kept:
            raise ImageDecodeError("no frame could be decoded")
        if duration and end < duration - max(TRUNCATED_SLACK, TRUNCATED_SHARE * duration):
            raise ImageDecodeError(
                f"truncated video: its frames end at {end:.1f} s of {duration:.1f} s"
            )
        # AVI states its length by the data it finds, but its header counts the frames.
        expected, rate = stream.frames, float(stream.average_rate or 0)
        missing = max(TRUNCATED_SLACK * rate, TRUNCATED_SHARE * expected)
        if expected and decoded < expected - missing:
            raise ImageDecodeError(f"truncated video: {decoded} of its {expected} frames")
        if rotation % 180:
            width, height = height, width
        return VideoFrames(
            width,
            height,
            duration or end,
            _created(container),
            tuple(k.t for k in kept),
            tuple(k.image for k in kept),
        )


def frame_at(source: str | BinaryIO, t: float, *, max_megapixels: float) -> Image.Image:
    """The frame shown at `t` seconds (the last one starting at or before it), upright."""
    av = _av()
    try:
        with av.open(source, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise ImageDecodeError("no video stream in the file")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if ctx.width * ctx.height > max_megapixels * 1e6:
                raise ImageDecodeError(f"too large: more than {max_megapixels:.0f} MP")
            if t > 0 and stream.time_base:
                container.seek(int(t / stream.time_base), stream=stream, backward=True)
            shown = None
            for frame in container.decode(stream):
                if shown is not None and frame.time is not None and frame.time > t + 1e-6:
                    break
                shown = frame
            if shown is None:
                raise ImageDecodeError("no frame could be decoded")
            return _upright(shown, getattr(shown, "rotation", 0) or 0, None)
    except av.FFmpegError as exc:
        raise ImageDecodeError(f"corrupt video data: {_ffmpeg_reason(exc)}") from exc


def _least_worth(kept: list[_Kept]) -> int:
    """The kept frame to let go: the one whose novelty times the time it stands for
    (until the next kept frame) is least. A still stretch's periodic frames go first,
    then the cuts into shots of a second or two. The first frame (the poster) and the
    newest (whose stretch has only begun) stay."""
    worth = [kept[i].novelty * (kept[i + 1].t - kept[i].t) for i in range(1, len(kept) - 1)]
    return 1 + int(np.argmin(worth))


def _upright(frame, rotation: int, min_side: int | None) -> Image.Image:
    """The frame as an RGB image, turned as the file asks (`rotation`: degrees
    counter-clockwise), its shorter side brought down to `min_side` (None: full size)."""
    if min_side and min(frame.width, frame.height) > min_side:
        # Scaled while converting (swscale), not after: a 4K frame is never made in RGB.
        scale = min_side / min(frame.width, frame.height)
        image = frame.to_image(
            width=max(1, round(frame.width * scale)),
            height=max(1, round(frame.height * scale)),
            interpolation="AREA",
        )
    else:
        image = frame.to_image()
    if rotation % 360:
        image = image.rotate(rotation, expand=True)
    return image


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean()) / 255.0


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _created(container) -> datetime | None:
    """The container's creation time (ISO, UTC) as naive local time, as EXIF dates are."""
    raw = container.metadata.get("creation_time")
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.year < 1971:  # cameras without a clock write 1904 or 1970
        return None
    return when.astimezone().replace(tzinfo=None) if when.tzinfo else when


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__

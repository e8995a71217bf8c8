"""Videos made for the tests with PyAV: scenes of known pictures at known times.

Each scene shows one picture (tests/dupfiles.picture) drifting a little frame to frame, so
the stream is real motion, not a still; cuts between scenes are hard cuts.
"""

from __future__ import annotations

from pathlib import Path

import av
from dupfiles import picture
from PIL import Image

SIZE = (192, 144)
# Container → codec: VP9 in WebM plays in Debian's Chromium; H.264 in MP4 is what phones
# write; MPEG-4 part 2 in AVI encodes fastest (the long video).
CODECS = {".webm": "libvpx-vp9", ".mp4": "libx264", ".mkv": "libx264", ".avi": "mpeg4"}


def scene_picture(seed: int, step: int = 0) -> Image.Image:
    return picture(seed, shift=(step * 0.5, 0)).resize(SIZE)


def make_video(
    path: Path,
    scenes: list[tuple[int, float]],
    *,
    fps: int = 8,
    created: str | None = "2021-06-01T12:00:00.000000Z",
) -> Path:
    """A video of `scenes` (picture seed, seconds) one after another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODECS[path.suffix], rate=fps)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        if stream.codec_context.name == "libvpx-vp9":
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        elif stream.codec_context.name == "libx264":
            stream.codec_context.options = {"preset": "ultrafast"}
        if created:
            container.metadata["creation_time"] = created
        for seed, seconds in scenes:
            base = scene_picture(seed)
            for step in range(round(seconds * fps)):
                # Drift without re-drawing each frame: cheap for long videos.
                frame = base.transform(
                    base.size, Image.Transform.AFFINE, (1, 0, -step % 7, 0, 1, 0)
                )
                for packet in stream.encode(av.VideoFrame.from_image(frame)):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cut_short(path: Path, out: Path, share: float) -> Path:
    """The first `share` of a video's bytes: a copy that stopped part way."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * share)])
    return out

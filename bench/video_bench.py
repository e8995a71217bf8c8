"""Videos (issue 15): what indexing a 10-minute video costs, and whether a scene's picture
finds the video at that scene's time.

Three generated families with different statistics, each a 10-minute H.264 MP4:
- "cuts": hard cuts between random pictures every 3-20 s, the camera drifting a little;
- "pan": one long slow pan across a large picture (no cut at all: only drift);
- "still": one picture held, with sensor-like noise (nothing but the periodic frames).

For each: frames kept and embedded (the issue allows 40 by default), the decode time
(search.videos.read_video) and the whole `sync` time with the tiny model, against a plain
reference that embeds one frame a second. For "cuts", every scene of 5 s or more is
looked up by its own picture (search by example) and counted found when the video comes
first with `t` inside the scene (±1 s).

    .venv/bin/python bench/video_bench.py [--minutes 10] [--size 640x360] [--fps 30] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tinylib import tiny_settings  # noqa: E402

from indexer.sync.run import sync  # noqa: E402
from search.library import Library  # noqa: E402
from search.query.searcher import SearchRequest  # noqa: E402
from search.settings import Settings  # noqa: E402
from search.videos import read_video  # noqa: E402


def scene(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, w)[None, :, None]
    image = Image.fromarray((a * (1 - ramp) + b * ramp).repeat(h, axis=0).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.2) * h
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    return image


def make(family: str, path: Path, seed: int, seconds: float, size, fps: int):
    """Writes the video; returns its scenes as (start, end, picture)."""
    rng = np.random.default_rng(seed)
    w, h = size
    total = round(seconds * fps)
    scenes = []
    if family == "cuts":
        t = 0.0
        while t < seconds:
            length = float(rng.uniform(3, 20))
            scenes.append((t, min(seconds, t + length), scene(rng, size)))
            t += length
    else:
        scenes.append((0.0, seconds, scene(rng, (w * 3, h) if family == "pan" else size)))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast"}
        at = 0
        pixels = None
        for n in range(total):
            t = n / fps
            while at + 1 < len(scenes) and t >= scenes[at + 1][0]:
                at += 1
                pixels = None
            if pixels is None:
                pixels = np.asarray(scenes[at][2])
            if family == "cuts":
                frame = np.roll(pixels, (n % 30) // 3, axis=1)
            elif family == "pan":
                x = int((pixels.shape[1] - w) * t / seconds)
                frame = pixels[:, x : x + w]
            else:
                noise = rng.integers(-6, 7, pixels.shape, dtype=np.int16)
                frame = np.clip(pixels.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(video_frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return scenes


def measure(family: str, seed: int, args, work: Path) -> dict:
    size = tuple(int(v) for v in args.size.split("x"))
    folder = work / f"{family}-{seed}"
    folder.mkdir()
    video = folder / f"{family}.mp4"
    started = time.perf_counter()
    scenes = make(family, video, seed, args.minutes * 60, size, args.fps)
    made_s = time.perf_counter() - started
    defaults = Settings()
    started = time.perf_counter()
    frames = read_video(
        str(video),
        every=defaults.video_every,
        most=defaults.video_frames,
        min_side=224,
        max_megapixels=defaults.max_megapixels,
        timeout=defaults.video_timeout,
    )
    decode_s = time.perf_counter() - started
    with Library(tiny_settings(work / f"home-{family}-{seed}")) as lib:
        started = time.perf_counter()
        report = sync(lib, [str(folder)], progress=False)
        sync_s = time.perf_counter() - started
        model = lib.serving_model
        (video_id,) = lib.catalog.frames_of(lib.catalog.index_ids(model).tolist(), model).keys()
        stored = lib.catalog.frames_of([video_id], model)[video_id]
        found = looked = 0
        if family == "cuts":
            for start, end, picture in scenes:
                if end - start < 5:
                    continue
                looked += 1
                query = work / "query.png"
                picture.save(query)
                hit = lib.searcher.search(SearchRequest(image=str(query), k=1)).hits[0]
                found += hit.id == video_id and start - 1 <= hit.t <= end + 1
    return {
        "family": family,
        "seed": seed,
        "made_s": made_s,
        "bytes": video.stat().st_size,
        "kept": len(frames.times),
        "stored": len(stored.times),
        "embedded": report.embedded,
        "failed": report.failed,
        "decode_s": decode_s,
        "sync_s": sync_s,
        "reference": int(args.minutes * 60),  # one frame a second
        "found": found,
        "looked": looked,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--families", default="cuts,pan,still")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; PyAV {av.__version__}")
    print(f"{args.minutes:g} min, {args.size} at {args.fps} fps, H.264 (x264 ultrafast)")
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                r = measure(family, seed, args, Path(tmp))
                scenes = f"  scenes found {r['found']}/{r['looked']}" if r["looked"] else ""
                print(
                    f"{r['family']:6} seed {r['seed']}  {r['bytes'] / 1e6:.1f} MB"
                    f"  frames kept {r['kept']} (stored {r['stored']}; one a second:"
                    f" {r['reference']})  read {r['decode_s']:.1f} s"
                    f"  index {r['sync_s']:.1f} s  failed {r['failed']}{scenes}"
                    f"  (made in {r['made_s']:.0f} s)",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU path (issue 5, part 4): model-only and end-to-end images/s on a CUDA machine,
against the model's FLOP limit; device JPEG decoding; exact FAISS search on the GPU.

Run where an NVIDIA GPU is at hand:
    .venv/bin/pip install -e '.[gpu,bench]' && .venv/bin/python bench/gpu_bench.py
Writes bench/BENCHMARKS.md section "gpu". `--device cpu` runs the same code on the CPU
with small sizes, to check the script where no GPU is at hand; it then writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from index_bench import time_imgsearch  # noqa: E402
from photos import make_photos  # noqa: E402
from rclip_models import ARCH, export  # noqa: E402
from report import machine, write_section  # noqa: E402

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by name fragment.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def flops_per_image(encoder) -> float:
    """FLOPs of one image through the visual tower, counted by torch (2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, 3, encoder.image_size, encoder.image_size), device=encoder.device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        encoder.model.encode_image(x.to(encoder.dtype))
    return float(counter.get_total_flops())


def sync_device(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_rate(encoder, batch: int, repeats: int) -> float:
    import torch

    pixels = torch.randint(
        0, 256, (batch, encoder.image_size, encoder.image_size, 3), dtype=torch.uint8
    ).to(encoder.device)
    encoder.encode_pixels(pixels)  # warm-up: kernels, autotuning, allocator
    sync_device(encoder.device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        encoder.encode_pixels(pixels)
    sync_device(encoder.device)
    return batch * repeats / (time.perf_counter() - t0)


def decode_rate(photos: list[Path], encoder, batch: int) -> float:
    from indexer.sync.devicedecode import DeviceJpegDecoder, JpegBytes

    decoder = DeviceJpegDecoder(encoder.device, encoder.image_size)
    jpegs = [JpegBytes(p.read_bytes(), 1) for p in photos]
    mp = [12.0] * len(jpegs)
    decoder(jpegs[:batch], mp[:batch])
    sync_device(encoder.device)
    t0 = time.perf_counter()
    for start in range(0, len(jpegs), batch):
        out = decoder(jpegs[start : start + batch], mp[start : start + batch])
        assert all(t is not None for t in out)
    sync_device(encoder.device)
    return len(jpegs) / (time.perf_counter() - t0)


def faiss_gpu_p50(n: int, dim: int = 512) -> float | None:
    """p50 ms of one exact top-10 query over n vectors on the GPU; None without faiss-gpu."""
    import faiss

    from search.index.vectors import VectorIndex

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.build(np.arange(n), vectors)
    index.search(vectors[0], 10)
    times = []
    for q in vectors[1:201]:
        t0 = time.perf_counter()
        index.search(q, 10)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", type=int, default=1000, help="photos for the end-to-end runs")
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench"))
    args = ap.parse_args()
    on_gpu = args.device.startswith("cuda")
    small = not on_gpu  # a check of the script, not a measurement

    from search.models.encoder import load_encoder
    from search.models.spec import resolve

    weights = export(args.work / "models")
    photos = make_photos(args.work / "photos", args.n)
    folder = args.work / f"photos-{args.n}"
    if not folder.exists():
        folder.mkdir()
        for p in photos:
            os.link(p, folder / p.name)
    source = resolve(ARCH, str(weights), models_dir=args.work, cache_dir=args.work / "cache")
    encoder = load_encoder(source, args.device)
    flops = flops_per_image(encoder)
    name = machine().split(";")[0]
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)

    rows = []
    for batch in (8,) if small else (64, 256, 1024):
        rate = model_rate(encoder, batch, 2 if small else 20)
        share = f"{rate * flops / peak:.0%}" if peak else "unknown peak"
        rows.append(f"| model only, batch {batch}, {encoder.precision} | {rate:.0f} | {share} |")
    for batch in (4,) if small else (32, 128):
        rate = decode_rate(photos[: 8 if small else 256], encoder, batch)
        rows.append(f"| JPEG decode + resize on the device, batch {batch} | {rate:.0f} | - |")
    for decode in ("device", "cpu"):
        wall, report = time_imgsearch(
            folder, args.work / "gpu-home", weights, args.device, "--decode", decode
        )
        rows.append(
            f"| `imgsearch index --decode {decode}`, whole command ({wall:.1f} s) | "
            f"{args.n / wall:.0f} | pipeline alone: {report['images_per_s']:.0f} img/s |"
        )
    p50 = faiss_gpu_p50(10_000 if small else 1_000_000)
    faiss_line = (
        f"Exact FAISS search on the GPU, 1,000,000 × 512 vectors: p50 {p50:.2f} ms per query."
        if p50 is not None
        else "faiss-gpu not installed or no GPU visible: GPU FAISS not measured."
    )
    body = f"""## GPU path (issue 5): `bench/gpu_bench.py`

Machine: {machine()}.
{ARCH}: {flops / 1e9:.1f} GFLOP per image (counted by torch.utils.flop_counter);
bf16 dense peak taken as {f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown"}.
{args.n} camera-like 4000×3000 JPEGs for the end-to-end runs (first index from empty).
Reproduce: `.venv/bin/pip install -e '.[gpu,bench]' && .venv/bin/python bench/gpu_bench.py`.

| what | images/s | share of FLOP peak / note |
|---|---|---|
{chr(10).join(rows)}

{faiss_line}
"""
    print(body)
    if on_gpu:
        write_section("gpu", body)


if __name__ == "__main__":
    main()

"""Indexing throughput against rclip, and where the time goes (issue 5, parts 1 and 2).

Both tools index the same folder of camera-like 4000×3000 JPEGs with the same
architecture (ViT-B-32-256) and the same random weights: imgsearch loads them from a
safetensors file, rclip from the ONNX files it expects in RCLIP_DATADIR. Runs alternate
(rclip, imgsearch, rclip, imgsearch, ...) from an empty index each time; whole-command
wall time is measured, model loading included.

Run: .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/index_bench.py
(it creates an rclip virtual env from PyPI under --work on first use).
Writes its figures into bench/BENCHMARKS.md (section "index").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from photos import make_photos  # noqa: E402
from PIL import Image  # noqa: E402
from rclip_models import ARCH, RCLIP_SUBDIR, export  # noqa: E402
from report import machine, write_section  # noqa: E402

IMGSEARCH = Path(sys.executable).with_name("imgsearch")


def rclip_env(work: Path) -> Path:
    venv = work / "rclip-venv"
    if not (venv / "bin" / "rclip").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "pip", "install", "-q", "rclip"], check=True)
    return venv / "bin" / "rclip"


def time_rclip(rclip: Path, photos: Path, datadir: Path) -> float:
    (datadir / "db.sqlite3").unlink(missing_ok=True)
    env = {**os.environ, "RCLIP_DATADIR": str(datadir)}
    t0 = time.perf_counter()
    subprocess.run(
        [rclip, "-t", "1", "a cat"],
        cwd=photos,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def time_imgsearch(
    photos: Path, home: Path, weights: Path, *flags: str, fresh: bool = False
) -> tuple[float, dict]:
    """Wall time of a first `imgsearch index` of `photos` (the whole command), and its
    --json report. The catalog and index are removed first; the library's model files
    (cache/: weights digest, the model's export) are kept, as rclip keeps its ONNX files
    between runs, unless `fresh` (a model's first use in a new library)."""
    if fresh:
        shutil.rmtree(home, ignore_errors=True)
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm", "index", "thumbs"):
        path = home / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            IMGSEARCH,
            "--home",
            home,
            "index",
            photos,
            "--model",
            ARCH,
            "--pretrained",
            weights,
            *flags,
            "--quiet",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - t0, json.loads(out.stdout)


def rate(fn, items, workers: int = 1) -> float:
    t0 = time.perf_counter()
    if workers == 1:
        for x in items:
            fn(x)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fn, items))
    return len(items) / (time.perf_counter() - t0)


def where_time_goes(photos: list[Path], weights: Path, datadir: Path, cache: Path) -> dict:
    import onnxruntime as ort
    import torch

    from search.imageio import load_image
    from search.models.encoder import load_encoder
    from search.models.onnx import openvino, store
    from search.models.spec import resolve

    sample = photos[: min(16, len(photos))]

    def full(p):
        with Image.open(p) as im:
            im.convert("RGB")

    source = resolve(ARCH, str(weights), models_dir=datadir, cache_dir=datadir)
    enc = load_encoder(source, "cpu")

    def draft(p):
        enc.prepare(load_image(p, min_side=enc.image_size).image)

    pixels = np.random.default_rng(0).integers(0, 256, (32, 256, 256, 3), dtype=np.uint8)

    def model_rate(encoder) -> float:
        encoder.encode_pixels(pixels[:4])
        t0 = time.perf_counter()
        for _ in range(2):
            encoder.encode_pixels(pixels)
        return 64 / (time.perf_counter() - t0)

    fast_rate = model_rate(enc)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    fast_rate_1 = model_rate(enc)
    torch.set_num_threads(threads)
    fp32 = load_encoder(source, "cpu", "fp32")
    fp32_rate = model_rate(fp32)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(
        str(datadir / RCLIP_SUBDIR / "visual.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    x = fp32.to_tensor(pixels).numpy()
    session.run(None, {"input": x[:4]})
    t0 = time.perf_counter()
    for _ in range(2):
        session.run(None, {"input": x})
    ort_rate = 64 / (time.perf_counter() - t0)
    export = store.find(cache, source.model_id)
    exported = {}
    if export is not None:
        from search.models.onnx.encoder import OnnxEncoder

        exported["model only, imgsearch export on ONNX Runtime fp32"] = model_rate(
            OnnxEncoder(export)
        )
        if openvino.usable(export, cache):
            exported["model only, imgsearch export on OpenVINO bf16 (the default here)"] = (
                model_rate(OnnxEncoder(export, openvino_cache=cache))
            )
    return {
        "full decode, 1 thread": rate(full, sample),
        f"full decode, {os.cpu_count()} threads": rate(full, sample, os.cpu_count() or 1),
        "draft decode + resize, 1 thread": rate(draft, sample),
        f"draft decode + resize, {os.cpu_count()} threads": rate(
            draft, sample, os.cpu_count() or 1
        ),
        f"model only, imgsearch torch {enc.precision} (before the export exists)": fast_rate,
        f"model only, imgsearch torch {enc.precision}, 1 thread": fast_rate_1,
        "model only, imgsearch torch fp32": fp32_rate,
        "model only, rclip's path (onnxruntime fp32)": ort_rate,
        **exported,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100, help="photos (default 100)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench"))
    args = ap.parse_args()

    photos = make_photos(args.work / "photos", args.n)
    folder = args.work / f"photos-{args.n}"
    if not folder.exists():
        folder.mkdir()
        for p in photos:
            os.link(p, folder / p.name)
    weights = export(args.work / "models")
    datadir = args.work / "models" / "rclip"
    rclip = rclip_env(args.work)
    load_before = os.getloadavg()[0]
    home = args.work / "home"
    first_use, first_report = time_imgsearch(folder, home, weights, fresh=True)
    times: dict[str, list[float]] = {"rclip": [], "imgsearch": []}
    inside: list[float] = []  # imgsearch's own report: scan, model load, embedding, index
    engines = set()
    for _ in range(args.rounds):
        times["rclip"].append(time_rclip(rclip, folder, datadir))
        wall, report = time_imgsearch(folder, home, weights)
        assert report["embedded"] == args.n, report
        times["imgsearch"].append(wall)
        inside.append(report["elapsed_s"])
        engines.add(report["engine"])
    print(times, inside, first_use, flush=True)
    parts = where_time_goes(photos, weights, datadir, home / "cache")
    load_after = os.getloadavg()[0]

    best = {k: args.n / statistics.median(v) for k, v in times.items()}
    ratio = best["imgsearch"] / best["rclip"]
    # The steady-state ceiling on this CPU: every core decodes, then every core runs the
    # model (the engine an index run of this size uses), one image after the other.
    cores = os.cpu_count() or 1
    decode_all = parts[f"draft decode + resize, {cores} threads"]
    model_all = next(
        v
        for k, v in sorted(parts.items(), key=lambda kv: "(the default here)" not in kv[0])
        if "(the default here)" in k or k.startswith("model only, imgsearch torch")
    )
    parts["ceiling: 1 / (draft decode + model, each on every core), no start-up"] = 1 / (
        1 / decode_all + 1 / model_all
    )
    parts["imgsearch end to end (median whole command, start-up included)"] = best["imgsearch"]
    parts["rclip end to end (median whole command, start-up included)"] = best["rclip"]
    mb = statistics.mean(p.stat().st_size for p in photos) / 2**20
    rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in parts.items())
    runs = ", ".join(f"{k}: " + " / ".join(f"{t:.1f} s" for t in v) for k, v in times.items())
    inside_s = " / ".join(f"{t:.1f} s" for t in inside)
    body = f"""## Indexing throughput (issue 5): `bench/index_bench.py`

Machine: {machine()}. Load average {load_before:.2f} before, {load_after:.2f} after.
{args.n} camera-like 4000×3000 JPEGs ({mb:.1f} MB each on average), {ARCH} with the same
random weights in both tools, a first full index of the photos from an empty catalog
(each tool keeps its model files: rclip its ONNX files, imgsearch its library's cache/
with the model's export), {args.rounds} alternating rounds, whole-command wall time (process
start, model loading and exit included); imgsearch's engine: {", ".join(sorted(engines))}.
A model's first use in a new library (torch embeds, then the model is exported and checked
once, search.models.onnx): {first_use:.1f} s, {first_report["engine"]}.
Runs: {runs}; of each imgsearch run, {inside_s} inside `sync` (the rest is Python
start-up, argument parsing and exit).
Reproduce: `.venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/index_bench.py --n {args.n}`.

| tool | images/s (median round) |
|---|---|
| rclip {rclip_version(rclip)} | {best["rclip"]:.2f} |
| imgsearch | {best["imgsearch"]:.2f} |
| **ratio** | **{ratio:.2f}×** |

Where the time goes (images/s, same machine):

| stage | images/s |
|---|---|
{rows}
"""
    print(body)
    write_section("index", body)


def rclip_version(rclip: Path) -> str:
    out = subprocess.run([rclip, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().split()[-1]


if __name__ == "__main__":
    main()

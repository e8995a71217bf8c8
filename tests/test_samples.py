"""The sample a user tries right after install (README): `imgsearch index data/samples`, then
`imgsearch eval data/samples/pairs.csv`, through the real console script, offline."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
IMGSEARCH = shutil.which("imgsearch", path=os.path.dirname(sys.executable)) or "imgsearch"
TINY = ["--model", "imgsearch-tiny", "--pretrained", "none", "--device", "cpu"]
# No ONNX export after the index run (seconds, and tested elsewhere).
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "IMGSEARCH_ENGINE": "torch"}


def imgsearch(home: Path, *args) -> dict:
    cmd = [IMGSEARCH, "--home", str(home), *map(str, args), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_sample_indexes_and_evaluates(tmp_path) -> None:
    with open(SAMPLES / "pairs.csv", newline="", encoding="utf-8") as f:
        pairs = list(csv.DictReader(f))
    assert 20 <= len(pairs) <= 50
    assert sum(p.stat().st_size for p in SAMPLES.iterdir()) < 1_000_000

    report = imgsearch(tmp_path, "index", SAMPLES, *TINY)
    assert (report["seen"], report["added"], report["failed"]) == (len(pairs), len(pairs), 0)
    result = imgsearch(tmp_path, "eval", SAMPLES / "pairs.csv")
    assert (result["n"], result["skipped"]) == (len(pairs), 0)
    assert result["model_id"] == report["model_id"]


def test_the_script_redraws_the_sample(tmp_path) -> None:
    """make_samples.py still draws these files: same names and captions, same image sizes."""
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(tmp_path)
    assert (tmp_path / "pairs.csv").read_text() == (SAMPLES / "pairs.csv").read_text()
    for drawn in sorted(tmp_path.glob("*.jpg")):
        with Image.open(drawn) as new, Image.open(SAMPLES / drawn.name) as kept:
            assert new.size == kept.size

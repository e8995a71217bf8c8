"""The command-line contract, through the real console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from imagetree import make_hostile_tree, make_jpeg

IMGSEARCH = shutil.which("imgsearch", path=os.path.dirname(sys.executable)) or "imgsearch"
TINY = ["--model", "imgsearch-tiny", "--pretrained", "none", "--device", "cpu"]


def run(*args, home=None, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSEARCH_")}
    env["HF_HUB_OFFLINE"] = "1"
    cmd = [IMGSEARCH] + (["--home", str(home)] if home else []) + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_is_fast():
    run("--help")  # warm the file cache
    started = time.perf_counter()
    proc = run("--help")
    assert time.perf_counter() - started < 1.0
    for command in ("index", "search", "status", "failures", "models", "use", "demo"):
        assert command in proc.stdout


def test_index_then_search_round_trip(tmp_path):
    for i in range(12):
        make_jpeg(tmp_path / "photos" / f"{i}.jpg", i)
    home = tmp_path / "home"
    report = json.loads(run("index", tmp_path / "photos", *TINY, "--json", home=home).stdout)
    for key in (
        "seen",
        "added",
        "updated",
        "unchanged",
        "removed",
        "failed",
        "elapsed_s",
        "images_per_s",
        "model_id",
    ):
        assert key in report
    assert report["added"] == 12 and report["model_id"].startswith("imgsearch-tiny/")

    out = json.loads(run("search", "a red square", "-k", "5", "--json", home=home).stdout)
    assert out["model_id"] == report["model_id"]
    assert len(out["results"]) == 5
    for hit in out["results"]:
        assert set(hit) >= {"id", "path", "score", "width", "height", "taken_at"}
        assert os.path.exists(hit["path"])
    scores = [h["score"] for h in out["results"]]
    assert scores == sorted(scores, reverse=True)

    like = json.loads(run("search", "--like", out["results"][0]["id"], "--json", home=home).stdout)
    assert out["results"][0]["id"] not in [h["id"] for h in like["results"]]
    text = run("search", "--add", "2:cat", "--sub", "dog", "-k", "3", home=home).stdout
    assert len(text.strip().splitlines()) == 3

    again = json.loads(run("index", "--json", home=home).stdout)
    assert again["embedded"] == 0 and again["unchanged"] == 12

    status = json.loads(run("status", "--json", home=home).stdout)
    assert status["images"] == 12 and status["serving_model"] == report["model_id"]
    assert status["index"]["count"] == 12


def test_hostile_folder_exits_zero_and_lists_failures(tmp_path):
    tree = make_hostile_tree(tmp_path / "photos")
    home = tmp_path / "home"
    report = json.loads(run("index", tree.root, *TINY, "--json", home=home).stdout)
    assert report["failed"] == len(tree.bad) and report["added"] == len(tree.good)
    failures = json.loads(run("failures", "--json", home=home).stdout)
    assert {f["path"] for f in failures} == {str(p) for p in tree.bad}
    assert all(f["reason"] for f in failures)


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "cat"], "nothing is indexed yet"),
        (["index", "/definitely/not/here"], "not a folder"),
        (["search", "cat", "--after", "yesterday"], "not a date"),
        (["index", ".", "--model", "no-such-arch"], "unknown model"),
        (["search", "--image", "/nope.jpg"], "no such file"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    proc = run(*args, home=tmp_path / "home", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_offline_default_model_fails_fast_naming_pretrained_file(tmp_path):
    make_jpeg(tmp_path / "photos" / "a.jpg", 1)
    started = time.perf_counter()
    proc = run("index", tmp_path / "photos", home=tmp_path / "home", check=False)
    # Importing torch is most of it; test_models times the resolution itself (< 5 s).
    assert time.perf_counter() - started < 30
    assert proc.returncode == 1 and "--pretrained FILE" in proc.stderr
    status = json.loads(run("status", "--json", home=tmp_path / "home").stdout)
    assert status["roots"] == []  # the failed run added nothing

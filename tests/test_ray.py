"""Index runs embedded on a Ray cluster (indexer.cluster.rayrun): a local three-node
cluster (a head and two one-CPU workers, as separate raylets), against the same folder
indexed in one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import ray
from PIL import Image, ImageDraw
from ray.cluster_utils import Cluster
from raytests import deadline, ray_processes
from tinylib import tiny_settings
from videofiles import make_video

from indexer.cluster.rayrun import RUNS, commit_run
from indexer.sync.run import sync
from indexer.sync.writer import CatalogWriter
from search.library import Library
from search.query.searcher import SearchRequest

PHOTOS = 300
GOOD = PHOTOS + 1  # and one video
LIMIT_S = 240  # a hard limit on each test: a stuck cluster fails it, never hangs the suite
STORE = 128 * 1024 * 1024


@pytest.fixture(autouse=True)
def hard_timeout():
    with deadline(LIMIT_S):
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """300 small JPEGs of coloured shapes, and 6 files that are not images at all or
    only half of one."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for sub in range(4):
        (root / f"sub{sub}").mkdir()
    for n in range(PHOTOS):
        image = Image.new("RGB", (96, 72), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y, r = (int(v) for v in rng.integers(8, 64, 3))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse((x, y, x + r, y + r // 2 + 4), fill=colour)
        image.save(root / f"sub{n % 4}" / f"{n:03d}.jpg")
    whole = (root / "sub0" / "000.jpg").read_bytes()
    (root / "broken-half.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "broken-empty.jpg").write_bytes(b"")
    (root / "broken-text.png").write_bytes(b"not a picture at all")
    (root / "broken-head.jpg").write_bytes(whole[:20])
    (root / "sub1" / "broken-zeros.webp").write_bytes(bytes(4096))
    (root / "sub2" / "broken-noise.gif").write_bytes(rng.bytes(2048))
    make_video(root / "sub3" / "holiday.mp4", [(1, 3.0), (2, 3.0)])  # frames, not one picture
    return root


@pytest.fixture(scope="module")
def alone(folder, tmp_path_factory) -> Library:
    """The folder indexed in one process: what the cluster must match."""
    lib = Library(tiny_settings(tmp_path_factory.mktemp("alone")))
    sync(lib, [str(folder)], progress=False)
    yield lib
    lib.close()


@pytest.fixture(scope="module")
def cluster():
    """A head and two workers, each its own raylet with one CPU, shared by the module's
    cluster tests (starting one costs ~7 s; the test that removes a worker comes last);
    torn down after, and no Ray process left behind."""
    with deadline(60):
        c = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "object_store_memory": STORE},
        )
        workers = [c.add_node(num_cpus=1, object_store_memory=STORE) for _ in range(2)]
        ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    try:
        yield c, workers
    finally:
        with deadline(60):
            ray.shutdown()
            c.shutdown()
        assert not ray_processes(), "Ray processes left behind"


def by_path(lib: Library) -> dict[str, np.ndarray]:
    model = lib.serving_model
    ids, vectors = lib.catalog.vectors(model)
    metas = lib.catalog.images(ids.tolist())
    return {metas[int(i)].path: v for i, v in zip(ids, vectors, strict=True)}


def frames_of(lib: Library, path: str):
    (image_id,) = [i for i, m in lib.catalog.images(range(1, 400)).items() if m.path == path]
    return lib.catalog.frames_of([image_id], lib.serving_model)[image_id]


def failures(lib: Library) -> dict[str, str]:
    return {f.path: f.reason for f in lib.catalog.failures()}


def scored10(lib: Library, text: str) -> list[tuple[str, float]]:
    hits = lib.searcher.search(SearchRequest(text=text, k=10, mode="semantic")).hits
    return [(lib.catalog.image(h.id).path, h.score) for h in hits]


def top10(lib: Library, text: str) -> list[str]:
    return [path for path, _ in scored10(lib, text)]


def same_but_float16_ties(got, want, tol=4e-3):
    """Shards re-rank from float16 copies of the vectors: scores agree to ~1e-3, so two
    photos whose exact scores are that close may trade places; nothing else may differ."""
    exact = dict(want)
    for (path, score), (wanted, wanted_score) in zip(got, want, strict=True):
        assert abs(score - wanted_score) <= tol, (path, score, wanted, wanted_score)
        if path != wanted and path in exact:
            assert abs(exact[path] - wanted_score) <= 2 * tol, (path, wanted)


IMGSEARCH = shutil.which("imgsearch", path=os.path.dirname(sys.executable)) or "imgsearch"
TINY = ["--model", "imgsearch-tiny", "--pretrained", "none", "--device", "cpu"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGSEARCH_", "RAY_"))}
    # engine torch: no ONNX export at the end of each index run (seconds; tests/tinylib.py)
    return {**env, "HF_HUB_OFFLINE": "1", "IMGSEARCH_ENGINE": "torch", **extra}


# Ray's own "auto" joins a Ray instance already running on the machine (the module's test
# cluster, here); "local" is a machine with none, where `--ray auto` starts its own.
NO_RAY_RUNNING = {"RAY_ADDRESS": "local"}


def imgsearch(home: Path, *args, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [IMGSEARCH, "--home", str(home), *map(str, args)],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=LIMIT_S - 20,
    )


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=LIMIT_S - 20) as reply:
        return json.loads(reply.read())


def test_index_and_serve_ray_auto_start_ray_and_stop_it(folder, tmp_path):
    """`--ray auto`: a Ray instance on this machine for the run (the server), gone when it
    ends."""
    small = tmp_path / "small"
    small.mkdir()
    for path in sorted((folder / "sub3").glob("*.jpg"))[:12]:
        shutil.copy(path, small / path.name)
    before = _all_ray_processes()
    out = imgsearch(
        tmp_path / "home",
        "index",
        small,
        *TINY,
        "--ray",
        "auto",
        "--json",
        "--quiet",
        **NO_RAY_RUNNING,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["added"] == report["embedded"] == 12 and report["failed"] == 0
    hits = imgsearch(tmp_path / "home", "search", "a red circle", "--json")
    assert hits.returncode == 0 and len(json.loads(hits.stdout)["results"]) == 10
    assert _all_ray_processes() == before
    # `serve --ray auto`: the web API answers from shard actors on a Ray instance of its
    # own (the top 10 of one machine's search), which goes when the server stops.
    cmd = [IMGSEARCH, "--home", str(tmp_path / "home"), "serve", "--port", "0", "--ray", "auto"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=clean_env(**NO_RAY_RUNNING))
    try:
        line = proc.stderr.readline()
        assert "serving http://127.0.0.1:" in line, line
        base = line.split("serving ", 1)[1].strip()
        found = get_json(base + "api/search?q=a+red+circle&k=10")["results"]
        same_but_float16_ties(
            [(h["id"], h["score"]) for h in found],
            [(h["id"], h["score"]) for h in json.loads(hits.stdout)["results"]],
        )
        index = get_json(base + "api/status")["index"]
        assert index["kind"] == "sharded-ivf" and index["count"] == 12
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        proc.stderr.close()
    assert _all_ray_processes() == before


def test_an_unreachable_cluster_is_one_clear_line_and_loses_nothing(folder, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    shutil.copy(folder / "sub0" / "000.jpg", small)
    home = tmp_path / "home"
    with Library(tiny_settings(home)) as lib:
        sync(lib, [str(small)], progress=False)
    shutil.copy(folder / "sub0" / "004.jpg", small)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    out = imgsearch(home, "index", small, *TINY, "--ray", f"127.0.0.1:{port}", "--quiet")
    assert out.returncode != 0 and time.monotonic() - started < 60
    (line,) = out.stderr.strip().splitlines()
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in line
    with Library(tiny_settings(home)) as lib:
        assert [Path(p).name for p, _ in scored10(lib, "a circle")] == ["000.jpg"]


def test_without_the_extra_the_error_names_it(monkeypatch):
    from search.errors import ConfigError
    from search.raycluster import load_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"imgsearch\[cluster\]"):
        load_ray()


def _all_ray_processes() -> int:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return sum("raylet" in line or "gcs_server" in line for line in out.splitlines())


def test_a_cluster_run_gives_what_one_process_gives(folder, alone, cluster, tmp_path):
    c, _ = cluster
    lib = Library(tiny_settings(tmp_path / "home", ray=c.address))
    try:
        report = sync(lib, [str(folder)], progress=False)
        assert report.added == GOOD and report.failed == 6
        mine, theirs = by_path(lib), by_path(alone)
        assert sorted(mine) == sorted(theirs) and len(mine) == GOOD
        ids, _ = lib.catalog.vectors(lib.serving_model)
        assert len(set(ids.tolist())) == len(ids) == GOOD  # no image twice
        cosines = [float(mine[p] @ theirs[p]) for p in mine]
        assert min(cosines) >= 0.9999
        assert failures(lib) == failures(alone)
        assert all(Path(p).name.startswith("broken") for p in failures(lib))
        (video,) = [p for p in mine if p.endswith(".mp4")]
        frames, theirs_frames = (frames_of(one, video) for one in (lib, alone))
        assert frames.times == theirs_frames.times and len(frames.times) >= 2
        assert np.min(np.sum(frames.vectors * theirs_frames.vectors, axis=1)) >= 0.9999
        for query in ("a red circle", "green and blue", "sub2", "a photo"):
            assert top10(lib, query) == top10(alone, query)
        # The run's folder keeps its work list and vector shards.
        (run,) = (lib.settings.home / RUNS).iterdir()
        assert (run / "work.parquet").is_file() and list(run.glob("shard-*.parquet"))
        # A second run finds nothing to do; committing the shards again adds nothing.
        again = sync(lib, [str(folder)], progress=False)
        assert again.added == again.embedded == again.failed == 0
        writer = CatalogWriter(lib.catalog)
        writer.root_ids = {r.path: r.id for r in lib.catalog.roots()}
        writer.start(lib.resolve(lib.active_spec()), len(next(iter(mine.values()))))
        assert commit_run(run, writer.write) == GOOD + 6
        assert by_path(lib).keys() == mine.keys()
        assert len(lib.catalog.vectors(lib.serving_model)[0]) == GOOD
        assert failures(lib) == failures(alone)
        # `serve --ray`: the same library searched from shards, one a CPU of the cluster
        # (recall tuned to 1.0 here: the top 10 is one machine's, up to float16 ties).
        served = Library(lib.settings.with_(target_recall=1.0))
        try:
            served.serve_from_shards(ray)
            for query in ("a red circle", "green and blue", "a photo"):
                same_but_float16_ties(scored10(served, query), scored10(alone, query))
            index = served.status().index
            assert index.kind == "sharded-ivf" and index.count == GOOD + 1  # two frames
            # (Measured with float16 vectors and a video's frames sharing its id: ties.)
            assert index.params["shards"] == 3 and index.recall_at_10 >= 0.99
        finally:
            served.close()
    finally:
        lib.close()


def test_a_run_that_loses_a_worker_completes_on_the_others(folder, alone, cluster, tmp_path):
    """A worker node is removed while its actor embeds: Ray restarts the actor on a node
    left and runs its block again; every row is committed once."""
    c, workers = cluster
    lib = Library(tiny_settings(tmp_path / "home", ray=c.address, batch_size=4))
    shards = lib.settings.home / RUNS
    done_when_killed = []

    def kill_when_started():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = list(shards.glob("*/shard-*.parquet"))
            if done:
                c.remove_node(workers[0])
                done_when_killed.append(len(done))
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    try:
        report = sync(lib, [str(folder)], progress=False)
        killer.join()
        # The node went while shards were still to come.
        assert done_when_killed and done_when_killed[0] < len(list(shards.glob("*/shard-*")))
        assert report.added == GOOD and report.failed == 6
        assert by_path(lib).keys() == by_path(alone).keys()
        ids, _ = lib.catalog.vectors(lib.serving_model)
        assert len(set(ids.tolist())) == len(ids) == GOOD
        assert failures(lib) == failures(alone)
    finally:
        lib.close()

"""Whole commands from a cold process, against rclip (issue 10).

Both tools get the same camera-like 12 MP photos, the same architecture (ViT-B-32-256)
and the same random weights: imgsearch a safetensors file (plus the ONNX export it makes
of it once, under its library's cache/), rclip the ONNX files it expects in RCLIP_DATADIR
(bench/rclip_models.py). Each figure is the wall time of whole commands as typed, process
start and exit included, in alternating rounds (rclip first in even rounds, imgsearch
first in odd ones); the CPU time (user + sys) of the same processes is shown beside it,
since the 2 cores may be shared.

- cold search: `imgsearch search QUERY` against `rclip -n QUERY` (no folder rescan) and
  `rclip QUERY` (as typed: it rescans the folder first);
- a first index of the photos plus one search: `imgsearch index` then `imgsearch search`
  (catalog and index removed before each round; the model's files under cache/ kept, as
  rclip keeps its ONNX files and removes only its database) against `rclip QUERY` on an
  empty database (it indexes the folder, then searches);
- where the seconds go, from one instrumented run of each imgsearch command;
- the web server: time until its warm-up reports the model ready, and the first search.

Run: .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/cli_bench.py
(it creates an rclip 3.3.0 virtual env from PyPI under --work on first use).
Writes its figures into bench/BENCHMARKS.md (section "cli").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photos import make_photos  # noqa: E402
from rclip_models import ARCH, export  # noqa: E402
from report import machine, write_section  # noqa: E402

IMGSEARCH = Path(sys.executable).with_name("imgsearch")
QUERY = "a dog in the snow"
# IMGSEARCH_ENGINE values timed against each other: the export on ONNX Runtime (fp32), on
# OpenVINO (bf16 where the CPU has it), and torch.
ENGINES = ("onnx", "openvino", "torch")
RCLIP_VERSION = "3.3.0"

# Instrumented runs: the command itself (search.cli.run, as the console script runs it),
# with a few of its functions wrapped to write when they start and end. Only modules the
# command imports anyway are imported before it starts.
PROBE = r"""
import functools, os, sys, threading, time
OUT = open(os.environ["PROBE_OUT"], "w")
def mark(what):
    OUT.write(f"{time.time():.6f}\t{threading.current_thread().name}\t{what}\n")
    OUT.flush()
mark("python started")
def wrap(owner, name, label):
    fn = getattr(owner, name)
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        mark(label + " start")
        try:
            return fn(*args, **kwargs)
        finally:
            mark(label + " end")
    setattr(owner, name, timed)
import search.library, search.models.onnx.choose, search.models.onnx.encoder
init = search.library.Library.__init__
def library_init(self, *args, **kwargs):
    mark("library open start")
    init(self, *args, **kwargs)
    mark("library open end")
    import search.index.store, search.query.searcher
    wrap(search.query.searcher.Searcher, "search", "search")
    wrap(search.index.store.IndexStore, "get", "index load")
    wrap(search.index.store.IndexStore, "rebuild", "index build")
search.library.Library.__init__ = library_init
wrap(search.library.Library, "load_encoder", "model wait")
wrap(search.models.onnx.choose.Preload, "_run", "model open (thread)")
wrap(search.models.onnx.encoder.OnnxEncoder, "encode_texts", "text encoding")
wrap(search.models.onnx.encoder.OnnxEncoder, "load", "model open")
wrap(search.models.onnx.encoder.OnnxEncoder, "encode_pixels", "image batch")
if sys.argv[1:2] == ["index"] or "index" in sys.argv:
    import indexer.sync.run
    wrap(indexer.sync.run, "sync", "sync")
    wrap(indexer.sync.run, "export_after_run", "export check")
    wrap(indexer.sync.run, "_embed", "embedding")
    wrap(indexer.sync.run, "start_prefetch", "prefetch start")
sys.argv = ["imgsearch", *sys.argv[1:]]
from search.cli import run
run()
"""


def child_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell gives: no IMGSEARCH_* settings, and Python's
    bytecode cache on (some sandboxes turn it off, which makes every import compile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSEARCH_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


def timed(cmd: list, *, env: dict, cwd: Path | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the process and its children) of one whole command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def rclip_env(work: Path) -> Path:
    venv = work / f"rclip-{RCLIP_VERSION}"
    if not (venv / "bin" / "rclip").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [venv / "bin" / "pip", "install", "-q", f"rclip=={RCLIP_VERSION}"], check=True
        )
    return venv / "bin" / "rclip"


class Bench:
    def __init__(self, work: Path, n: int, rclip: Path | None) -> None:
        photos = make_photos(work / "photos", n)
        self.folder = work / f"photos-{n}"
        if not self.folder.exists():
            self.folder.mkdir()
            for p in photos:
                os.link(p, self.folder / p.name)
        self.weights = export(work / "models")
        self.datadir = work / "models" / "rclip"
        self.rclip = rclip or rclip_env(work)
        self.home = work / "cli-home"
        self.model = ["--model", ARCH, "--pretrained", self.weights]
        self.env = child_env()
        from search.models.onnx import openvino

        self.bf16 = "yes" if openvino.installed() and openvino.native_bf16() else "no"
        self.rclip_env = child_env(RCLIP_DATADIR=str(self.datadir))

    def imgsearch(self, *args, env=None) -> list:
        return [IMGSEARCH, "--home", self.home, *args]

    def fresh_catalog(self) -> None:
        """An empty library that keeps its model files (cache/: weights digests, export)."""
        for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm", "index", "thumbs"):
            path = self.home / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    def first_use(self) -> dict:
        """A model's first use, once: indexed with torch, then exported (the next run)."""
        shutil.rmtree(self.home, ignore_errors=True)
        torch_env = {**self.env, "IMGSEARCH_ENGINE": "torch"}
        index = timed(self.imgsearch("index", self.folder, *self.model, "--quiet"), env=torch_env)
        exported = timed(self.imgsearch("index", "--quiet"), env=self.env)
        return {"index with torch": index, "export (the next index run)": exported}

    def index_and_search(self) -> dict:
        self.fresh_catalog()
        index = timed(self.imgsearch("index", self.folder, *self.model, "--quiet"), env=self.env)
        search = timed(self.imgsearch("search", QUERY, "-k", "10"), env=self.env)
        (self.datadir / "db.sqlite3").unlink(missing_ok=True)
        rclip = timed([self.rclip, "-t", "10", QUERY], env=self.rclip_env, cwd=self.folder)
        return {"imgsearch index": index, "imgsearch search": search, "rclip": rclip}

    def cold_search(self) -> dict:
        torch_env = {**self.env, "IMGSEARCH_ENGINE": "torch"}
        return {
            "imgsearch": timed(self.imgsearch("search", QUERY, "-k", "10"), env=self.env),
            "rclip -n": timed(
                [self.rclip, "-n", "-t", "10", QUERY], env=self.rclip_env, cwd=self.folder
            ),
            "rclip": timed([self.rclip, "-t", "10", QUERY], env=self.rclip_env, cwd=self.folder),
            "imgsearch, engine torch": timed(
                self.imgsearch("search", QUERY, "-k", "10"), env=torch_env
            ),
        }

    def engine_runs(self, work: Path, sizes: list[int], rounds: int) -> dict:
        """A first index (export cached) of each size with each engine, alternating:
        the per-image cost and the fixed cost of each, and where they cross."""
        out: dict[tuple[str, int], list[float]] = {}
        for n in sizes:
            folder = work / f"photos-{n}"
            if not folder.exists():
                folder.mkdir()
                for p in make_photos(work / "photos", n):
                    os.link(p, folder / p.name)
            for _ in range(rounds):
                for engine in ENGINES:
                    self.fresh_catalog()
                    env = {**self.env, "IMGSEARCH_ENGINE": engine}
                    cmd = self.imgsearch("index", folder, *self.model, "--quiet")
                    out.setdefault((engine, n), []).append(timed(cmd, env=env)[0])
        return {key: statistics.median(v) for key, v in out.items()}

    def probe(self, *args: str) -> list[tuple[float, str, str]]:
        """One instrumented run: (seconds since the process was started, thread, mark)."""
        out = self.home / "probe.txt"
        env = {**self.env, "PROBE_OUT": str(out)}
        started = time.time()
        subprocess.run(
            [sys.executable, "-c", PROBE, "--home", str(self.home), *args],
            env=env,
            cwd=self.home,  # as the console script: not the repository first on sys.path
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ended = time.time()
        marks = []
        for line in out.read_text().splitlines():
            t, thread, what = line.split("\t")
            marks.append((float(t) - started, thread, what))
        marks.append((ended - started, "MainThread", "process ended"))
        out.unlink()
        return marks

    def serve(self, engine: str, searches: int = 10) -> dict:
        """`imgsearch serve` started: when it listens, when its warm-up says the model is
        ready, then the first search and the next ones."""
        env = {**self.env, "IMGSEARCH_ENGINE": engine}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [str(c) for c in self.imgsearch("serve", "--port", "0")],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        try:
            base = None
            while base is None:
                line = proc.stderr.readline()
                if not line:
                    raise RuntimeError("serve ended before listening")
                found = re.search(r"serving (http://\S+/)", line)
                base = found.group(1) if found else None
            listening = time.perf_counter() - t0
            while True:
                warm = get_json(base + "api/status")["warm_up"]
                if warm["state"] not in ("loading", "off"):
                    break
                time.sleep(0.01)
            ready = time.perf_counter() - t0
            times = []
            for i in range(searches + 1):
                q = urllib.request.quote(f"{QUERY} {i}")
                s0 = time.perf_counter()
                get_json(f"{base}api/search?q={q}&k=10")
                times.append(time.perf_counter() - s0)
        finally:
            proc.terminate()
            proc.wait(30)
        return {
            "listening": listening,
            "ready": ready,
            "warm_up": warm,
            "first search": times[0],
            "next searches": statistics.median(times[1:]),
        }


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=120) as response:
        return json.loads(response.read())


def phases(marks: list[tuple[float, str, str]]) -> dict[str, float]:
    """Durations of the marked phases (first start to last end of each label)."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for t, _, what in marks:
        label, _, edge = what.rpartition(" ")
        if edge == "start":
            starts.setdefault(label, t)
        elif edge == "end":
            ends[label] = t
    return {label: ends[label] - starts[label] for label in starts if label in ends}


def first(marks, what: str) -> float | None:
    return next((t for t, _, w in marks if w == what), None)


def search_rows(marks) -> list[tuple[str, str]]:
    p = phases(marks)
    opened = first(marks, "library open start") or 0.0
    end = first(marks, "process ended") or 0.0
    search_end = max((t for t, _, w in marks if w == "search end"), default=end)
    rows = [
        ("interpreter, CLI and imports, until the library opens", f"{opened:.3f}"),
        ("catalog open (main thread; SQLAlchemy only when not current)", _s(p, "library open")),
        (
            "query model open: ONNX Runtime session + tokenizer (thread)",
            _s(p, "model open (thread)"),
        ),
        ("main thread waiting for the model", _s(p, "model wait")),
        ("text encoding (the query)", _s(p, "text encoding")),
        ("index file load (FAISS)", _s(p, "index load")),
        ("whole search call (the four rows above, partly overlapped)", _s(p, "search")),
        ("printing and process exit", f"{end - search_end:.3f}"),
        ("**whole command**", f"**{end:.3f}**"),
    ]
    return rows


def index_rows(marks) -> list[tuple[str, str]]:
    p = phases(marks)
    end = first(marks, "process ended") or 0.0
    sync_start = first(marks, "sync start") or 0.0
    batches = [t for t, _, w in marks if w == "image batch start"]
    batch_ends = [t for t, _, w in marks if w == "image batch end"]
    sync_end = max((t for t, _, w in marks if w == "sync end"), default=end)
    rows = [
        (
            "interpreter, CLI and imports, until the library opens",
            _t(first(marks, "library open start")),
        ),
        ("catalog created (a new one: tables from the models, no Alembic)", _s(p, "library open")),
        (
            "model open: the image tower's session (thread, while decoding starts)",
            _s(p, "model open"),
        ),
        (
            "first batch (8 images) embedded, since process start",
            _t(batch_ends[0] if batch_ends else None),
        ),
        (
            "embedding (first batch start to last batch end)",
            _t(batch_ends[-1] - batches[0] if batches else None),
        ),
        ("FAISS index build", _s(p, "index build")),
        ("export check (none needed)", _s(p, "export check")),
        ("sync, in all", f"{sync_end - sync_start:.3f}"),
        ("process exit", f"{end - sync_end:.3f}"),
        ("**whole command**", f"**{end:.3f}**"),
    ]
    return rows


def _s(p: dict, label: str) -> str:
    return f"{p[label]:.3f}" if label in p else "-"


def _t(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def median_of(rounds: list[dict], key: str) -> tuple[float, float]:
    return (
        statistics.median(r[key][0] for r in rounds),
        statistics.median(r[key][1] for r in rounds),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24, help="photos (default 24)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench"))
    ap.add_argument("--rclip", type=Path, help=f"an rclip {RCLIP_VERSION} executable to use")
    ap.add_argument(
        "--crossover", type=int, default=96, help="also index this many with each engine (0: no)"
    )
    args = ap.parse_args()

    bench = Bench(args.work, args.n, args.rclip)
    load_before = os.getloadavg()
    once = bench.first_use()
    print("first use", once, flush=True)
    index_rounds, search_rounds = [], []
    for r in range(args.rounds):
        index_rounds.append(bench.index_and_search())
        search_rounds.append(bench.cold_search())
        print(r, index_rounds[-1], search_rounds[-1], flush=True)
    search_marks = bench.probe("search", QUERY, "-k", "10")
    bench.fresh_catalog()
    index_marks = bench.probe("index", str(bench.folder), *map(str, bench.model), "--quiet")
    serve = {engine: bench.serve(engine) for engine in ("auto", "torch")}
    print(serve, flush=True)
    sizes = [args.n, args.crossover]
    engines = bench.engine_runs(args.work, sizes, rounds=2) if args.crossover else {}
    print(engines, flush=True)
    load_after = os.getloadavg()
    write_section(
        "cli",
        report(
            args,
            bench,
            once,
            index_rounds,
            search_rounds,
            search_marks,
            index_marks,
            serve,
            engines,
            load_before,
            load_after,
        ),
    )


def report(
    args,
    bench,
    once,
    index_rounds,
    search_rounds,
    search_marks,
    index_marks,
    serve,
    engines,
    load_before,
    load_after,
) -> str:
    def row(name: str, wall_cpu: tuple[float, float]) -> str:
        return f"| {name} | {wall_cpu[0]:.2f} | {wall_cpu[1]:.2f} |"

    ours = median_of(search_rounds, "imgsearch")
    rclip_n, rclip_typed = median_of(search_rounds, "rclip -n"), median_of(search_rounds, "rclip")
    torch_path = median_of(search_rounds, "imgsearch, engine torch")
    pairs = [
        (r["imgsearch index"][0] + r["imgsearch search"][0], r["rclip"][0]) for r in index_rounds
    ]
    ours_both = statistics.median(a for a, _ in pairs)
    rclip_both = statistics.median(b for _, b in pairs)
    cpu_both = statistics.median(
        r["imgsearch index"][1] + r["imgsearch search"][1] for r in index_rounds
    )
    rclip_cpu = statistics.median(r["rclip"][1] for r in index_rounds)
    search_ratio = statistics.median(r["rclip -n"][0] / r["imgsearch"][0] for r in search_rounds)
    index_ratio = statistics.median(b / a for a, b in pairs)
    runs = " / ".join(f"{r['imgsearch'][0]:.2f}" for r in search_rounds)
    runs_rclip = " / ".join(f"{r['rclip -n'][0]:.2f}" for r in search_rounds)
    runs_both = " / ".join(f"{a:.2f} vs {b:.2f}" for a, b in pairs)
    s_rows = "\n".join(f"| {a} | {b} |" for a, b in search_rows(search_marks))
    i_rows = "\n".join(f"| {a} | {b} |" for a, b in index_rows(index_marks))
    serve_rows = "\n".join(
        f"| {engine} | {s['listening']:.2f} | {s['ready']:.2f} ({s['warm_up']['engine']}) | "
        f"{s['first search'] * 1000:.0f} | {s['next searches'] * 1000:.0f} |"
        for engine, s in serve.items()
    )
    engine_text = ""
    if engines:
        (n1, n2) = sorted({n for _, n in engines})
        fixed, per = {}, {}
        for engine in ENGINES:
            per[engine] = (engines[(engine, n2)] - engines[(engine, n1)]) / (n2 - n1)
            fixed[engine] = engines[(engine, n1)] - n1 * per[engine]
        gap = per["onnx"] - per["torch"]
        cross = (fixed["torch"] - fixed["onnx"]) / gap if gap > 0 else float("inf")
        engine_rows = "\n".join(
            f"| {engine} | {engines[(engine, n1)]:.2f} | {engines[(engine, n2)]:.2f} | "
            f"{fixed[engine]:.2f} | {per[engine] * 1000:.0f} |"
            for engine in ENGINES
        )
        engine_text = f"""
Which engine for which run (`IMGSEARCH_ENGINE=onnx|openvino|torch imgsearch index`, empty
catalog, export cached, median of 2 alternating rounds): whole command (s), and the line
through both sizes. ONNX Runtime (fp32) and torch cross at about {cross:.0f} images, so without
OpenVINO `index` takes the export up to `search.models.onnx.choose.SMALL_JOB` images; with it
(bf16 on this CPU: {bench.bf16}) the export runs every size.

| engine | {n1} photos (s) | {n2} photos (s) | fixed (s) | per image (ms) |
|---|---|---|---|---|
{engine_rows}
"""
    loads = lambda la: " / ".join(f"{x:.2f}" for x in la)  # noqa: E731
    return f"""## Cold start against rclip (issue 10): `bench/cli_bench.py`

Machine: {machine()}. Load average (1/5/15 min) before: {loads(load_before)}; after: {loads(load_after)}.
{args.n} camera-like 4000×3000 JPEGs, {ARCH} with the same random weights in both tools (imgsearch:
a safetensors file and its ONNX export in the library's cache/; rclip {RCLIP_VERSION}: its ONNX files),
query "{QUERY}", {args.rounds} alternating rounds, whole commands as typed (process start and exit
included), medians; CPU = user + sys seconds of the same processes. Reproduce:
`.venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/cli_bench.py --n {args.n}`.

| command | wall (s) | CPU (s) |
|---|---|---|
{row("`imgsearch search QUERY` (cold process)", ours)}
{row("`rclip -n QUERY` (cold process, no folder rescan)", rclip_n)}
{row("`rclip QUERY` (as typed: rescans the folder first)", rclip_typed)}
{row("`imgsearch search QUERY` with `IMGSEARCH_ENGINE=torch` (the query path before)", torch_path)}
| `imgsearch index PHOTOS` + `imgsearch search QUERY` (empty catalog) | {ours_both:.2f} | {cpu_both:.2f} |
| `rclip QUERY` on an empty database (indexes, then searches) | {rclip_both:.2f} | {rclip_cpu:.2f} |

Cold search: **{search_ratio:.2f}×** rclip -n (pair by pair); runs: imgsearch {runs} s, rclip -n {runs_rclip} s.
Index + one search: **{index_ratio:.2f}×** rclip; runs (imgsearch vs rclip): {runs_both} s.
A model's first use, once per library (torch: import, build, embed; then the export):
index {once["index with torch"][0]:.1f} s, then the next `index` exports it in {once["export (the next index run)"][0]:.1f} s.

Where the seconds of one cold `imgsearch search` go (one instrumented run; seconds):

| phase | s |
|---|---|
{s_rows}

Where the seconds of one `imgsearch index` of the {args.n} photos go (empty catalog, export cached):

| phase | s |
|---|---|
{i_rows}

`imgsearch serve` on this library: seconds from start until it listens and until its warm-up
reports the model ready (`/api/status` → `warm_up`), then the first `/api/search` and the median
of the next 10 (ms, a new query each):

| engine | listening (s) | model ready (s) | first search (ms) | next searches (ms) |
|---|---|---|---|---|
{serve_rows}
{engine_text}"""


if __name__ == "__main__":
    main()

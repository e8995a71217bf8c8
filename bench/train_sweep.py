"""Training-defaults sweep (issue 9): the trainer's defaults against a plain loop.

For every generated data-set family (bench/families.py) × seed, from the same random init
of an imgsearch-tiny-like architecture (64 px, 4+4 layers, width 192):

(a) a deliberately plain reference loop, `reference_loop` below: open_clip's ClipLoss,
    AdamW(lr 1e-3, weight decay 0.1, default betas) on every parameter, 10% linear
    warm-up then cosine, shuffled batches, final weights, nothing else;
(b) the project's trainer with its DEFAULTS (only epochs, batch size, seed and the CPU
    device are set; `--lr` overrides its learning rate to try candidate defaults).

Both are scored by text→image recall@10 on a held-out test set of the same family (another
seed, images never trained on); --test-sets N scores the mean over N such sets (the first
the usual one), as one set of 300 carries a standard error of about ±0.03. A row passes
when the trainer reaches ≥ 0.95 × the loop's recall@10, ≥ the loop's − 0.05, in ≤ 1.2 ×
the loop's time.

Run: .venv/bin/python bench/train_sweep.py                 (the full sweep, hours on 2 cores)
     .venv/bin/python bench/train_sweep.py --families scenes --seeds 0 --scale 0.2 --epochs 2
Writes the table into bench/BENCHMARKS.md (section "train-sweep") when both arms ran and
--no-write is not given; --out-json appends one JSON line per family × seed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from families import FAMILIES  # noqa: E402
from report import machine, write_section  # noqa: E402

from indexer.training.pairs import Pair, PairSet, decode_pairs  # noqa: E402
from search.models.encoder import ClipEncoder, build_model, load_encoder  # noqa: E402
from search.models.spec import ModelSource, resolve  # noqa: E402

# The "imgsearch-tiny-like config: 64 px, 4+4 layers, width 192".
MODEL_CFG = {
    "model_cfg": {
        "embed_dim": 128,
        "vision_cfg": {
            "image_size": 64,
            "layers": 4,
            "width": 192,
            "head_width": 64,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 192,
            "heads": 3,
            "layers": 4,
        },
    }
}
TEST_PAIRS = 300
TEST_SETS = 1
TEST_SEED_OFFSET = 1000  # test set j of seed s: generated with seed 1000 × (j + 1) + s
# Pass criteria, per family × seed.
MIN_RATIO, MAX_DROP, MAX_TIME_RATIO = 0.95, 0.05, 1.2


def tiny_source(work: Path) -> ModelSource:
    """The tiny config, written to a JSON file and resolved as a user's would be; its
    random init is seeded by the config's digest, so every build is the same model."""
    path = work / "sweep-tiny.json"
    path.write_text(json.dumps(MODEL_CFG, indent=1))
    return resolve(str(path), "none", models_dir=work / "models", cache_dir=work / "cache")


def pair_set(samples, encoder: ClipEncoder) -> PairSet:
    pairs = [Pair(s.path, s.caption) for s in samples]
    return decode_pairs(pairs, encoder.prepare, encoder.image_size)


def reference_loop(
    source: ModelSource, pairs: PairSet, *, epochs: int, batch_size: int, seed: int
) -> tuple[ClipEncoder, list[dict]]:
    """The plain contrastive loop the trainer's defaults are held against: every training
    pair, no validation, no clipping or clamping, final weights."""
    import open_clip
    import torch
    from open_clip_train.scheduler import cosine_lr

    torch.manual_seed(seed)
    model, tokenizer = build_model(source, "cpu")
    encoder = ClipEncoder(model, tokenizer, source, "cpu")  # fp32, for to_tensor
    tokens = tokenizer(pairs.captions)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    steps_per_epoch = max(1, len(pairs) // batch_size)  # the last partial batch is dropped
    total = steps_per_epoch * epochs
    schedule = cosine_lr(optimizer, 1e-3, max(1, int(0.1 * total)), total)
    loss_fn = open_clip.ClipLoss()
    shuffle = torch.Generator().manual_seed(seed)
    history, step = [], 0
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(pairs), generator=shuffle)
        epoch_loss = 0.0
        for k in range(steps_per_epoch):
            schedule(step)
            rows = order[k * batch_size : (k + 1) * batch_size]
            images = encoder.to_tensor(pairs.image_pixels(pairs.image_index[rows.numpy()]))
            image_f, text_f, scale = model(images, tokens[rows])[:3]
            loss = loss_fn(image_f, text_f, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += float(loss.detach())
            step += 1
        history.append({"epoch": epoch + 1, "loss": round(epoch_loss / steps_per_epoch, 4)})
    model.eval()
    return encoder, history


def run_trainer(
    source: ModelSource,
    pairs: PairSet,
    work: Path,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    lr: float | None = None,
    overrides: dict | None = None,
) -> tuple[ClipEncoder, list[dict], dict]:
    """The project trainer with its defaults: only epochs, batch size, seed and the CPU
    are set (and the lr or other settings when --lr or --set ask, to try candidate
    defaults). The one place that knows the trainer's API."""
    settings = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "device": "cpu"}
    if lr is not None:
        settings["lr"] = lr
    settings.update(overrides or {})
    models, name = work / "models", "sweep-trained"
    from indexer.training import TrainConfig, train

    # Timed as the loop is, from the model's build to its final weights (here: saved, with
    # the curves); loading them back to score them is the bench's work, not the trainer's.
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(
        load_encoder(source, "cpu", "fp32"), pairs, models, name, TrainConfig(**settings)
    )
    timed = {
        "seconds": round(time.perf_counter() - t0, 2),
        "cpu_seconds": round(time.process_time() - c0, 2),
    }
    trained = resolve(name, None, models_dir=models, cache_dir=work / "cache")
    extra = {
        **timed,
        "best_epoch": result.best_epoch,
        "train_pairs": result.train_pairs,
        "peak_lr": result.peak_lr,
        "recoveries": result.recoveries,
    }
    return load_encoder(trained, "cpu", "fp32"), result.history, extra


def evaluate(encoder: ClipEncoder, pairs: PairSet) -> dict:
    """The project's own recall figures (text→image and image→text @1/5/10)."""
    from indexer.training import evaluate as project_evaluate

    return project_evaluate(encoder, pairs)


def t2i(encoder: ClipEncoder, test_sets: list[PairSet]) -> dict:
    """Text→image recall@1/5/10, the mean over the test sets (each set's recall@10 kept)."""
    each = [evaluate(encoder, pairs)["text_to_image"] for pairs in test_sets]
    mean = {
        k: round(sum(m[k] for m in each) / len(each), 4)
        for k in ("recall@1", "recall@5", "recall@10")
    }
    return {**mean, "recall@10_sets": [m["recall@10"] for m in each]}


def one_run(family: str, seed: int, args) -> dict:
    fam = FAMILIES[family]
    n = max(2 * args.batch_size, round(fam.n * args.scale))
    row: dict = {
        "family": family,
        "seed": seed,
        "n": n,
        "size": fam.size,
        "test_pairs": args.test_pairs,
        "test_sets": args.test_sets,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "trainer_lr": args.lr,
        "trainer_set": args.overrides,
    }
    with tempfile.TemporaryDirectory(prefix=f"sweep-{family}-{seed}-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        train_samples = fam.generate(work / "train", n, seed=seed, size=fam.size)
        test_samples = [
            fam.generate(
                work / f"test-{j}",
                args.test_pairs,
                seed=TEST_SEED_OFFSET * (j + 1) + seed,
                size=fam.size,
            )
            for j in range(args.test_sets)
        ]
        row["generate_s"] = round(time.perf_counter() - t0, 2)
        source = tiny_source(work)
        init = load_encoder(source, "cpu", "fp32")
        t0 = time.perf_counter()
        train_set = pair_set(train_samples, init)
        test_sets = [pair_set(samples, init) for samples in test_samples]
        row["decode_s"] = round(time.perf_counter() - t0, 2)
        row["init"] = t2i(init, test_sets)
        del init
        wanted = args.loop_from and args.only != "loop"
        reused = _earlier_loop(row, args.loop_from) if wanted else None
        if reused is not None:
            row["loop"] = {**reused, "reused_from": str(args.loop_from)}
            print(f"  loop (from {args.loop_from}): {_brief(row['loop'])}", flush=True)
        elif args.only in ("loop", "both"):
            t0, c0 = time.perf_counter(), time.process_time()
            enc, history = reference_loop(
                source, train_set, epochs=args.epochs, batch_size=args.batch_size, seed=seed
            )
            row["loop"] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "cpu_seconds": round(time.process_time() - c0, 2),
                "history": history,
            }
            row["loop"].update(t2i(enc, test_sets))
            del enc
            print(f"  loop: {_brief(row['loop'])}", flush=True)
        if args.only in ("trainer", "both"):
            enc, history, extra = run_trainer(
                source,
                train_set,
                work,
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=seed,
                lr=args.lr,
                overrides=args.overrides,
            )
            row["trainer"] = extra  # with its time
            row["trainer"]["history"] = history
            row["trainer"].update(t2i(enc, test_sets))
            del enc
            print(f"  trainer: {_brief(row['trainer'])}", flush=True)
    return row


def _setting(ap: argparse.ArgumentParser, item: str) -> tuple[str, object]:
    """--set KEY=VALUE: a TrainConfig field and its value as a Python literal."""
    from dataclasses import fields

    from indexer.training import TrainConfig

    key, sep, text = item.partition("=")
    if not sep or key not in {f.name for f in fields(TrainConfig)}:
        ap.error(f"--set {item!r}: expected KEY=VALUE with KEY a TrainConfig field")
    try:
        return key, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        ap.error(f"--set {item!r}: {text!r} is not a number, boolean or None")


MATCH = ("family", "seed", "n", "size", "test_pairs", "test_sets", "epochs", "batch_size")


def _earlier_loop(row: dict, path: Path) -> dict | None:
    """The loop arm of an earlier run on the same data and settings (--loop-from): the loop
    does not change while the trainer's defaults are tuned, so it need not run again."""
    if not path.is_file():
        return None
    found = None
    for line in path.read_text(encoding="utf-8").splitlines():
        earlier = json.loads(line) if line.strip() else {}
        if "loop" in earlier and all(earlier.get(k) == row[k] for k in MATCH):
            found = earlier["loop"]  # the latest one wins
    return found


def _brief(arm: dict) -> str:
    losses = " ".join(f"{h['loss']:.2f}" for h in arm["history"])
    return (
        f"R@1/5/10 {arm['recall@1']:.3f}/{arm['recall@5']:.3f}/{arm['recall@10']:.3f} "
        f"in {arm['seconds']:.0f} s; losses {losses}"
    )


def verdict(row: dict) -> dict:
    """Ratios and PASS/FAIL of one family × seed (both arms needed)."""
    loop, trainer = row["loop"], row["trainer"]
    lr10, tr10 = loop["recall@10"], trainer["recall@10"]
    ratio = tr10 / lr10 if lr10 > 0 else float("inf")
    time_ratio = trainer["seconds"] / loop["seconds"]
    checks = {
        "recall_ratio": tr10 >= MIN_RATIO * lr10,
        "recall_drop": tr10 >= lr10 - MAX_DROP,
        "time": time_ratio <= MAX_TIME_RATIO,
    }
    return {
        "ratio": ratio,
        "time_ratio": time_ratio,
        "checks": checks,
        "pass": all(checks.values()),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| family | seed | n | size | loop R@10 | trainer R@10 | ratio | loop s | trainer s "
        "| time ratio | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = verdict(r)
        failed = [k for k, ok in v["checks"].items() if not ok]
        result = "PASS" if v["pass"] else "FAIL (" + ", ".join(failed) + ")"
        lines.append(
            f"| {r['family']} | {r['seed']} | {r['n']} | {r['size']} "
            f"| {r['loop']['recall@10']:.3f} | {r['trainer']['recall@10']:.3f} | {v['ratio']:.3f} "
            f"| {r['loop']['seconds']:.0f} | {r['trainer']['seconds']:.0f} "
            f"| {v['time_ratio']:.2f} | {result} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    verdicts = [verdict(r) for r in rows]
    passed = sum(v["pass"] for v in verdicts)
    worst_ratio = min(verdicts, key=lambda v: v["ratio"])["ratio"]
    worst_drop = max(r["loop"]["recall@10"] - r["trainer"]["recall@10"] for r in rows)
    worst_time = max(v["time_ratio"] for v in verdicts)
    cpu = [
        r["trainer"]["cpu_seconds"] / r["loop"]["cpu_seconds"]
        for r in rows
        if r["loop"].get("cpu_seconds") and r["trainer"].get("cpu_seconds")
    ]
    state = "PASS" if passed == len(rows) else "FAIL"
    return (
        f"**{state}: {passed}/{len(rows)} family × seed rows pass.** Worst recall@10 ratio "
        f"{worst_ratio:.3f} (limit {MIN_RATIO}), worst drop {worst_drop:+.3f} (limit "
        f"{MAX_DROP}), worst time ratio {worst_time:.2f} (limit {MAX_TIME_RATIO})"
        + (
            f"; by process CPU time, which other users of a shared machine disturb less, "
            f"{max(cpu):.2f}."
            if cpu
            else "."
        )
    )


def report_body(rows: list[dict], args, load: tuple[float, float]) -> str:
    fams = ", ".join(
        f"`{name}` ({FAMILIES[name].about})" for name in dict.fromkeys(r["family"] for r in rows)
    )
    lr = "its default" if args.lr is None else f"{args.lr:g} (--lr)"
    if args.overrides:
        lr += "; set: " + ", ".join(f"{k} {v}" for k, v in args.overrides.items())
    reused = sum("reused_from" in r["loop"] for r in rows)
    note = (
        f" The loop's figures of {reused} rows were measured in an earlier run (--loop-from), "
        "so their time ratios compare runs at different times."
        if reused
        else ""
    )
    cmd = " ".join(["bench/train_sweep.py", *sys.argv[1:]])
    return f"""## Training defaults sweep (issue 9): `bench/train_sweep.py`

Machine: {machine()}. Load average {load[0]:.2f} before, {load[1]:.2f} after.
Families: {fams}. From the same random init of a tiny architecture (64 px, 4+4 layers,
width 192), {args.epochs} epochs, batch {args.batch_size}, on the CPU: the plain loop
(`reference_loop`: ClipLoss, AdamW lr 1e-3 wd 0.1, 10% warm-up then cosine, all pairs, final
weights) against the trainer with its defaults (learning rate: {lr}; it holds out a tenth of
the images, at most 100, for its own validation and keeps its best epoch). Text→image recall@10, the mean over
{args.test_sets} held-out sets of {args.test_pairs} pairs of the same family (other seeds; the first
is the single set earlier runs used). A row passes at trainer ≥ {MIN_RATIO} ×
loop, ≥ loop − {MAX_DROP}, time ≤ {MAX_TIME_RATIO} × loop's (both timed from model build to
final weights: the trainer's saved, with its curves).{note} Reproduce: `.venv/bin/python {cmd}`.

{table(rows)}

{summary(rows)}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply each family's n")
    ap.add_argument("--test-pairs", type=int, default=TEST_PAIRS)
    ap.add_argument("--test-sets", type=int, default=TEST_SETS, help="recall is their mean")
    ap.add_argument("--only", choices=("loop", "trainer", "both"), default="both")
    ap.add_argument("--lr", type=float, default=None, help="the trainer's lr (default: its own)")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig setting for the trainer arm (repeatable), e.g. weight_decay=0.2",
    )
    ap.add_argument("--out-json", type=Path, help="append one JSON line per family × seed")
    ap.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    ap.add_argument(
        "--loop-from",
        type=Path,
        help="take the loop's figures from this --out-json file where it has the same family, "
        "seed, n, size, test pairs, epochs and batch (its time was measured then, not now)",
    )
    args = ap.parse_args()
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        ap.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.overrides = dict(_setting(ap, item) for item in args.overrides)

    load_before = os.getloadavg()[0]
    rows = []
    for family in families:
        for seed in seeds:
            print(f"{family} seed {seed}:", flush=True)
            row = one_run(family, seed, args)
            row["machine"] = machine()
            row["load_average"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            if args.out_json:
                args.out_json.parent.mkdir(parents=True, exist_ok=True)
                with args.out_json.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            if "loop" in row and "trainer" in row:
                v = verdict(row)
                print(
                    f"  ratio {v['ratio']:.3f}, time ratio {v['time_ratio']:.2f}: "
                    f"{'PASS' if v['pass'] else 'FAIL'}",
                    flush=True,
                )
    if not rows or not all("loop" in r and "trainer" in r for r in rows):
        return  # a table needs both arms of every row
    body = report_body(rows, args, (load_before, os.getloadavg()[0]))
    print(body)
    if not args.no_write:
        write_section("train-sweep", body)


if __name__ == "__main__":
    main()

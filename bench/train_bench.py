"""Trainer benchmark on the synthetic generator (issue 3).

1. From scratch: the tiny architecture trained on the "base" vocabulary with the
   trainer's defaults; text→image recall@1/5/10 on held-out captions before and after.
2. Domain shift: that model fine-tuned on pairs of the "shift" vocabulary (new shapes,
   new wording), again with the defaults (a model trained here continues at a tenth of
   its rate); recall on the new domain should rise while the old domain's recall@10
   drops by no more than 0.1.

Run: .venv/bin/python bench/train_bench.py   (about 5 minutes on 2 CPU cores)
Writes its figures into bench/BENCHMARKS.md (section "train").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, write_section  # noqa: E402

from indexer.synthetic import generate  # noqa: E402
from indexer.training import TrainConfig, evaluate, train  # noqa: E402
from indexer.training.pairs import Pair, decode_pairs  # noqa: E402
from search.models.encoder import load_encoder  # noqa: E402
from search.models.spec import resolve  # noqa: E402


def pair_set(samples, encoder):
    pairs = [Pair(s.path, s.caption) for s in samples]
    return decode_pairs(pairs, encoder.prepare, encoder.image_size)


def fmt(m: dict) -> str:
    t = m["text_to_image"]
    return f"{t['recall@1']:.3f} / {t['recall@5']:.3f} / {t['recall@10']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--held-out", type=int, default=500)
    ap.add_argument("--shift-n", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--shift-epochs", type=int, default=5)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imgsearch-bench-"))
    models = work / "models"
    base_train = generate(work / "base-train", args.n, seed=0)
    base_held = generate(work / "base-held", args.held_out, seed=1)
    shift_train = generate(work / "shift-train", args.shift_n, seed=2, vocab="shift")
    shift_held = generate(work / "shift-held", args.held_out, seed=3, vocab="shift")

    src = resolve("imgsearch-tiny", "none", models_dir=models, cache_dir=work / "cache")
    enc = load_encoder(src, "cpu", "fp32")
    before_base = evaluate(enc, pair_set(base_held, enc))
    before_shift = evaluate(enc, pair_set(shift_held, enc))
    t0 = time.perf_counter()
    scratch = train(enc, pair_set(base_train, enc), models, "base", TrainConfig(epochs=args.epochs))
    scratch_s = time.perf_counter() - t0

    base_src = resolve("base", None, models_dir=models, cache_dir=work / "cache")
    base_enc = load_encoder(base_src, "cpu", "fp32")
    after_base = evaluate(base_enc, pair_set(base_held, base_enc))
    after_base_shift = evaluate(base_enc, pair_set(shift_held, base_enc))

    t0 = time.perf_counter()
    shift_pairs = pair_set(shift_train, base_enc)
    shifted_run = train(
        base_enc, shift_pairs, models, "shifted", TrainConfig(epochs=args.shift_epochs)
    )
    shift_s = time.perf_counter() - t0
    shifted = load_encoder(
        resolve("shifted", None, models_dir=models, cache_dir=work / "cache"), "cpu"
    )
    shifted_base = evaluate(shifted, pair_set(base_held, shifted))
    shifted_shift = evaluate(shifted, pair_set(shift_held, shifted))

    drop = after_base["text_to_image"]["recall@10"] - shifted_base["text_to_image"]["recall@10"]
    gain = (
        shifted_shift["text_to_image"]["recall@10"] - after_base_shift["text_to_image"]["recall@10"]
    )
    body = f"""## Trainer (issue 3): `bench/train_bench.py`

Machine: {machine()}.
Tiny architecture (`imgsearch-tiny`, 64 px, random init), synthetic captioned shapes from
`indexer/synthetic.py`. Text→image recall@1 / @5 / @10 on {args.held_out} held-out
captions (images never seen in training). Reproduce: `.venv/bin/python bench/train_bench.py`.

| model | base vocabulary | shift vocabulary |
|---|---|---|
| untrained (random init) | {fmt(before_base)} | {fmt(before_shift)} |
| trained on base ({args.n} pairs, {args.epochs} epochs, defaults: lr {scratch.peak_lr:g}, {scratch_s:.0f} s) | {fmt(after_base)} | {fmt(after_base_shift)} |
| then fine-tuned on shift ({args.shift_n} pairs, {args.shift_epochs} epochs, defaults: lr {shifted_run.peak_lr:g}, {shift_s:.0f} s) | {fmt(shifted_base)} | {fmt(shifted_shift)} |

Old-domain recall@10 change after the shift: {-drop:+.3f} (limit: -0.1); new-domain
recall@10 change: {gain:+.3f} (must be positive). Recoveries: {len(scratch.recoveries)} from
scratch, {len(shifted_run.recoveries)} fine-tuning.
"""
    print(body)
    write_section("train", body)


if __name__ == "__main__":
    main()

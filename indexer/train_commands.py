"""`imgsearch train` and `imgsearch eval`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from indexer.commands import add_model_options, model_flags
from search.cli import print_json, settings_from
from search.errors import ConfigError


def register_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune the model on your (image, caption) pairs")
    p.add_argument("pairs", nargs="?", help="CSV/TSV/JSONL with image and caption columns")
    add_model_options(p)
    p.add_argument(
        "--from-catalog", action="store_true", help="train on captions stored in the library"
    )
    p.add_argument("--out", help="name of the new model (saved under the library's models/)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128, help="pairs per micro-batch")
    p.add_argument("--accum-steps", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument(
        "--lr",
        type=float,
        help="peak learning rate (default: 5e-4 from random init, 1e-5 from pretrained "
        "weights, a tenth of its own from a model trained here)",
    )
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--lock-image", action="store_true", help="freeze the image tower")
    p.add_argument("--lock-text", action="store_true", help="freeze the text tower")
    p.add_argument("--val-fraction", type=float, default=0.1, help="images held out for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="decoding threads")
    p.add_argument("--use", action="store_true", help="then make it active and re-index with it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_train)


def load_pair_set(lib, pairs_arg: str | None, from_catalog: bool, encoder):
    from indexer.pairs import catalog_pairs, decode_pairs, read_pairs_file

    if from_catalog == bool(pairs_arg):
        raise ConfigError("give a PAIRS file or --from-catalog (one of them)")
    if from_catalog:
        pairs, skipped = catalog_pairs(lib.catalog), []
        if not pairs:
            raise ConfigError("the library has no stored captions yet")
    else:
        pairs, skipped = read_pairs_file(Path(pairs_arg))
    return decode_pairs(
        pairs,
        encoder.prepare,
        encoder.image_size,
        max_megapixels=lib.settings.max_megapixels,
        workers=lib.settings.decode_workers(),
        skipped=skipped,
        spill_dir=lib.settings.cache_dir / "pairs",
    )


def run_train(args: argparse.Namespace) -> int:
    from indexer.sync import sync
    from indexer.training import TrainConfig, train
    from search.encoder import load_encoder
    from search.library import Library
    from search.progress import Progress

    for flag in ("epochs", "batch_size", "accum_steps"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1")
    if not 0 <= args.val_fraction < 1:
        raise ConfigError("--val-fraction must be in [0, 1)")
    settings = settings_from(args, **model_flags(args), workers=args.workers)
    with Library(settings) as lib:
        source = lib.resolve(lib.active_spec())
        # Built once, in fp32 whatever the inference precision: it decodes the pairs at
        # its input size, then is the model that trains.
        encoder = load_encoder(source, settings.device, "fp32")
        data = load_pair_set(lib, args.pairs, args.from_catalog, encoder)
        name = args.out or f"{source.model_id.split('/')[0]}-finetuned"
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            accum_steps=args.accum_steps,
            lr=args.lr,
            weight_decay=args.weight_decay,
            lock_image=args.lock_image,
            lock_text=args.lock_text,
            val_fraction=args.val_fraction,
            seed=args.seed,
            device=settings.device,
        )
        progress = Progress(show=not args.json, status_file=settings.progress_file)
        result = train(encoder, data, settings.models_dir, name, config, progress=progress)
        report = {
            "name": result.name,
            "path": str(result.path),
            "model_id": result.model_id,
            "base_model_id": source.model_id,
            "train_pairs": result.train_pairs,
            "val_pairs": result.val_pairs,
            "skipped": [{"row": row, "reason": why} for row, why in data.skipped],
            "best_epoch": result.best_epoch,
            "resumed_from_epoch": result.resumed_from_epoch,
            "before": result.before,
            "after": result.after,
            "history": result.history,
            "peak_lr": result.peak_lr,
            "recoveries": result.recoveries,
        }
    if args.use:
        # A fresh view whose --model is the new one: train's --model named the start point.
        with Library(settings.with_(model=result.name, pretrained=None)) as lib:
            lib.set_active({"model": result.name, "pretrained": None})
            if lib.catalog.roots():
                report["index"] = sync(lib, [], progress=not args.json).as_dict()
    if args.json:
        print_json(report)
        return 0
    _print_train_report(report)
    return 0


def _print_train_report(r: dict) -> None:
    print(f"saved {r['name']} ({r['model_id']}) to {r['path']}")
    print(
        f"pairs: {r['train_pairs']} train, {r['val_pairs']} validation, {len(r['skipped'])} skipped"
    )
    for row in r["skipped"][:10]:
        print(f"  skipped {row['row']}: {row['reason']}", file=sys.stderr)
    for label in ("before", "after"):
        t2i = r[label].get("text_to_image")
        if t2i:
            print(
                f"{label:>6}: text→image recall@1 {t2i['recall@1']:.3f}  @5 {t2i['recall@5']:.3f}"
                f"  @10 {t2i['recall@10']:.3f}  (best epoch {r['best_epoch']})"
            )
    for rec in r["recoveries"]:
        print(
            f"recovered at epoch {rec['epoch']} ({rec['reason']}): rolled back to the last "
            f"good epoch, went on at lr {rec['lr']:.1e}"
        )
    if "index" in r:
        print(
            f"re-indexed {r['index']['embedded']} images with {r['model_id']}; search uses it now"
        )


def register_eval(sub) -> None:
    p = sub.add_parser("eval", help="text→image retrieval recall of a model on pairs")
    p.add_argument("pairs", help="CSV/TSV/JSONL with image and caption columns")
    add_model_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from indexer.retrieval import ranks_text_to_image, recall_report
    from indexer.training import embed_pairs
    from search.library import Library
    from search.query import SERVING_MODEL

    settings = settings_from(args, **model_flags(args))
    with Library(settings) as lib:
        serving = lib.catalog.get_setting(SERVING_MODEL)
        if settings.model is None and serving is not None:
            source = lib.resolve(lib.catalog.model(serving).spec)
        else:
            source = lib.resolve(lib.active_spec())
        encoder = lib.load_source(source)
        data = load_pair_set(lib, args.pairs, False, encoder)
        txt, img = embed_pairs(encoder, data)
    report = {
        **recall_report(ranks_text_to_image(txt, img, data.image_index)),
        "model_id": source.model_id,
    }
    report["skipped"] = len(data.skipped)
    if args.json:
        print_json(report)
    else:
        print(
            f"{report['model_id']}: n={report['n']}  recall@1 {report['recall@1']:.3f}  "
            f"@5 {report['recall@5']:.3f}  @10 {report['recall@10']:.3f}  "
            f"median rank {report['median_rank']:.0f}"
        )
    return 0

"""`imgsearch train` and `imgsearch eval`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from indexer.commands import model_options
from search.cli import GlobalOptions, json_option, print_json, settings_from
from search.errors import ConfigError


def load_pair_set(lib, pairs_arg: str | Path | None, encoder, from_catalog: bool = False):
    from indexer.training.pairs import catalog_pairs, decode_pairs, read_pairs_file

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


@click.command(
    "train",
    help="Fine-tune the model on your (image, caption) pairs.\n\n"
    "PAIRS: a CSV/TSV/JSONL file with image and caption columns (or give --from-catalog).",
)
@click.argument("pairs", required=False, type=click.Path())
@model_options
@click.option("--from-catalog", is_flag=True, help="train on captions stored in the library")
@click.option(
    "--out", metavar="NAME", help="name of the new model (saved under the library's models/)"
)
@click.option("--epochs", type=int, default=10, metavar="N")
@click.option("--batch-size", type=int, default=128, metavar="N", help="pairs per micro-batch")
@click.option(
    "--accum-steps", type=int, default=1, metavar="N", help="micro-batches per optimizer step"
)
@click.option(
    "--lr",
    type=float,
    metavar="LR",
    help="peak learning rate (default: 5e-4 from random init, 1e-5 from pretrained "
    "weights, a tenth of its own from a model trained here)",
)
@click.option("--weight-decay", type=float, default=0.1, metavar="WD")
@click.option("--lock-image", is_flag=True, help="freeze the image tower")
@click.option("--lock-text", is_flag=True, help="freeze the text tower")
@click.option(
    "--val-fraction",
    type=float,
    metavar="F",
    help="images held out for validation (default: a tenth, at most 100)",
)
@click.option("--seed", type=int, default=0, metavar="N")
@click.option("--workers", type=int, metavar="N", help="decoding threads")
@click.option("--use", is_flag=True, help="then make it active and re-index with it")
@json_option
@click.pass_obj
def train_command(
    options: GlobalOptions,
    pairs: str | None,
    from_catalog: bool,
    out: str | None,
    epochs: int,
    batch_size: int,
    accum_steps: int,
    lr: float | None,
    weight_decay: float,
    lock_image: bool,
    lock_text: bool,
    val_fraction: float | None,
    seed: int,
    workers: int | None,
    use: bool,
    as_json: bool,
    model_flags: dict[str, str | None],
) -> int:
    from indexer.sync.run import sync
    from indexer.training import TrainConfig, train
    from search.library import Library
    from search.models.encoder import load_encoder
    from search.models.spec import ModelSpec
    from search.progress import Progress

    for flag, value in (
        ("epochs", epochs),
        ("batch-size", batch_size),
        ("accum-steps", accum_steps),
    ):
        if value < 1:
            raise ConfigError(f"--{flag} must be at least 1")
    if val_fraction is not None and not 0 <= val_fraction < 1:
        raise ConfigError("--val-fraction must be in [0, 1)")
    settings = settings_from(options, **model_flags, workers=workers)
    with Library(settings) as lib:
        source = lib.resolve(lib.active_spec())
        # Built once, in fp32 whatever the inference precision: it decodes the pairs at
        # its input size, then is the model that trains.
        encoder = load_encoder(source, settings.device, "fp32")
        data = load_pair_set(lib, pairs, encoder, from_catalog)
        name = out or f"{source.model_id.split('/')[0]}-finetuned"
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            accum_steps=accum_steps,
            lr=lr,
            weight_decay=weight_decay,
            lock_image=lock_image,
            lock_text=lock_text,
            val_fraction=val_fraction,
            seed=seed,
            device=settings.device,
        )
        progress = Progress(show=not as_json, status_file=settings.progress_file)
        result = train(
            encoder,
            data,
            settings.models_dir,
            name,
            config,
            progress=progress,
            checkpoint_every=settings.checkpoint_seconds,
        )
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
    if use:
        # A fresh view whose --model is the new one: train's --model named the start point.
        with Library(settings.with_(model=result.name, pretrained=None)) as lib:
            lib.set_active(ModelSpec(result.name))
            if lib.catalog.roots():
                report["index"] = sync(lib, [], progress=not as_json).as_dict()
    if as_json:
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


@click.command(
    "eval",
    help="Text→image retrieval recall of a model on pairs.\n\n"
    "PAIRS: a CSV/TSV/JSONL file with image and caption columns.",
)
@click.argument("pairs", type=click.Path())
@model_options
@json_option
@click.pass_obj
def eval_command(
    options: GlobalOptions, pairs: str, as_json: bool, model_flags: dict[str, str | None]
) -> int:
    from indexer.training import embed_pairs
    from indexer.training.retrieval import ranks_text_to_image, recall_report
    from search.library import Library

    settings = settings_from(options, **model_flags)
    with Library(settings) as lib:
        serving = lib.serving_model
        if settings.model is None and serving is not None:
            source = lib.resolve(lib.catalog.model(serving).spec)
        else:
            source = lib.resolve(lib.active_spec())
        encoder = lib.load_source(source)
        data = load_pair_set(lib, pairs, encoder)
        txt, img = embed_pairs(encoder, data)
    report = {
        **recall_report(ranks_text_to_image(txt, img, data.image_index)),
        "model_id": source.model_id,
        "skipped": len(data.skipped),
    }
    if as_json:
        print_json(report)
    else:
        print(
            f"{report['model_id']}: n={report['n']}  recall@1 {report['recall@1']:.3f}  "
            f"@5 {report['recall@5']:.3f}  @10 {report['recall@10']:.3f}  "
            f"median rank {report['median_rank']:.0f}"
        )
    return 0

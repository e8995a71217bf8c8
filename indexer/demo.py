"""`imgsearch demo`: the whole product, offline, on generated images.

It draws a captioned synthetic set under data/demo, trains the bundled tiny architecture
on it from scratch (no weights can be downloaded), measures text→image recall on
held-out captions before and after, indexes the held-out images with the trained model
and prints searches. `--serve` then opens the web UI on that library.
"""

from __future__ import annotations

from pathlib import Path

import click

from search.cli import GlobalOptions, settings_from
from search.cli import main as cli_main

DEMO_QUERIES = [
    "a large red circle",
    "a small blue star at the top",
    "a yellow triangle on a striped purple background",
]
DEMO_MODEL = "demo-tiny"


@click.command("demo", help="Offline demo: generate, train, index, search.")
@click.option(
    "--out",
    default="data/demo",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="where to write it",
)
@click.option("-n", type=int, default=5000, metavar="N", help="training images")
@click.option("--held-out", type=int, default=500, metavar="N", help="held-out images")
@click.option("--epochs", type=int, default=15, metavar="N")
@click.option("--seed", type=int, default=0, metavar="N")
@click.option("--serve", is_flag=True, help="then open the web UI on the demo")
@click.pass_obj
def demo_command(
    options: GlobalOptions, out: Path, n: int, held_out: int, epochs: int, seed: int, serve: bool
) -> int:
    from indexer.sync.run import sync
    from indexer.synthetic import generate, write_pairs
    from indexer.train_commands import load_pair_set
    from indexer.training import TrainConfig, evaluate, train
    from search.library import Library
    from search.models.encoder import load_encoder
    from search.models.spec import ModelSpec
    from search.progress import Progress
    from search.query.searcher import SearchRequest

    out = out.absolute()
    train_samples = generate(out / "train", n, seed=seed, progress=True)
    held_samples = generate(out / "held-out", held_out, seed=seed + 1, progress=True)
    write_pairs(train_samples, out / "train.csv")
    held_pairs = out / "held-out.csv"
    write_pairs(held_samples, held_pairs)
    print(f"generated {len(train_samples)} + {len(held_samples)} captioned images in {out}")

    home = Path(options.home).absolute() if options.home else out / "library"
    # A library of its own, in SQLite: never a shared catalog named by IMGSEARCH_CATALOG.
    base = settings_from(options, model="imgsearch-tiny", pretrained="none").with_(
        home=home, catalog=""
    )
    with Library(base) as lib:
        source = lib.resolve(lib.active_spec())
        # The one model of the run: it is evaluated untrained, then trained in place.
        model = load_encoder(source, base.device, "fp32")
        before = evaluate(model, load_pair_set(lib, held_pairs, model))["text_to_image"]
        config = TrainConfig(epochs=epochs, seed=seed, device=base.device)
        result = train(
            model,
            load_pair_set(lib, out / "train.csv", model),
            base.models_dir,
            DEMO_MODEL,
            config,
            progress=Progress(status_file=base.progress_file),
        )
    print(f"trained {DEMO_MODEL} from scratch: best epoch {result.best_epoch}/{epochs}")

    with Library(base.with_(model=DEMO_MODEL, pretrained=None)) as lib:
        lib.set_active(ModelSpec(DEMO_MODEL))
        report = sync(lib, [str(out / "held-out")])
        # The trained model itself (torch): the search below may run on its ONNX export,
        # whose vectors match it (cosine >= 0.999), but evaluation reads the model.
        trained = load_encoder(lib.resolve(lib.active_spec()), base.device, "fp32")
        after = evaluate(trained, load_pair_set(lib, held_pairs, trained))["text_to_image"]
        print(
            f"held-out text→image recall@1/5/10 ({after['n']} captions): "
            f"untrained {before['recall@1']:.2f}/{before['recall@5']:.2f}/"
            f"{before['recall@10']:.2f} → trained {after['recall@1']:.2f}/"
            f"{after['recall@5']:.2f}/{after['recall@10']:.2f}"
        )
        print(f"indexed {report.embedded} held-out images into {home} with {report.model_id}")
        captions = {str(s.path): s.caption for s in held_samples}
        for query in DEMO_QUERIES:
            print(f"\nsearch {query!r}")
            for h in lib.searcher.search(SearchRequest(text=query, k=3)).hits:
                print(f"  {h.score:.3f}  {Path(h.path).name}  “{captions.get(h.path, '?')}”")
        first = lib.searcher.search(SearchRequest(text=DEMO_QUERIES[0], k=1)).hits[0]
        print(f"\nimages like {Path(first.path).name} “{captions.get(first.path)}”:")
        for h in lib.searcher.similar(first.id, k=3).hits:
            print(f"  {h.score:.3f}  {Path(h.path).name}  “{captions.get(h.path, '?')}”")
    print(f"\ntry: imgsearch --home {home} search 'a small green ring on the left'")
    if serve:
        return cli_main(["--home", str(home), "serve"])
    return 0

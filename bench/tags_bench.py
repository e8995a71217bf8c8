"""Tags benchmark (issue 14, Must-show 1).

Generated libraries whose content is known (the generators record what they drew), a
model trained by the project's trainer (tiny architecture, from random init), and tags scored
the way search/tags does it, from the library's stored vectors:

- zero-shot tags, one per concept (objects and shapes: each colour, each shape, each
  colour + shape; scenes: times of day, terrains, weathers, what stands in them): the tag's
  prompt embedded in the production phrasings (Tagger.prompt_vector), cut per tag by the
  production calibration (search.tags.calibration: the captions typed for part of the
  library as weak labels), against the library cutoff used without captions, one global
  threshold from the same captions, and the best global threshold chosen with the truth.
  Per-tag precision, recall and F1 against the truth.
- few-shot probes (search.tags.probe, production threshold): 5, 10 and 20 positive
  examples drawn from the truth (three draws each), F1 on the rest of the library; against
  the zero-shot tag of the same concept named by a made-up word the text tower never saw
  ("blicket"), which is what a tag by description gives for such a concept.

Run: .venv/bin/python bench/tags_bench.py     (about 20 minutes on 2 cores, most of it training)
     --cache DIR keeps each family's vectors, so a second run only re-scores.
     --seed N draws other training pairs, libraries and batch orders (0: the table's).
Writes its figures into bench/BENCHMARKS.md (section "tags") unless --no-write.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from families import generate_scenes  # noqa: E402
from relevance_bench import (  # noqa: E402
    SHORT_SHARE,
    curve,
    f1,
    scene_queries,
    scenes_training,
    shapes_training,
    short_caption,
)
from report import machine, write_section  # noqa: E402

from indexer.synthetic import COLOURS, KINDS, generate  # noqa: E402
from search.query.relevance import cutoff  # noqa: E402
from search.tags import calibration  # noqa: E402
from search.tags.probe import fit_with_threshold  # noqa: E402
from search.tags.tagger import Tagger, captions_of  # noqa: E402

EPOCHS = {"objects": 20, "scenes": 20, "shapes": 10}
SHOTS = (5, 10, 20)
DRAWS = 3
MADE_UP = ("blicket", "dax", "wug", "toma", "zorp")
MIN_POSITIVES = 40  # concepts rarer than this in the library are left out of few-shot


def shape_tags() -> dict[str, callable]:
    """Shapes: a colour (any object of it), a shape, both on one object."""

    def objects(a: dict) -> list[tuple[str, str]]:
        return [(a[f"colour{t}"], a[f"kind{t}"]) for t in ("", "2") if f"kind{t}" in a]

    tags: dict[str, callable] = {}
    for colour in COLOURS:
        tags[colour] = lambda a, c=colour: any(o[0] == c for o in objects(a))
    for kind in KINDS["base"]:
        tags[kind] = lambda a, k=kind: any(o[1] == k for o in objects(a))
    for colour, kind in itertools.product(COLOURS, KINDS["base"]):
        tags[f"{colour} {kind}"] = lambda a, c=colour, k=kind: (c, k) in objects(a)
    return tags


def single_objects(out: Path, n: int, seed: int) -> list:
    """The demo generator's images with one large object only (it draws two in about a
    third, half of them small): what a colour or a shape tag names is then the one thing
    drawn, at a size the tiny model's 64 px input resolves (measured: with small ones too,
    a probe on 100 examples told object colours and shapes apart barely above chance,
    while background colours at 0.96 F1)."""
    samples = generate(out, int(n * 3.2) + 100, seed=seed)
    return [s for s in samples if "kind2" not in s.attrs and s.attrs["size"] == "large"][:n]


def objects_training(out: Path, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [
        replace(s, caption=short_caption(rng, s.attrs)) if rng.random() < SHORT_SHARE else s
        for s in single_objects(out, n, seed=2 * seed)
    ]


# The single-concept tags describe is checked on, by kind.
SINGLE_CONCEPTS = {
    "objects": {"colour": list(COLOURS), "shape": list(KINDS["base"])},
    "scenes": {
        "time of day": ["day", "sunset", "night"],
        "terrain": ["mountains", "hills", "sea", "desert"],
    },
    "shapes": {"colour": list(COLOURS), "shape": list(KINDS["base"])},
}

# Family → (training pairs, library, tags), each of the first two taking (folder, count,
# --seed): training drawn with generator seed 2 × seed, the library with 2 × seed + 1.
FAMILIES = {
    "objects": (
        objects_training,
        lambda out, n, seed: single_objects(out, n, seed=2 * seed + 1),
        shape_tags,
    ),
    "scenes": (
        scenes_training,
        lambda out, n, seed: generate_scenes(out, n, seed=2 * seed + 1, size=64),
        scene_queries,
    ),
    # The demo generator itself: one or two objects, half of the second ones small.
    "shapes": (
        shapes_training,
        lambda out, n, seed: generate(out, n, seed=2 * seed + 1),
        shape_tags,
    ),
}


def family_data(family: str, args, work: Path) -> dict:
    """Train, embed the library, embed every tag's prompt (and the made-up words)."""
    from PIL import Image
    from train_sweep import pair_set, run_trainer, tiny_source

    from search.models.encoder import load_encoder

    training, make_library, make_tags = FAMILIES[family]
    work = work / family
    samples = training(work / "train", args.train, args.seed)
    library = make_library(work / "library", args.library, args.seed)
    source = tiny_source(work)
    pairs = pair_set(samples, load_encoder(source, "cpu", "fp32"))
    t0 = time.perf_counter()
    encoder, _, extra = run_trainer(
        source, pairs, work / "trained", epochs=EPOCHS[family], batch_size=128, seed=args.seed
    )
    train_s = time.perf_counter() - t0
    vectors = np.concatenate(
        [
            encoder.encode_images([Image.open(s.path).convert("RGB") for s in library[i : i + 256]])
            for i in range(0, len(library), 256)
        ]
    )
    tags = make_tags()
    names = list(tags)
    # The production prompt embedding: every phrasing of the name, averaged.
    tagger = Tagger(None, lambda _: encoder)
    prompt = np.stack([tagger.prompt_vector("bench", (n,)) for n in [*names, *MADE_UP]])
    # Each library image's own caption, typed into the library: what `describe` ranks.
    captions = [s.caption for s in library]
    distinct = list(dict.fromkeys(captions))
    # The training set's captions: what the saved model's captions.txt holds.
    trained_on = list(dict.fromkeys(s.caption for s in samples))
    return {
        "vectors": vectors.astype(np.float32),
        "captions": np.array(distinct),
        "caption_of": np.array([distinct.index(c) for c in captions]),
        "caption_vectors": embed_texts(encoder, distinct),
        "train_captions": np.array(trained_on),
        "train_caption_vectors": embed_texts(encoder, trained_on),
        "truth": np.array([[tags[n](s.attrs) for s in library] for n in names]),
        "names": np.array(names),
        "prompts": prompt[: len(names)],
        "made_up": prompt[len(names) :],
        "train_s": train_s,
        "best_epoch": extra["best_epoch"],
    }


def embed_texts(encoder, texts: list[str]) -> np.ndarray:
    return np.concatenate(
        [encoder.encode_texts(texts[i : i + 256]) for i in range(0, len(texts), 256)]
    ).astype(np.float32)


def precision_recall(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = float(np.sum(pred & truth))
    return tp / max(1.0, float(pred.sum())), tp / max(1.0, float(truth.sum()))


CAPTIONED = (0.0, 0.05, 0.10, 0.20)  # shares of the library with a typed caption
PRIORS = (1.0, 2.0, 5.0)  # calibration.PRIOR values compared (at 10% captioned)


def caption_thresholds(data: dict, share: float, draw: int, prior: float) -> np.ndarray:
    """Production calibration (search.tags.calibration, as Tagger runs it) with `share` of
    the library captioned (its own generated caption, as if typed), drawn at random, and
    the model's training captions known: every other image is described by its nearest
    known captions."""
    scores = data["prompts"] @ data["vectors"].T
    captions = [str(c) for c in data["captions"]]
    typed = np.random.default_rng(draw).random(scores.shape[1]) < share
    texts = [captions[data["caption_of"][i]] if t else None for i, t in enumerate(typed)]
    typed_texts = sorted({data["caption_of"][i] for i in np.flatnonzero(typed)})
    known = [captions[i] for i in typed_texts] + [str(c) for c in data["train_captions"]]
    known_vectors = np.concatenate(
        [data["caption_vectors"][typed_texts], data["train_caption_vectors"]]
    )
    described = captions_of(data["vectors"], texts, known, known_vectors)
    weak = calibration.weak_labels([str(n) for n in data["names"]], described, scores)
    kept, calibration.PRIOR = calibration.PRIOR, prior
    try:
        return calibration.thresholds(scores, weak)
    finally:
        calibration.PRIOR = kept


def zero_shot(data: dict) -> dict:
    scores = data["prompts"] @ data["vectors"].T  # tags × images
    truth = data["truth"]

    def mean_f1(cuts) -> float:
        return float(np.mean([f1(s >= c, t) for s, c, t in zip(scores, cuts, truth)]))

    def over_draws(share: float, prior: float) -> float:
        return float(
            np.mean([mean_f1(caption_thresholds(data, share, d, prior)) for d in range(DRAWS)])
        )

    production = caption_thresholds(data, 0.10, 0, calibration.PRIOR)
    production_0 = caption_thresholds(data, 0.0, 0, calibration.PRIOR)  # no draw to vary
    library_cuts = np.array([cutoff(s) for s in scores])
    per_tag = []
    for name, s, t, c in zip(data["names"], scores, truth, production):
        p, r = precision_recall(s >= c, t)
        per_tag.append(
            {
                "tag": str(name),
                "positives": int(t.sum()),
                "precision": p,
                "recall": r,
                "f1": f1(s >= c, t),
                "oracle": float(curve(s, t).max()),
            }
        )
    grid = np.quantile(scores, np.linspace(0, 1, 401))
    best_global, best_at = max(
        (float(np.mean([f1(s >= g, t) for s, t in zip(scores, truth)])), float(g)) for g in grid
    )
    return {
        "per_tag": per_tag,
        "captions": {
            share: over_draws(share, calibration.PRIOR) if share else mean_f1(production_0)
            for share in CAPTIONED
        },
        "priors": {prior: over_draws(0.10, prior) for prior in PRIORS},
        # One global number from the same captions: every tag pulled all the way to it.
        "caption_global": over_draws(0.10, 1e12),
        "library_cutoff": mean_f1(library_cuts),
        "oracle": float(np.mean([r["oracle"] for r in per_tag])),
        "best_global": best_global,
        "best_global_at": best_at,
    }


def few_shot(data: dict, penalty: float | None = None) -> dict:
    """Per shot count: mean F1 on the rest of the library of the probe (production
    threshold; and cut at log-odds 0, and by the library cutoff zero-shot tags use), and
    of the zero-shot tag of the same concept under a made-up name."""
    import search.tags.probe as probe

    if penalty is not None:
        probe.PENALTY = penalty
    vectors, truth = data["vectors"], data["truth"]
    made_up = data["made_up"] @ vectors.T
    made_up_cuts = [s >= cutoff(s) for s in made_up]
    out: dict[int, dict] = {}
    concepts = [i for i, t in enumerate(truth) if t.sum() >= MIN_POSITIVES]
    for shots in SHOTS:
        probe_f1, zero_f1, logit0_f1, library_f1 = [], [], [], []
        for i, draw in itertools.product(concepts, range(DRAWS)):
            rng = np.random.default_rng(1000 * i + draw)
            yes = rng.choice(np.flatnonzero(truth[i]), shots, replace=False)
            weights, bias, threshold = fit_with_threshold(vectors, vectors[yes], vectors[:0])
            logits = vectors @ weights + bias
            rest = np.ones(len(vectors), bool)
            rest[yes] = False
            for into, cut in (
                (probe_f1, threshold),
                (logit0_f1, 0.0),
                (library_f1, cutoff(logits)),
            ):
                into.append(f1((logits >= cut)[rest], truth[i][rest]))
            zero_f1.append(float(np.mean([f1(m[rest], truth[i][rest]) for m in made_up_cuts])))
        out[shots] = {
            "concepts": len(concepts),
            "probe": float(np.mean(probe_f1)),
            "probe_logit0": float(np.mean(logit0_f1)),
            "probe_library_cutoff": float(np.mean(library_f1)),
            "made_up_zero_shot": float(np.mean(zero_f1)),
        }
    return out


TOP = 5  # describe's top tags and captions counted


def describe_eval(data: dict, family: str) -> dict:
    """Production `describe` on each library image (held out from training; thresholds
    calibrated with 10% of the library captioned): its true
    single-concept tags among the top TOP tags, and its own caption among the top TOP
    captions of every caption typed into the library."""
    from types import SimpleNamespace

    from search.catalog.records import TagScore
    from search.tags.describe import describe

    vectors, truth, names = data["vectors"], data["truth"], [str(n) for n in data["names"]]
    thresholds = caption_thresholds(data, 0.10, 0, calibration.PRIOR)
    scorers = [
        (n, TagScore(p, 0.0, c, 1, 0)) for n, p, c in zip(names, data["prompts"], thresholds)
    ]
    catalog = SimpleNamespace(tags=SimpleNamespace(scorers=lambda _model: scorers))
    groups = SINGLE_CONCEPTS[family]
    captions = [str(c) for c in data["captions"]]
    # As the library knows them: typed (every image's, here) and the model's training set.
    known = list(dict.fromkeys([*captions, *(str(c) for c in data["train_captions"])]))
    at = {c: i for i, c in enumerate([*captions, *(str(c) for c in data["train_captions"])])}
    known_vectors = np.concatenate([data["caption_vectors"], data["train_caption_vectors"]])
    known_vectors = known_vectors[[at[c] for c in known]]
    found = {g: 0 for g in groups} | {"all": 0, "caption": 0, "caption_known": 0}
    for i, v in enumerate(vectors):
        own = captions[data["caption_of"][i]]
        d = describe(catalog, "bench", v, known, known_vectors, TOP)
        found["caption_known"] += own in {c["text"] for c in d.captions}
        d = describe(catalog, "bench", v, captions, data["caption_vectors"], TOP)
        top = {t["name"] for t in d.tags[:TOP]}
        hits = []
        for group, members in groups.items():
            true = [n for n in members if truth[names.index(n), i]]
            ok = all(n in top for n in true)
            found[group] += ok
            hits.append(ok)
        found["all"] += all(hits)
        found["caption"] += own in {c["text"] for c in d.captions}
    return {k: v / len(vectors) for k, v in found.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--library", type=int, default=2000)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--penalties", type=float, nargs="*", help="try probe penalties (print only)")
    # Another seed draws other training pairs, library and batch orders (0: the table's).
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgsearch-tags-"))
    rows = {}
    for family in args.families:
        seeded = f"-seed{args.seed}" if args.seed else ""
        cached = args.cache / f"tags-{family}{seeded}.npz" if args.cache else None
        if cached and cached.exists():
            data = dict(np.load(cached))
            data.update(json.loads(str(data.pop("meta"))))
        else:
            data = family_data(family, args, work)
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                meta = json.dumps({"train_s": data["train_s"], "best_epoch": data["best_epoch"]})
                arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
                np.savez(cached, meta=meta, **arrays)
        if args.penalties:
            for p in args.penalties:
                print(family, "penalty", p, json.dumps(few_shot(data, p)), flush=True)
            continue
        rows[family] = {
            "zero": zero_shot(data),
            "few": few_shot(data),
            "describe": describe_eval(data, family),
            "train_s": data["train_s"],
        }
        z = rows[family]["zero"]
        print(
            family,
            json.dumps({k: v for k, v in z.items() if k != "per_tag"}),
            json.dumps(rows[family]["few"]),
            json.dumps(rows[family]["describe"]),
            flush=True,
        )
    if rows and not args.no_write:
        write_section("tags", report(rows, args))


def report(rows: dict, args) -> str:
    lines = [
        "## Tags (issue 14): `bench/tags_bench.py`",
        "",
        f"Machine: {machine()}. Each family: {args.train} training "
        "pairs, the project trainer from the tiny architecture's random init (batch 128, CPU; "
        + ", ".join(f"{f} {e} epochs" for f, e in EPOCHS.items())
        + f"), a {args.library}-image library of the same generator (another seed), the truth "
        "from what the generator drew. Objects: one large shape on a plain, striped or noisy "
        "background; scenes: landscapes by time of day, terrain, weather, houses, trees, moon; "
        "shapes: the demo generator (one or two objects, half of the second ones small). "
        "Training took "
        + ", ".join(f"{f} {r['train_s']:.0f} s" for f, r in rows.items())
        + ". Reproduce: `.venv/bin/python bench/tags_bench.py`.",
        "",
        "Zero-shot tags, mean F1 over the family's tags against the truth. Production "
        "(search.tags.calibration): each image is described by its typed caption (a "
        f"random 0, 5, 10 or 20% of the library typed, {DRAWS} draws), else by the "
        f"{calibration.NEAREST} known captions (typed ones and the model's training "
        "captions) the model puts nearest it; a tag's weak label for an image is the share "
        "of those captions holding its words (close together: whole, apart: half); its "
        "threshold the best expected F1 cut against them, pulled toward one global cut by "
        f"{calibration.PRIOR:g} "
        "pseudo-examples. Against: the library cutoff (two Gaussians over the tag's own "
        "scores: what a library that knows no caption gets), one global threshold from the "
        "same labels (10% typed), the best global threshold chosen with the truth, and the "
        "per-tag threshold chosen with the truth (an upper bound).",
        "",
        "| family | tags | "
        + " | ".join(f"typed {share:.0%}" for share in CAPTIONED)
        + " | no captions | one global, typed 10% | best global (truth) | oracle |",
        "|---|---|" + "---|" * (len(CAPTIONED) + 4),
    ]
    for family, r in rows.items():
        z = r["zero"]
        lines.append(
            f"| {family} | {len(z['per_tag'])} | "
            + " | ".join(f"{z['captions'][share]:.3f}" for share in CAPTIONED)
            + f" | {z['library_cutoff']:.3f} | {z['caption_global']:.3f} | "
            f"{z['best_global']:.3f} (at {z['best_global_at']:.3f}) | {z['oracle']:.3f} |"
        )
    lines += [
        "",
        "The pull toward the global threshold (calibration.PRIOR, pseudo-examples), 10% captioned:",
        "",
        "| family | " + " | ".join(f"PRIOR {p:g}" for p in PRIORS) + " |",
        "|---|" + "---|" * len(PRIORS),
    ]
    for family, r in rows.items():
        lines.append(
            f"| {family} | " + " | ".join(f"{r['zero']['priors'][p]:.3f}" for p in PRIORS) + " |"
        )
    lines += [
        "",
        f"Few-shot probes: mean F1 on the rest of the library over concepts with at least "
        f"{MIN_POSITIVES} images, {DRAWS} draws of the examples each; against the zero-shot tag "
        f"of the same concept under a made-up name ({', '.join(MADE_UP)}: mean over them).",
        "",
        "| family | concepts | "
        + " | ".join(f"probe, {n} examples" for n in SHOTS)
        + " | zero-shot, made-up name |",
        "|---|---|" + "---|" * len(SHOTS) + "---|",
    ]
    for family, r in rows.items():
        few = r["few"]
        lines.append(
            f"| {family} | {few[SHOTS[0]]['concepts']} | "
            + " | ".join(f"{few[n]['probe']:.3f}" for n in SHOTS)
            + f" | {few[SHOTS[0]]['made_up_zero_shot']:.3f} |"
        )
    lines += [
        "",
        "The probe's threshold (production: the 20th percentile of the examples' out-of-fold "
        "scores) against log-odds 0 and the library cutoff zero-shot tags use, same probes:",
        "",
        "| family | threshold | " + " | ".join(f"{n} examples" for n in SHOTS) + " |",
        "|---|---|" + "---|" * len(SHOTS),
    ]
    for family, r in rows.items():
        for key, label in (
            ("probe", "out of fold (production)"),
            ("probe_logit0", "log-odds 0"),
            ("probe_library_cutoff", "library cutoff"),
        ):
            lines.append(
                f"| {family} | {label} | "
                + " | ".join(f"{r['few'][n][key]:.3f}" for n in SHOTS)
                + " |"
            )
    lines += [
        "",
        f"`describe` on each library image (none of them seen in training; thresholds from "
        f"10% typed): its true single-concept tags among the top {TOP} tags (out of all the "
        f"family's tags), and its own caption among the top {TOP} of every caption typed into "
        "the library (each image's own, here), and of those with the model's training "
        "captions (what `describe` searches).",
        "",
        "| family | concept kinds: share of images with the true tag in the top "
        f"{TOP} | all of them | own caption in top {TOP}: typed | typed and training |",
        "|---|---|---|---|---|",
    ]
    for family, r in rows.items():
        d = r["describe"]
        kinds = ", ".join(f"{g} {d[g]:.3f}" for g in SINGLE_CONCEPTS[family])
        lines.append(
            f"| {family} | {kinds} | {d['all']:.3f} | {d['caption']:.3f} | "
            f"{d['caption_known']:.3f} |"
        )
    for family, r in rows.items():
        lines += [
            "",
            f"Per tag, {family} (production, 10% typed, first draw: precision / recall / "
            "F1; oracle F1):",
            "",
            "| tag | images | precision | recall | F1 | oracle F1 |",
            "|---|---|---|---|---|---|",
        ]
        for t in r["zero"]["per_tag"]:
            lines.append(
                f"| {t['tag']} | {t['positives']} | {t['precision']:.3f} | {t['recall']:.3f} | "
                f"{t['f1']:.3f} | {t['oracle']:.3f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

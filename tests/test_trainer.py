"""The trainer: it learns, saves a loadable model, skips broken rows and resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.synthetic import generate, write_pairs
from indexer.training import TrainConfig, evaluate, split, train
from indexer.training.pairs import Pair, decode_pairs, read_pairs_file
from search.errors import ConfigError
from search.models.encoder import build_model, load_encoder
from search.models.spec import resolve
from search.query.relevance import Checked

FAST = dict(batch_size=16, lr=2e-3, val_fraction=0.2, device="cpu", seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    samples = generate(root / "train", 480, seed=3)
    held = generate(root / "held", 120, seed=99)
    write_pairs(samples, root / "train.csv")
    write_pairs(held, root / "held.csv")
    return root


def source_for(home: Path, model="imgsearch-tiny", pretrained="none"):
    return resolve(model, pretrained, models_dir=home / "models", cache_dir=home / "cache")


def fresh(home: Path):
    """The untrained tiny model in fp32, as `imgsearch train` builds it."""
    return load_encoder(source_for(home), "cpu", "fp32")


def pair_set(pairs_file: Path, encoder):
    pairs, skipped = read_pairs_file(pairs_file)
    return decode_pairs(pairs, encoder.prepare, encoder.image_size, skipped=skipped)


def test_the_pairs_saved_for_the_relevance_check_are_capped(data, tiny_encoder, monkeypatch):
    """A large training set saves a seeded sample of its images (each with every caption
    it has), not all of them: the pass that embeds them and a search's loading stay small."""
    import indexer.training.main as trainer

    pairs = pair_set(data / "train.csv", tiny_encoder)
    monkeypatch.setattr(trainer, "CHECKED_IMAGES", 5)
    vectors, captions, image_of = trainer._checked(tiny_encoder, pairs, seed=0)
    assert vectors.shape[0] == 5 and sorted(set(image_of.tolist())) == [0, 1, 2, 3, 4]
    kept = set(np.random.default_rng(0).permutation(pairs.n_images)[:5].tolist())
    assert captions == [c for c, i in zip(pairs.captions, pairs.image_index) if i in kept]
    assert pairs.n_images > 5 and len(captions) < len(pairs)
    assert trainer._checked(tiny_encoder, pairs, seed=0)[1] == captions  # the same sample
    monkeypatch.setattr(trainer, "CHECKED_IMAGES", 10_000)
    assert len(trainer._checked(tiny_encoder, pairs, seed=0)[1]) == len(pairs)


def test_loss_falls_and_model_round_trips(data, tmp_path, tiny_encoder):
    src = source_for(tmp_path)
    result = train(
        fresh(tmp_path),
        pair_set(data / "train.csv", tiny_encoder),
        tmp_path / "models",
        "mine",
        TrainConfig(epochs=8, **FAST),
    )
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.2, losses

    saved = source_for(tmp_path, model="mine", pretrained=None)
    assert saved.model_id == result.model_id != src.model_id
    sidecar = json.loads((result.path / "imgsearch.json").read_text())
    assert sidecar["base"]["model_id"] == src.model_id
    assert sidecar["metrics"]["best_epoch"] == result.best_epoch
    assert (result.path / "open_clip_model.safetensors").is_file()
    with Image.open(result.path / "curves.png") as curves:
        curves.load()
        assert curves.width > 400 and curves.height > 100
    # The captions trained on, each once, for `describe` to offer.
    trained_on = read_pairs_file(data / "train.csv")[0]
    lines = (result.path / "captions.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(set(lines)) and set(lines) == {p.caption for p in trained_on}

    # Every pair's image embedded by the saved weights, with its caption: what the
    # relevance cutoff checks a query on.
    trained = load_encoder(saved, "cpu")
    trained_pairs = pair_set(data / "train.csv", trained)
    checked = Checked.load(result.path / "pairs.npz")
    assert checked is not None and len(checked.image_of) == len(trained_pairs)
    assert checked.image_of.tolist() == trained_pairs.image_index.tolist()
    images = trained.encode_pixels(trained_pairs.image_pixels(np.arange(trained_pairs.n_images)))
    assert np.abs(checked.vectors - images).max() < 2e-3  # stored in float16
    first = trained_pairs.captions[0]
    assert checked.holding(first)[trained_pairs.image_index[0]] == 1.0

    # Held-out pairs never seen in training: the trained model ranks them better.
    held = pair_set(data / "held.csv", trained)
    after = evaluate(trained, held)["text_to_image"]
    before = evaluate(tiny_encoder, pair_set(data / "held.csv", tiny_encoder))["text_to_image"]
    assert after["recall@10"] > before["recall@10"] + 0.1, (before, after)
    assert after["median_rank"] < before["median_rank"]


def test_broken_rows_are_skipped_and_reported(data, tmp_path, tiny_encoder):
    pairs_file = tmp_path / "broken.csv"
    with (data / "train.csv").open() as f:
        rows = list(csv.DictReader(f))[:60]
    (tmp_path / "notes.jpg").write_text("not an image")
    with pairs_file.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for r in rows:
            w.writerow([str((data / r["image"]).resolve()), r["caption"]])
        w.writerow(["missing.png", "a red circle"])
        w.writerow(["notes.jpg", "a text file"])
        w.writerow([rows[0]["image"], ""])
    data_set = pair_set(pairs_file, tiny_encoder)
    reasons = " | ".join(r for _, r in data_set.skipped)
    assert len(data_set.skipped) == 3, reasons
    assert "empty caption" in reasons and "not an image" in reasons
    assert len(data_set) == 60
    result = train(
        fresh(tmp_path),
        data_set,
        tmp_path / "models",
        "b",
        TrainConfig(epochs=1, **FAST),
    )
    assert result.train_pairs + result.val_pairs == 60


def test_pairs_file_without_columns_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\na.jpg,hello\n")
    with pytest.raises(ConfigError, match="'image' and 'caption'"):
        read_pairs_file(bad)


def test_jsonl_and_tsv_pairs(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"image": "a.png", "caption": "x"}\nnot json\n')
    pairs, skipped = read_pairs_file(tmp_path / "p.jsonl")
    assert pairs == [Pair((tmp_path / "a.png").absolute(), "x")] and len(skipped) == 1
    (tmp_path / "p.tsv").write_text("caption\timage\ny, with comma\tsub/b.png\n")
    pairs, _ = read_pairs_file(tmp_path / "p.tsv")
    assert pairs == [Pair((tmp_path / "sub" / "b.png").absolute(), "y, with comma")]


def test_interrupted_run_resumes_to_the_same_model(data, tmp_path, tiny_encoder):
    pairs = pair_set(data / "train.csv", tiny_encoder)
    cfg = TrainConfig(epochs=3, **FAST)
    whole = train(fresh(tmp_path), pairs, tmp_path / "a", "m", cfg)

    def interrupt(epoch: int, record: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fresh(tmp_path), pairs, tmp_path / "b", "m", cfg, on_epoch_end=interrupt)
    assert (tmp_path / "b" / ".m.checkpoint" / "state.json").is_file()
    resumed = train(fresh(tmp_path), pairs, tmp_path / "b", "m", cfg)
    assert resumed.resumed_from_epoch == 1
    assert [h["loss"] for h in resumed.history] == pytest.approx(
        [h["loss"] for h in whole.history], abs=1e-3
    )
    assert not (tmp_path / "b" / ".m.checkpoint").exists()


def test_lock_image_freezes_the_image_tower(data, tmp_path, tiny_encoder):
    import torch
    from safetensors.torch import load_file

    src = source_for(tmp_path)
    pairs = pair_set(data / "train.csv", tiny_encoder)
    result = train(
        fresh(tmp_path),
        pairs,
        tmp_path / "models",
        "locked",
        TrainConfig(epochs=1, lock_image=True, accum_steps=2, **FAST),
    )
    base, _ = build_model(src)
    tuned = load_file(result.path / "open_clip_model.safetensors")
    for name, tensor in base.state_dict().items():
        if name.startswith("visual."):
            assert torch.equal(tensor, tuned[name]), name
    assert any(
        not torch.equal(t, tuned[n])
        for n, t in base.state_dict().items()
        if n.startswith("transformer.")
    )
    assert np.isfinite(result.history[0]["loss"])


def test_pixels_past_the_memory_budget_go_to_a_mapped_file(data, tmp_path, tiny_encoder):
    """Same pixels as in memory, failures closed up, the file gone from the folder once
    mapped, and the splits share the one array (no copy per split)."""
    pairs, _ = read_pairs_file(data / "train.csv")
    pairs = pairs[:40] + [Pair(tmp_path / "missing.png", "a red circle")] + pairs[40:80]
    in_memory = decode_pairs(pairs, tiny_encoder.prepare, tiny_encoder.image_size)
    spill = tmp_path / "spill"
    mapped = decode_pairs(
        pairs, tiny_encoder.prepare, tiny_encoder.image_size, memory_budget=1, spill_dir=spill
    )
    assert isinstance(in_memory.pixels, np.ndarray) and not isinstance(in_memory.pixels, np.memmap)
    assert isinstance(mapped.pixels, np.memmap) and list(spill.iterdir()) == []
    assert mapped.n_images == in_memory.n_images == len({p.image for p in pairs}) - 1
    np.testing.assert_array_equal(np.asarray(mapped.pixels), in_memory.pixels)
    assert mapped.paths == in_memory.paths and len(mapped.skipped) == 1

    train_set, val_set = split(mapped, 0.25, seed=0)
    assert train_set.pixels is val_set.pixels is mapped.pixels
    assert train_set.n_images + val_set.n_images == mapped.n_images
    for part in (train_set, val_set):
        for caption_row in range(len(part)):
            image = part.image_index[caption_row]
            original = in_memory.paths.index(part.paths[image])
            np.testing.assert_array_equal(part.image_pixels([image])[0], in_memory.pixels[original])
    before = evaluate(tiny_encoder, val_set)
    assert before == evaluate(tiny_encoder, val_set.subset(np.arange(len(val_set))))


def test_a_spill_that_does_not_fit_on_disk_is_a_clear_error(
    data, tmp_path, tiny_encoder, monkeypatch
):
    import errno
    import os

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    pairs, _ = read_pairs_file(data / "train.csv")
    with pytest.raises(ConfigError, match="do not fit in memory, nor on disk"):
        decode_pairs(
            pairs[:10],
            tiny_encoder.prepare,
            tiny_encoder.image_size,
            memory_budget=1,
            spill_dir=tmp_path,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def trained_home(data, tmp_path_factory, tiny_encoder):
    """A library home holding `base`: the tiny model trained from scratch (4 epochs, loss
    down from 2.8 to about 1.7)."""
    home = tmp_path_factory.mktemp("trained")
    pairs = pair_set(data / "train.csv", tiny_encoder)
    train(fresh(home), pairs, home / "models", "base", TrainConfig(epochs=4, **FAST))
    return home, pairs


def test_an_absurd_learning_rate_is_rolled_back_and_the_run_goes_on(trained_home):
    """Fine-tuning a trained model at 100x its rate wrecks it within a few steps: each
    time the loss leaves the level it had, the run goes back to its last checkpoint at
    half the rate, until the rate is one it can learn at; the saved model is the best
    validated state, and its recall on the validation images is what the report says."""
    from safetensors.torch import load_file

    home, small = trained_home
    start = load_encoder(source_for(home, "base", None), "cpu", "fp32")
    cfg = TrainConfig(epochs=2, **{**FAST, "lr": 0.2}, max_recoveries=10)
    result = train(start, small, home / "models", "rescued", cfg)

    assert len(result.recoveries) >= 1
    assert all("loss rose" in r["reason"] for r in result.recoveries), result.recoveries
    rates = [r["lr"] for r in result.recoveries]
    assert rates == sorted(rates, reverse=True) and rates[0] == pytest.approx(0.1)
    assert [h["epoch"] for h in result.history] == [1, 2]  # completed after the roll-backs
    scores = [
        sum(h["val"]["text_to_image"][f"recall@{k}"] for k in (1, 5, 10)) for h in result.history
    ]
    before = sum(result.before["text_to_image"][f"recall@{k}"] for k in (1, 5, 10))
    best = max([before, *scores])
    assert result.best_epoch == [before, *scores].index(best)

    saved = load_encoder(source_for(home, "rescued", None), "cpu", "fp32")
    _, val = split(small, FAST["val_fraction"], FAST["seed"])
    assert evaluate(saved, val) == result.after
    sidecar = json.loads((result.path / "imgsearch.json").read_text())
    assert sidecar["metrics"]["recoveries"] == result.recoveries
    # The spikes are in the saved per-step losses, so the curves show them.
    assert (
        max(s["loss"] for s in sidecar["metrics"]["steps"])
        > min(s["loss"] for s in sidecar["metrics"]["steps"]) * 1.3
    )
    tensors = load_file(result.path / "open_clip_model.safetensors")
    assert all(np.isfinite(t.float().numpy()).all() for t in tensors.values())


def test_validation_holds_out_a_tenth_at_most_100_images_unless_asked():
    from indexer.training.pairs import PairSet

    def pairs(images: int, per_image: int = 2) -> PairSet:
        index = np.repeat(np.arange(images, dtype=np.int64), per_image)
        return PairSet(
            np.zeros((images, 1, 1, 3), np.uint8),
            [f"c{i}" for i in range(len(index))],
            index,
            [Path(f"{i}.jpg") for i in range(images)],
        )

    for images, held in [(300, 30), (1000, 100), (5000, 100)]:
        train_set, val_set = split(pairs(images), None, 0)
        assert (val_set.n_images, train_set.n_images) == (held, images - held)
        # Whole images: no image has captions on both sides.
        assert len(val_set) == 2 * held and not set(val_set.paths) & set(train_set.paths)
    _, asked = split(pairs(5000), 0.2, 0)
    assert asked.n_images == 1000
    assert split(pairs(5000), 0.0, 0)[1] is None


def test_a_model_trained_here_continues_at_a_tenth_of_its_rate(trained_home):
    from indexer.training.main import peak_lr

    home, _ = trained_home
    base = source_for(home, "base", None)
    assert peak_lr(TrainConfig(), base) == pytest.approx(FAST["lr"] / 10)
    assert peak_lr(TrainConfig(lr=3e-4), base) == 3e-4
    assert peak_lr(TrainConfig(), source_for(home)) == 5e-4  # random init


def run_cli(*argv: str) -> int:
    from search.cli import main

    return main(list(argv))


def train_tiny(home: Path, pairs: Path, out: str, *more: str) -> int:
    """`imgsearch train PAIRS` from the random-init tiny model on the CPU, in-process."""
    return run_cli(
        "--home", str(home), "train", str(pairs), "--model", "imgsearch-tiny",
        "--pretrained", "none", "--device", "cpu", "--out", out, *more,
    )  # fmt: skip


def test_train_refuses_too_few_pairs_with_one_line(data, tmp_path, capsys):
    pairs = tmp_path / "one.csv"
    rows = (data / "train.csv").read_text().splitlines()
    pairs.write_text("\n".join(rows[:2]).replace("train/", str(data / "train") + "/") + "\n")
    home = tmp_path / "home"
    code = train_tiny(home, pairs, "few")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("imgsearch: error: too few pairs"), err
    assert "Traceback" not in "\n".join(err)
    assert not (home / "models").exists() or list((home / "models").iterdir()) == []


def test_train_on_only_broken_images_is_one_line(tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"<html>not a photo</html>")
    (tmp_path / "b.png").write_bytes(b"")
    pairs = tmp_path / "broken.csv"
    pairs.write_text("image,caption\na.jpg,a red circle\nb.png,a blue square\nc.jpg,gone\n")
    home = tmp_path / "home"
    code = train_tiny(home, pairs, "broken")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == [
        "imgsearch: error: no usable pairs: every image is missing or undecodable"
    ]
    assert not (home / "models").exists() or list((home / "models").iterdir()) == []


def test_an_unwritable_models_folder_is_one_line_and_writes_nothing(data, tmp_path, capsys):
    """`models` is a folder nobody may create entries in, root included (sysfs)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to("/sys/kernel")
    before = sorted(p.name for p in Path("/sys/kernel").iterdir())
    code = train_tiny(home, data / "train.csv", "ro", "--epochs", "1")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("imgsearch: error: cannot write to the models folder"), err
    assert sorted(p.name for p in Path("/sys/kernel").iterdir()) == before


def test_a_full_disk_while_saving_leaves_no_half_model_and_a_rerun_finishes(
    data, tmp_path, capsys, monkeypatch
):
    import errno

    import safetensors.torch

    real = safetensors.torch.save_file

    def full_in_final_folder(tensors, path, *a, **k):
        if ".tmp" in str(Path(path).parent.name):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)

    home = tmp_path / "home"
    more = ("--epochs", "1", "--batch-size", "32", "--json")
    monkeypatch.setattr(safetensors.torch, "save_file", full_in_final_folder)
    code = train_tiny(home, data / "train.csv", "full", *more)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"imgsearch: error: disk full while writing at {home / 'models'}")
    assert err[0].endswith("the last epoch is kept: the same command finishes from it"), err
    assert sorted(p.name for p in (home / "models").iterdir()) == [".full.checkpoint"]

    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert train_tiny(home, data / "train.csv", "full", *more) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resumed_from_epoch"] == 1 and report["recoveries"] == []
    assert sorted(p.name for p in (home / "models").iterdir()) == ["full"]

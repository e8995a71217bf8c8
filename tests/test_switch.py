"""`train --use` switches the library to the new model without a moment of failed search."""

from __future__ import annotations

import json
import threading

from test_cli import TINY, run

from indexer.synthetic import generate, write_pairs
from search.library import Library
from search.query.searcher import SearchRequest
from search.settings import Settings


def test_train_use_switches_models_with_search_answering_throughout(tmp_path):
    home = tmp_path / "home"
    samples = generate(tmp_path / "photos", 160, seed=5)
    write_pairs(samples, tmp_path / "pairs.csv")
    first = json.loads(run("index", tmp_path / "photos", *TINY, "--json", home=home).stdout)
    old_model = first["model_id"]

    seen: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def keep_searching():
        with Library(Settings(home=home, device="cpu")) as lib:
            while not done.is_set():
                try:
                    result = lib.searcher.search(SearchRequest(text="a red circle", k=5))
                    assert len(result.hits) == 5
                    for h in result.hits:
                        assert lib.catalog.image(h.id).path == h.path
                    seen.append(result.model_id)
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)
                    return

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        trained = json.loads(
            run(
                "train",
                tmp_path / "pairs.csv",
                *TINY,
                "--out",
                "switched",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--use",
                "--json",
                home=home,
            ).stdout
        )
    finally:
        done.set()
        searcher.join(timeout=120)
    assert not errors, errors
    new_model = trained["model_id"]
    assert new_model != old_model and trained["index"]["embedded"] == 160
    # Old answers until the new index is complete, then only new ones: never a mix.
    assert seen and seen[0] == old_model
    switch = seen.index(new_model) if new_model in seen else len(seen)
    assert set(seen[:switch]) == {old_model} and set(seen[switch:]) <= {new_model}

    out = json.loads(run("search", "a red circle", "--json", home=home).stdout)
    assert out["model_id"] == new_model
    models = json.loads(run("models", "--json", home=home).stdout)
    assert "switched" in models["saved"]
    assert any(m["serving"] and m["model_id"] == new_model for m in models["models"])
    # The relevance cutoff checks queries on the pairs the new model saved beside it; the
    # old model (the tiny base, trained nowhere here) has none.
    with Library(Settings(home=home, device="cpu")) as lib:
        ids, vectors = lib.catalog.vectors(new_model)
        checked = lib.described(new_model, ids, vectors).checked
        assert checked is not None and len(checked.vectors) == 160
        assert checked.holding("red circle").any()
        ids, vectors = lib.catalog.vectors(old_model)
        assert lib.described(old_model, ids, vectors).checked is None


def test_eval_reports_recall_for_any_model(tmp_path):
    samples = generate(tmp_path / "imgs", 40, seed=2)
    write_pairs(samples, tmp_path / "pairs.csv")
    out = json.loads(
        run("eval", tmp_path / "pairs.csv", *TINY, "--json", home=tmp_path / "home").stdout
    )
    assert set(out) >= {"n", "recall@1", "recall@5", "recall@10", "median_rank", "model_id"}
    assert out["n"] == 40 and 0 <= out["recall@1"] <= out["recall@5"] <= out["recall@10"] <= 1
    assert out["model_id"].startswith("imgsearch-tiny/")

"""Progress: a bar on stderr for a person, a JSON status file for another process."""

from __future__ import annotations

import json
import threading

from search import progress as progress_module
from search.progress import Progress, read_status
from search.settings import Settings

KEYS = {"desc", "done", "total", "unit", "rate", "postfix", "updated_at", "closed"}


def test_status_file_follows_the_bar_and_ends_complete(tmp_path):
    status = tmp_path / "jobs" / "progress.json"
    with Progress(show=False, status_file=status).bar(10, desc="indexing", unit="img") as bar:
        first = read_status(status)
        assert first is not None and set(first) == KEYS
        assert first["done"] == 0 and first["total"] == 10 and not first["closed"]
        for _ in range(10):
            bar.update()
        bar.set_postfix(loss=0.5, lr="1.0e-05", nan=float("nan"))
    final = read_status(status)
    assert final["desc"] == "indexing" and final["unit"] == "img"
    assert final["done"] == 10 and final["closed"] is True
    assert final["rate"] > 0
    assert final["postfix"] == {"loss": 0.5, "lr": "1.0e-05", "nan": "nan"}
    json.loads(status.read_text(), parse_constant=lambda c: 1 / 0)  # strict JSON, no NaN
    assert [p.name for p in status.parent.iterdir()] == ["progress.json"]  # no temp files


def test_status_file_is_written_a_few_times_a_second_not_per_update(tmp_path, monkeypatch):
    writes = []
    real = progress_module.atomic_write
    monkeypatch.setattr(
        progress_module, "atomic_write", lambda p, d: (writes.append(d), real(p, d))
    )
    with Progress(show=False, status_file=tmp_path / "s.json").bar(None, "epoch 1", "step") as b:
        for _ in range(5000):
            b.update()
    assert 2 <= len(writes) <= 10  # opened, perhaps a tick or two, closed
    assert read_status(tmp_path / "s.json")["total"] is None


def test_a_new_bar_is_a_new_stage(tmp_path):
    status = tmp_path / "s.json"
    shown = Progress(show=False, status_file=status)
    with shown.bar(3, "epoch 1/2", "step") as bar:
        bar.update(3)
    with shown.bar(3, "epoch 2/2", "step") as bar:
        bar.update(1)
        assert read_status(status)["desc"] == "epoch 2/2"
    assert read_status(status)["done"] == 1


def test_the_bar_is_shown_on_stderr_only_when_asked(tmp_path, capsys):
    with Progress(show=True).bar(4, desc="indexing", unit="img") as bar:
        bar.update(4)
    assert "indexing" in capsys.readouterr().err
    with Progress(show=False).bar(4, desc="quiet", unit="img") as bar:
        bar.update(4)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_updates_from_several_threads_all_count(tmp_path):
    status = tmp_path / "s.json"
    with Progress(show=False, status_file=status).bar(4000, "indexing", "img") as bar:
        threads = [
            threading.Thread(target=lambda: [bar.update() for _ in range(1000)]) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert read_status(status)["done"] == 4000


def test_an_unwritable_status_file_does_not_stop_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with Progress(show=False, status_file=blocker / "s.json").bar(2, "indexing", "img") as bar:
        bar.update(2)
    assert bar.done == 2


def test_read_status_of_nothing_or_garbage_is_none(tmp_path):
    assert read_status(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_status(tmp_path / "bad.json") is None


def test_settings_take_the_status_file_from_the_environment(tmp_path):
    env = {"IMGSEARCH_PROGRESS_FILE": str(tmp_path / "p.json")}
    assert Settings.load(env, home=tmp_path).progress_file == tmp_path / "p.json"
    assert Settings.load({}, home=tmp_path).progress_file is None

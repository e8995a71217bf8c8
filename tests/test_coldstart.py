"""What a cold command does not pay for: Alembic when the catalog is current, open_clip
to tell a model's id, SQLAlchemy before the query model starts loading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search.catalog.reader import serving_model
from search.catalog.store import SCHEMA_HEAD, Catalog
from search.library import SERVING_MODEL
from search.models.spec import ModelSpec, quick_model_id, resolve

REPO = Path(__file__).resolve().parent.parent


def test_schema_head_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from search.catalog.store import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_opening_a_current_catalog_does_not_import_alembic(tmp_path):
    Catalog.open(tmp_path / "catalog.db").close()  # created (and migrated) here
    code = (
        "import sys; from pathlib import Path; from search.catalog.store import Catalog; "
        f"Catalog.open(Path({str(tmp_path / 'catalog.db')!r})).close(); "
        "print('alembic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "False"


def test_serving_model_is_read_without_sqlalchemy(tmp_path):
    path = tmp_path / "catalog.db"
    assert serving_model(path) is None  # no catalog yet
    cat = Catalog.open(path)
    assert serving_model(path) is None  # nothing indexed yet
    spec = ModelSpec("imgsearch-tiny", "none")
    cat.ensure_model("m1", spec, 64)
    cat.set_setting(SERVING_MODEL, "m1")
    cat.close()
    assert serving_model(path) == ("m1", spec)
    path.write_bytes(b"not a database" * 100)
    assert serving_model(path) is None


@pytest.mark.parametrize(
    "model, pretrained",
    [
        ("imgsearch-tiny", "none"),
        ("ViT-B-32", "random"),
        ("ViT-B-32-256", "none"),
        ("RN50", "none"),
        ("search/models/configs/imgsearch-tiny.json", None),
        ("search/models/configs/imgsearch-tiny.json", "none"),
    ],
)
def test_quick_model_id_of_random_init_matches_resolve(tmp_path, model, pretrained):
    model = str(REPO / model) if model.endswith(".json") else model
    spec = ModelSpec(model, pretrained)
    quick = quick_model_id(spec, tmp_path, tmp_path)
    assert quick == resolve(model, pretrained, models_dir=tmp_path, cache_dir=tmp_path).model_id


def test_quick_model_id_of_a_config_file_with_weights(tmp_path, tiny_encoder):
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_encoder.model.state_dict().items()}, weights)
    config = tmp_path / "arch.json"
    config.write_text(
        json.dumps(
            {
                "model_cfg": json.loads(
                    (REPO / "search/models/configs/imgsearch-tiny.json").read_text()
                )
            }
        )
    )
    spec = ModelSpec(str(config), str(weights))
    expected = resolve(str(config), str(weights), models_dir=tmp_path, cache_dir=tmp_path)
    assert quick_model_id(spec, tmp_path, tmp_path) == expected.model_id


def describe_schema(path: Path) -> dict:
    """Tables, columns (in order, with types, defaults, keys), indexes and foreign keys."""
    import sqlite3

    conn = sqlite3.connect(path)
    out = {}
    tables = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for table, sql in tables:
        indexes = sorted(
            (
                row[1],
                row[2],
                row[3],
                tuple(i[2] for i in conn.execute(f"pragma index_info('{row[1]}')")),
            )
            for row in conn.execute(f"pragma index_list('{table}')")
        )
        out[table] = (
            conn.execute(f"pragma table_info('{table}')").fetchall(),
            indexes,
            sorted(conn.execute(f"pragma foreign_key_list('{table}')").fetchall()),
            "AUTOINCREMENT" in sql.upper(),
        )
    stamp = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    conn.close()
    return {"tables": out, "stamp": stamp}


def test_a_new_catalog_is_created_without_alembic_as_the_migrations_make_it(tmp_path):
    from search.catalog.backend import make_engine
    from search.catalog.store import _migrate_with_alembic

    code = (
        "import sys; from pathlib import Path; from search.catalog.store import Catalog; "
        f"Catalog.open(Path({str(tmp_path / 'new.db')!r})).close(); "
        "print('alembic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "False"
    engine = make_engine(tmp_path / "migrated.db")
    _migrate_with_alembic(engine)
    engine.dispose()
    assert describe_schema(tmp_path / "new.db") == describe_schema(tmp_path / "migrated.db")
    Catalog.open(tmp_path / "new.db").close()  # and it opens as current

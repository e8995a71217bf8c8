"""Settings for a library on the bundled tiny model (random init), offline, on the CPU."""

from __future__ import annotations

from pathlib import Path

from search.settings import Settings


def tiny_settings(home: Path, **changes) -> Settings:
    # engine="torch": no ONNX export at the end of every index run (seconds each); the
    # tests of the ONNX path (tests/test_onnxmodel.py) ask for it.
    values = dict(
        model="imgsearch-tiny",
        pretrained="none",
        device="cpu",
        workers=2,
        batch_size=8,
        engine="torch",
    )
    return Settings(home=home, **{**values, **changes})


def catalog_env(settings: Settings) -> dict[str, str]:
    """The environment a command run beside `settings`' library needs to open its catalog
    (a PostgreSQL one is not in the home folder)."""
    return {"IMGSEARCH_CATALOG": settings.catalog} if settings.catalog else {}

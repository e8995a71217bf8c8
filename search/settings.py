"""One frozen Settings object, built at the edge: defaults <- IMGSEARCH_* env <- flags.

Nothing below the CLI or the web app factory reads the environment; they receive this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from search.errors import ConfigError

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
ENGINES = ("auto", "torch", "onnx", "openvino")
# Inference precisions (--precision); auto picks one per device (search.models.encoder).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("imgsearch", appauthor=False))


def _in_home(name: str) -> property:
    """A read-only Settings attribute: the path `name` in the library folder."""
    return property(lambda self: self.home / name)


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    # None means "the library's active model" (set by `use`), else DEFAULT_MODEL.
    model: str | None = None
    pretrained: str | None = None
    device: str = "auto"
    # auto: bf16 on CPUs with native bf16, autocast on CUDA, else fp32 (see search.models.encoder).
    precision: str = "auto"
    # What runs the model (search.models.onnx): "auto" exports each model to ONNX once (at
    # the end of an index run) and runs queries on ONNX Runtime, no torch; index runs on
    # the export too, its image tower on OpenVINO in bf16 where the CPU has bf16 and the
    # extra is installed, else on ONNX Runtime for small runs only. "torch" never exports
    # nor uses an export; "onnx" uses the export on ONNX Runtime (fp32) for every run it
    # can, "openvino" with OpenVINO where it may (CPU only).
    engine: str = "auto"
    # Images per model batch; 0 picks 32 on a CPU, 256 on a GPU.
    batch_size: int = 0
    # Decoding threads; 0 picks one per CPU core.
    workers: int = 0
    # Where JPEGs are decoded while indexing: "device" on the model's GPU (nvJPEG),
    # "cpu" with Pillow, "auto" on the GPU when the model runs on one.
    decode: str = "auto"
    max_megapixels: float = 100.0
    # Libraries of this many images or more get an approximate index (search.index.ann), tuned
    # to this recall@10 against exact search.
    ann_threshold: int = 50_000
    target_recall: float = 0.95
    exclude: tuple[str, ...] = ()
    # Hidden files and folders (a leading dot) are skipped unless asked for; the folders
    # of NAS boxes and OSes (indexer.sync.scan.SYSTEM_DIRS) always are.
    include_hidden: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    # Where a long run (index, train) also writes its progress as JSON (search.progress),
    # for the web UI that started it in the background; None: only the bar on stderr.
    progress_file: Path | None = None
    # How often a training run writes a checkpoint to resume from (after the epoch that
    # passes it): each costs seconds of writing, and what a kill loses is at most this.
    checkpoint_seconds: float = 60.0
    # Videos (search.videos): a frame embedded at least this often (seconds), besides one
    # at each cut; at most this many a video (64 at most); and no video decoded longer.
    video_every: float = 10.0
    video_frames: int = 40
    video_timeout: float = 300.0
    # Read the text in photos while indexing (search.ocr). Once on, a library remembers it
    # (Library.reads_text): `index --no-ocr` turns it off.
    ocr: bool = False
    # Embed index runs on a Ray cluster at this address ("auto": a Ray instance started on
    # this machine for the run; indexer.cluster.rayrun); "": in this process.
    ray: str = ""
    # The catalog's database as a SQLAlchemy URL (postgresql://..., for a library several
    # machines share); "": SQLite, catalog.db in the library folder.
    catalog: str = ""

    # What the library folder holds.
    catalog_path = _in_home("catalog.db")

    @property
    def catalog_target(self) -> Path | str:
        """What search.catalog opens: the SQLite file, or the database URL."""
        return self.catalog or self.catalog_path

    @property
    def catalog_name(self) -> str:
        """The catalog as an error message names it (a URL without its password)."""
        if not self.catalog:
            return str(self.catalog_path)
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.catalog).render_as_string(hide_password=True)
        except Exception:  # not a URL at all: opening it says so
            return "the catalog database"

    index_dir = _in_home("index")
    thumbs_dir = _in_home("thumbs")
    models_dir = _in_home("models")
    cache_dir = _in_home("cache")

    def model_batch(self, device: str) -> int:
        if self.batch_size > 0:
            return self.batch_size
        return 256 if device.startswith("cuda") else 32

    def decode_workers(self) -> int:
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **flags: object) -> Settings:
        """Defaults, overridden by ``IMGSEARCH_<FIELD>`` variables, overridden by flags.

        Flags whose value is None count as "not given".
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"IMGSEARCH_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, raw)
        unknown = set(flags) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in flags.items() if v is not None})
        if "home" in values:
            values["home"] = Path(values["home"]).expanduser().absolute()  # type: ignore[arg-type]
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def validate(self) -> None:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"--device must be auto, cpu or cuda, not {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.batch_size < 0:
            raise ConfigError("--batch-size must be 0 (automatic) or more")
        if self.decode not in ("auto", "cpu", "device"):
            raise ConfigError(f"--decode must be auto, cpu or device, not {self.decode!r}")
        if self.workers < 0:
            raise ConfigError("--workers must be 0 (one per core) or more")
        if self.max_megapixels <= 0:
            raise ConfigError("--max-megapixels must be positive")
        if self.ann_threshold < 0:
            raise ConfigError("IMGSEARCH_ANN_THRESHOLD must be 0 or more")
        if not 0 < self.target_recall <= 1:
            raise ConfigError("IMGSEARCH_TARGET_RECALL must be above 0 and at most 1")
        if self.video_every <= 0:
            raise ConfigError("IMGSEARCH_VIDEO_EVERY must be positive (seconds)")
        if not 1 <= self.video_frames <= 64:
            raise ConfigError("IMGSEARCH_VIDEO_FRAMES must be between 1 and 64")
        if self.video_timeout <= 0:
            raise ConfigError("IMGSEARCH_VIDEO_TIMEOUT must be positive (seconds)")
        if self.checkpoint_seconds < 0:
            raise ConfigError("IMGSEARCH_CHECKPOINT_SECONDS must be 0 (every epoch) or more")


def _coerce(name: str, raw: str) -> object:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if name == "exclude":
            return tuple(p for p in raw.split(os.pathsep) if p)
        if kind == "bool":
            if raw.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
    except ValueError as exc:
        raise ConfigError(f"IMGSEARCH_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw

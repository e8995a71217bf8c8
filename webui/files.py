"""Originals and thumbnails, served by catalog id only.

The URL names an id, never a path. At serve time the catalogued path is resolved
(os.path.realpath) and must still lie inside its root's real path, and the final open
refuses a symlink, so a file swapped for a link to /etc/passwd after indexing is a 404.
A folder swapped for a link between that check and the open is caught after it: the
path the kernel holds for the opened file (/proc/self/fd on Linux) must be inside too.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from flask import Blueprint, abort, current_app, request, send_file

from search.catalog.records import ImageMeta
from search.diskfiles import atomic_write
from search.errors import ImageDecodeError, NotFound, storage_failure
from search.imageio import jpeg_thumbnail, thumbnail_jpeg
from search.library import Library
from search.videos import frame_at, is_video
from webui.api import library

bp = Blueprint("files", __name__)
log = logging.getLogger(__name__)

THUMB_SIDE = 320
# Bump when the thumbnail recipe (search.imageio.jpeg_thumbnail) changes, so cached files
# from the old one are not served.
THUMB_VERSION = 1
# A thumbnail URL names an id whose file may change, so browsers keep it briefly and then
# revalidate with the ETag (a 304 costs next to nothing).
THUMB_MAX_AGE = 600

# Explicit rather than the platform's mimetypes table, which may lack some (webp).
MIME_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".dng": "image/x-adobe-dng",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
}

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class Thumbnails:
    """JPEG thumbnails cached under the library's thumbs/ folder, one per file version."""

    def __init__(self, folder: Path, max_megapixels: float) -> None:
        self.folder = folder
        self.max_megapixels = max_megapixels

    def path_for(self, image_id: int, st: os.stat_result, t: float | None = None) -> Path:
        name = f"{self._version(image_id, st)}{'' if t is None else f'-t{round(t * 1000)}'}.jpg"
        return self.folder / str(image_id // 1000) / name

    @staticmethod
    def _version(image_id: int, st: os.stat_result) -> str:
        return f"{image_id}-{st.st_size}-{st.st_mtime_ns}-v{THUMB_VERSION}"

    def get(
        self, image_id: int, fp: BinaryIO, st: os.stat_result, name: str, t: float | None = None
    ) -> bytes:
        """The cached thumbnail for this version of the file (named `name`; a video's at
        `t` seconds, default its first frame), made now if missing."""
        path = self.path_for(image_id, st, t)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        if is_video(name):
            frame = frame_at(fp, t or 0.0, max_megapixels=self.max_megapixels)
            data = thumbnail_jpeg(frame, THUMB_SIDE)
        else:
            data = jpeg_thumbnail(fp, THUMB_SIDE, max_megapixels=self.max_megapixels, name=name)
        try:
            atomic_write(path, data)
        except OSError as exc:
            line = storage_failure(exc, str(self.folder))
            if line is None:
                raise
            # The cache is what failed, not the request: the thumbnail is served, made
            # again next time, and cached once the disk has room.
            log.warning("thumbnail not cached: %s", line)
            return data
        # Other versions of the file go; a video's other frames of this version stay.
        current = self._version(image_id, st)
        for stale in path.parent.glob(f"{image_id}-*.jpg"):
            if not stale.name.startswith(current):
                stale.unlink(missing_ok=True)
        return data


def frame_time(raw: str | None) -> float | None:
    """A `t` query parameter: seconds into a video, or None when absent or not a
    number (a bad one shows the first frame rather than failing the page)."""
    try:
        t = float(raw) if raw else None
    except ValueError:
        return None
    return t if t is not None and 0 <= t < 1e7 else None


def open_indexed(lib: Library, image_id: int) -> tuple[ImageMeta, BinaryIO, os.stat_result]:
    """Open a catalogued image for reading, or raise NotFound when it is gone or not
    (any more) a regular file inside its root."""
    meta = lib.catalog.image(image_id)
    root = next((r for r in lib.catalog.roots() if r.id == meta.root_id), None)
    if root is None:
        raise NotFound(f"image {image_id} belongs to no root")
    root_real = os.path.realpath(root.path)
    real = os.path.realpath(meta.path)
    if os.path.commonpath([root_real, real]) != root_real:
        raise NotFound(f"image {image_id} is no longer inside its folder")
    try:
        # O_NOFOLLOW: the last component cannot turn into a link between check and open;
        # O_NONBLOCK: a FIFO put in the photo's place cannot hang a server thread.
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        raise NotFound(f"image {image_id} cannot be read: {exc.strerror}") from exc
    opened = _opened_path(fd)
    if opened is not None and os.path.commonpath([root_real, opened]) != root_real:
        os.close(fd)
        raise NotFound(f"image {image_id} is no longer inside its folder")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotFound(f"image {image_id} is not a regular file any more")
    return meta, os.fdopen(fd, "rb"), st


def download_name(path: str) -> str:
    """The file's name for Content-Disposition: control characters (a newline, a tab, a
    carriage return are legal in Linux names) become "_", as a header may not hold them
    (RELIABILITY 17); werkzeug quotes the rest and adds the UTF-8 form."""
    return re.sub(r"[\x00-\x1f\x7f]", "_", os.path.basename(path))


def _opened_path(fd: int) -> str | None:
    """Where an open file really is, from the kernel; None where /proc cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


@bp.get("/files/<int:image_id>")
def original(image_id: int):
    meta, fp, st = open_indexed(library(), image_id)
    suffix = os.path.splitext(meta.path)[1].lower()
    mimetype = MIME_TYPES.get(suffix, "application/octet-stream")
    response = send_file(
        fp,
        mimetype=mimetype,
        download_name=download_name(meta.path),
        conditional=False,
        etag=f"{image_id}-{st.st_size}-{st.st_mtime_ns}",
        last_modified=st.st_mtime,
    )
    # Conditional and ranged by the size of the file opened (send_file knows a size only
    # for paths): a browser seeks in a video by asking for ranges.
    response.content_length = st.st_size
    response = response.make_conditional(
        request.environ, accept_ranges=True, complete_length=st.st_size
    )
    response.cache_control.private = True
    response.cache_control.no_cache = True
    return response


@bp.get("/thumbs/<int:image_id>")
def thumbnail(image_id: int):
    meta, fp, st = open_indexed(library(), image_id)
    thumbs: Thumbnails = current_app.extensions["imgsearch.thumbnails"]
    t = frame_time(request.args.get("t")) if meta.kind == "video" else None
    with fp:
        try:
            data = thumbs.get(image_id, fp, st, meta.path, t)
        except ImageDecodeError as exc:
            abort(404, f"image {image_id} cannot be decoded any more: {exc.reason}")
    response = send_file(
        io.BytesIO(data),
        mimetype="image/jpeg",
        conditional=True,
        etag=thumbs.path_for(image_id, st, t).stem,
        last_modified=st.st_mtime,
        max_age=THUMB_MAX_AGE,
    )
    response.cache_control.public = False
    response.cache_control.private = True
    return response

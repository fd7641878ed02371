"""Where results go: an outputs folder laid out by date, written atomically so a crash leaves no partial file."""

from __future__ import annotations

import datetime as _dt
import io
import os
import secrets
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin

DEFAULT_OUTPUTS = "outputs"


def outputs_dir() -> Path:
    return Path(os.environ.get("SD35UI_OUTPUTS", DEFAULT_OUTPUTS)).resolve()


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write to a temporary name in the same folder, fsync, then rename: readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def png_bytes(image: Image.Image, info: PngImagePlugin.PngInfo | None) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def new_path(kind: str, seed: int | None = None, root: Path | None = None, suffix: str = ".png") -> Path:
    """outputs/YYYY-MM-DD/HHMMSS-<kind>-<seed>-<random>.png: sortable by time, never colliding."""
    now = _dt.datetime.now()
    name = f"{now:%H%M%S}-{kind}" + (f"-{seed}" if seed is not None else "") + f"-{secrets.token_hex(3)}{suffix}"
    return (root or outputs_dir()) / f"{now:%Y-%m-%d}" / name


def save_png(image: Image.Image, info: PngImagePlugin.PngInfo | None, path: Path) -> Path:
    return atomic_write_bytes(path, png_bytes(image, info))

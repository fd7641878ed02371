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
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it), then put back
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give: mkstemp's 0600 would hide results from the web server's user


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
            os.fchmod(f.fileno(), FILE_MODE)
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


class SaveError(OSError):
    """A result was made but could not be written to the outputs folder. The message names the file, not the
    server's folder, and says what to do."""


def save_png(image: Image.Image, info: PngImagePlugin.PngInfo | None, path: Path) -> Path:
    try:
        return atomic_write_bytes(path, png_bytes(image, info))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SaveError(
            exc.errno,
            f"The image was made but could not be saved as {path.name}: {reason}. Free disk space in the outputs "
            "folder, or restart the app with --outputs pointing to a writable folder.",
        ) from exc

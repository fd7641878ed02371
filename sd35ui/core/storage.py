"""Where results go: an outputs folder laid out by date, written atomically so a crash leaves no partial file."""

from __future__ import annotations

import datetime as _dt
import io
import os
import secrets
import shutil
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
    return save_bytes(path, png_bytes(image, info))


def save_bytes(path: Path, data: bytes, what: str = "The image") -> Path:
    """`atomic_write_bytes`, with a failure (a full disk, a read-only folder) raised as a `SaveError` that says
    what was not saved and what to do."""
    try:
        return atomic_write_bytes(path, data)
    except OSError as exc:
        raise _save_error(exc, what, path) from exc


def link_or_copy(source: Path, path: Path, what: str = "The image") -> Path:
    """`path` as the same file as `source`: a hard link (no new bytes on disk, and `source`'s modification time,
    so it is never "newer" than the file it repeats), or where the file system has none a copy with `source`'s
    times. Atomic like `atomic_write_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{secrets.token_hex(8)}{path.suffix}")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            tmp.write_bytes(Path(source).read_bytes())
            shutil.copystat(source, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _save_error(exc, what, path) from exc
    return path


def _save_error(exc: OSError, what: str, path: Path) -> SaveError:
    reason = exc.strerror or type(exc).__name__
    return SaveError(
        exc.errno,
        f"{what} was made but could not be saved as {path.name}: {reason}. Free disk space in the outputs "
        "folder, or restart the app with --outputs pointing to a writable folder.",
    )

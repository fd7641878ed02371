"""Past results: list what the outputs folder holds (newest first, with metadata), make gallery thumbnails, and
turn a PNG's embedded settings (ours or an A1111-style `parameters` chunk) into Generate-tab values.

Pure Python and PIL: no gradio, no torch. The outputs folder is the only record, so history survives restarts and
shows files written by any sd35ui process (UI, CLI, contact sheets). Files that are being written (`.tmp-*`, see
`storage.atomic_write_bytes`) and hidden folders are never listed.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from sd35ui import metadata, storage
from sd35ui.settings import SD35_MEDIUM, GenerationSettings, ModelSpec

PAGE_SIZE = 48  # gallery items per page: 8 rows of 6 thumbnails
THUMBS_DIR = ".thumbs"  # inside the outputs folder; hidden, so never listed as a result
THUMB_SIZE = 256  # pixels on the long side: a 1024x1024 PNG of 1.5 MB becomes a WebP of about 10 kB
TEMP_PREFIX = ".tmp-"  # storage.atomic_write_bytes writes here first
STALE_TEMP_S = 3600  # a temporary file this old belongs to a writer that crashed or was killed
MAX_PNG_BYTES = 64 * 2**20  # a dropped PNG: an 8 x 8 contact sheet of 1024x1024 cells is about 100 MB raw RGB,
MAX_PNG_PIXELS = 80 * 2**20  # but well under 64 MB as PNG; more is not an image we made, so it is not decoded
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GENERATE_KEYS = ("prompt", "negative_prompt", "steps", "guidance", "width", "height", "seed", "randomize_seed")

# outputs/YYYY-MM-DD/HHMMSS-<kind>[-<seed>]-<6 hex>[-r<row>c<col>].png, as written by storage.new_path / sheet.py
_NAME = re.compile(r"^(?P<time>\d{6})-(?P<kind>[a-z]+)(?:-\d+)?-[0-9a-f]{6}(?P<cell>-r\d+c\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Entry:
    """One result file. `created` comes from the file's name (our layout) or its modification time."""

    path: Path
    created: _dt.datetime
    kind: str  # "image", "sheet", "cell" (one cell of a sheet) or "file" (a PNG named by someone else)
    mtime_ns: int = 0


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    number: int  # 0 = the newest
    pages: int
    total: int
    size: int = PAGE_SIZE

    def describe(self) -> str:
        if not self.total:
            return "No results yet: images and contact sheets appear here as they are made."
        first = self.number * self.size + 1
        last = first + len(self.entries) - 1
        return f"{first}–{last} of {self.total}, newest first · page {self.number + 1} of {self.pages}"


@dataclass(frozen=True)
class LoadedSettings:
    """Settings read from a PNG, as Generate-tab values. Keys missing from `values` were not in the file."""

    values: dict[str, Any]
    source: str  # metadata.JSON_KEY (ours) or metadata.PARAMETERS_KEY (A1111-style)
    model: str | None
    parameters: str  # the settings as A1111 text, for display
    notes: list[str] = field(default_factory=list)  # values this app's model cannot use as they are


def _entry(path: Path, stat: os.stat_result) -> Entry:
    match = _NAME.match(path.stem)
    created = None
    kind = "file"
    if match and _DATE.match(path.parent.name):
        try:
            created = _dt.datetime.strptime(f"{path.parent.name} {match['time']}", "%Y-%m-%d %H%M%S")
            kind = "cell" if match["cell"] else match["kind"]
        except ValueError:
            created = None
    if created is None:
        created = _dt.datetime.fromtimestamp(stat.st_mtime)
    return Entry(path=path, created=created, kind=kind, mtime_ns=stat.st_mtime_ns)


def list_results(root: Path, include_cells: bool = False) -> list[Entry]:
    """Every finished PNG under `root`, newest first. Hidden folders (thumbnails), files being written and
    symbolic links (which could point outside the outputs folder) are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    entries: list[Entry] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or not name.lower().endswith(".png"):
                continue
            path = Path(folder, name)
            try:
                stat = path.lstat()
            except OSError:  # removed while we looked
                continue
            if path.is_symlink():
                continue
            entry = _entry(path, stat)
            if entry.kind == "cell" and not include_cells:
                continue
            entries.append(entry)
    # Names sort by second; within one second the modification time orders them.
    entries.sort(key=lambda e: (e.created, e.mtime_ns, e.path.name), reverse=True)
    return entries


def page_of(entries: list[Entry], number: int, size: int = PAGE_SIZE) -> Page:
    """Page `number` (0 = newest), clamped to the pages that exist."""
    pages = max(1, -(-len(entries) // size))
    number = min(max(int(number), 0), pages - 1)
    return Page(entries[number * size : (number + 1) * size], number, pages, len(entries), size)


def is_within(path: Path, root: Path) -> bool:
    """True when `path` (after resolving links and `..`) lies inside `root`."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except (ValueError, OSError):
        return False
    return True


def thumbnail(entry: Entry | Path, root: Path, size: int = THUMB_SIZE) -> Path:
    """A small WebP copy of a result for the gallery, made once and kept in `root/.thumbs` (written atomically);
    the result itself where the copy cannot be written. Raises ValueError when the result cannot be read."""
    path = entry.path if isinstance(entry, Entry) else Path(entry)
    relative = Path(path).resolve().relative_to(Path(root).resolve())
    thumb = Path(root, THUMBS_DIR, relative).with_suffix(".webp")
    try:
        source_mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ValueError(f"{path.name} could not be read ({exc.strerror or exc}).") from None
    if thumb.is_file() and thumb.stat().st_mtime_ns >= source_mtime:
        return thumb
    try:
        with Image.open(path) as image:
            _check_pixels(image)
            image.thumbnail((size, size), reducing_gap=2.0)
            small = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path.name} could not be read as an image ({exc}).") from None
    buffer = io.BytesIO()
    small.save(buffer, format="WEBP", quality=80)
    try:
        storage.atomic_write_bytes(thumb, buffer.getvalue())
    except OSError:  # a full or read-only outputs disk: show the result itself rather than no History at all
        return path
    return thumb


def remove_stale_temp_files(root: Path, min_age_s: float = STALE_TEMP_S) -> list[Path]:
    """Delete `.tmp-*` files left by writers that crashed or were killed; returns what was removed. Files younger
    than `min_age_s` may belong to a write in progress (in this or another process) and are kept."""
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    cutoff = time.time() - min_age_s
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in files:
            if not name.startswith(TEMP_PREFIX):
                continue
            path = Path(folder, name)
            try:
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue
    return removed


def _check_pixels(image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_PNG_PIXELS:
        raise ValueError(
            f"This image is {width}x{height} pixels, more than any image or contact sheet sd35ui makes "
            f"({MAX_PNG_PIXELS // 2**20} megapixels); it was not opened."
        )


def read_metadata(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(`metadata.read_png_metadata` result, the PNG's text chunks) for a file that may come from anyone: checks
    that it is a PNG of sane size first, and decodes pixels only when the settings are stored after the image
    data. Raises ValueError with a message for the user."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValueError(f"Could not read {path.name}: {exc.strerror or exc}.") from None
    if size > MAX_PNG_BYTES:
        raise ValueError(
            f"{path.name} is {size / 2**20:.0f} MB; PNGs over {MAX_PNG_BYTES // 2**20} MB are not read. Drop the PNG "
            "that sd35ui or another Stable Diffusion tool saved."
        )
    with path.open("rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise ValueError(
                f"{path.name} is not a PNG. Settings travel only in PNG text chunks: JPEG and WebP copies lose them. "
                "Drop the original PNG."
            )
    try:
        with Image.open(path) as image:
            _check_pixels(image)
            if not {metadata.JSON_KEY, metadata.PARAMETERS_KEY} & set(image.info):
                image.load()  # text chunks stored after the image data are read only with it
            text = {k: v for k, v in image.info.items() if isinstance(v, str)}
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path.name} is a damaged PNG and could not be read ({exc}).") from None
    if not {metadata.JSON_KEY, metadata.PARAMETERS_KEY} & set(text):
        return metadata.read_png_metadata(_Info(text)), text  # raises its "no settings" message
    try:
        return metadata.read_png_metadata(_Info(text)), text
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # malformed JSON or A1111 fields
        raise ValueError(f"The settings stored in {path.name} could not be understood ({exc}).") from None


class _Info:
    """Just enough of a PIL image for `metadata.read_png_metadata`: its text chunks."""

    def __init__(self, info: dict[str, str]) -> None:
        self.info = info


def _number_or_note(key: str, value: Any, notes: list[str]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        notes.append(f"The PNG's {key.replace('_', ' ')} is {value!r}, not a number; it was left unchanged.")
        return None
    return value


def generate_values(meta: dict[str, Any], notes: list[str] | None = None) -> dict[str, Any]:
    """Generate-tab values (keys of GENERATE_KEYS) for what a PNG's metadata holds. A1111 text may lack some
    fields, and a damaged file may hold values of the wrong type: those keys are left out (with a line in
    `notes`), so the Generate tab keeps its current values for them."""
    notes = notes if notes is not None else []
    settings: GenerationSettings = meta["settings"]
    present = set(GENERATE_KEYS)
    if meta["source"] == metadata.PARAMETERS_KEY:
        fields = meta.get("extra") or {}
        present = {"prompt", "negative_prompt"}
        present |= {"steps"} if "Steps" in fields else set()
        present |= {"guidance"} if "CFG scale" in fields else set()
        present |= {"seed", "randomize_seed"} if "Seed" in fields else set()
        present |= {"width", "height"} if "Size" in fields else set()
    values: dict[str, Any] = {}
    for key in ("prompt", "negative_prompt"):
        text = getattr(settings, key)
        if isinstance(text, str):
            values[key] = text
        else:
            notes.append(f"The PNG's {key.replace('_', ' ')} is not text; it was left unchanged.")
    for key in ("steps", "guidance", "width", "height", "seed"):
        if key in present and getattr(settings, key) is not None:
            value = _number_or_note(key, getattr(settings, key), notes)
            if value is not None:
                values[key] = value
    if "seed" in values:
        values["randomize_seed"] = False  # the same seed and settings make the same image again
    return values


def check_values(values: dict[str, Any], spec: ModelSpec = SD35_MEDIUM) -> list[str]:
    """What this app's model cannot use as loaded (another tool's size, seed or guidance range), one line each."""
    base = {"prompt": "x", "width": spec.default_size, "height": spec.default_size}
    notes: list[str] = []
    for key in ("prompt", "negative_prompt", "steps", "guidance", "width", "height", "seed"):
        if key in values:
            try:
                GenerationSettings.validated(spec, **{**base, key: values[key]})
            except ValueError as exc:
                notes.append(str(exc))
    return notes


def load_settings(path: Path, spec: ModelSpec = SD35_MEDIUM) -> LoadedSettings:
    """Settings from a PNG (ours or A1111-style) as Generate-tab values, with notes on values that need changing
    for `spec`. Raises ValueError with a message for the user."""
    meta, text = read_metadata(path)
    notes: list[str] = []
    values = generate_values(meta, notes)
    model = meta.get("model")
    if metadata.PARAMETERS_KEY in text:
        parameters = text[metadata.PARAMETERS_KEY]
    else:
        parameters = json.dumps(json.loads(text[metadata.JSON_KEY]), indent=1, ensure_ascii=False)
    model = model if isinstance(model, str) else None
    return LoadedSettings(values, meta["source"], model, parameters, notes + check_values(values, spec))


def caption(entry: Entry, prompt: str | None = None, length: int = 60) -> str:
    """A short gallery caption: time, kind and the start of the prompt."""
    when = f"{entry.created:%Y-%m-%d %H:%M:%S}"
    label = {"sheet": "Sheet", "cell": "Cell"}.get(entry.kind, "")
    text = " ".join((prompt or "").split())
    if len(text) > length:
        text = text[: length - 1] + "…"
    return " · ".join(part for part in (when, label, text) if part)

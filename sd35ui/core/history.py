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
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from sd35ui.core import metadata, storage
from sd35ui.core.quoting import QUOTE_LIMIT, quoted, safe_text
from sd35ui.core.settings import GENERATE_KEYS, PARAM, PARAMS, SD35_MEDIUM, GenerationSettings, ModelSpec

PAGE_SIZE = 48  # gallery items per page: 8 rows of 6 thumbnails
THUMBS_DIR = ".thumbs"  # inside the outputs folder; hidden, so never listed as a result
THUMB_SIZE = 256  # pixels on the long side: a 1024x1024 PNG of 1.5 MB becomes a WebP of about 10 kB
TEMP_PREFIX = ".tmp-"  # storage.atomic_write_bytes writes here first
STALE_TEMP_S = 3600  # a temporary file this old belongs to a writer that crashed or was killed
# A PNG from anyone: over MAX_PNG_BYTES it is not opened (read_metadata); over MAX_PNG_PIXELS, as its header says,
# its settings are not read and no thumbnail is decoded from it. An 8 x 8 sheet of 1024x1024 cells holds 64 Mi px of
# cells (sheet.MAX_SHEET_PIXELS, 192 MiB as RGB); with a two-line title and labels it is 8960 x 8697 = 74 Mi px,
# with generation times under the cells 83 Mi px, and the widest margins (200 px) about 110 Mi px. Its PNG can pass
# 100 MB (a 1024x1024 cell is about 1.5 MB). The limits sit above all of these, so History opens every sheet we make.
MAX_PNG_BYTES = 256 * 2**20
MAX_PNG_PIXELS = 128 * 2**20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Reading a dropped PNG's text chunks: at most this much text from one chunk once decompressed (8 x metadata's
# limits, so text a little over them gets its exact "too long" message), this much from all chunks together, and
# this many chunks walked (encoders write image data in 8-64 kB chunks: a 64 MB PNG has about 8000).
MAX_TEXT_CHUNK_BYTES = 4 * 2**20
MAX_TEXT_BYTES = 16 * 2**20
MAX_PNG_CHUNKS = 100_000

# outputs/YYYY-MM-DD/HHMMSS-<kind>[-<seed>]-<6 hex>[-r<row>c<col>].png (storage.new_path; cells: sheet.cell_path)
_NAME = re.compile(r"^(?P<time>\d{6})-(?P<kind>[a-z]+)(?:-\d+)?-[0-9a-f]{6}(?P<cell>-(?:p\d+)?r\d+c\d+)?$")
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
    # settings valid alone but not together (`GenerationSettings.check_combination`), and what was loaded instead
    changed: list[str] = field(default_factory=list)


def entry_kind(path: Path) -> str:
    """ "image", "sheet", "cell" or "file", from the name sd35ui gives what it saves (`_entry`)."""
    try:
        return _entry(path, path.stat()).kind
    except OSError:
        return "file"


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
    name = safe_text(path.name, QUOTE_LIMIT)  # a file named by someone else, maybe in HTML
    try:
        source_mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ValueError(f"{name} could not be read ({safe_text(exc.strerror or exc)}).") from None
    if thumb.is_file() and thumb.stat().st_mtime_ns >= source_mtime:
        return thumb
    try:
        with Image.open(path) as image:
            _check_pixels(image)
            image.thumbnail((size, size), reducing_gap=2.0)
            small = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{name} could not be read as an image ({safe_text(exc)}).") from None
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


def _inflate(data: bytes, limit: int) -> bytes | None:
    """`data` decompressed, at most `limit` + 1 bytes of it (a zlib bomb stops there), or None when damaged."""
    try:
        return zlib.decompressobj().decompress(data, limit + 1)
    except zlib.error:
        return None


def _text_chunk(kind: bytes, data: bytes, limit: int) -> tuple[str, str | None, str | None]:
    """(keyword, text or None, problem or None) of one tEXt, zTXt or iTXt chunk, decoded as PIL does: tEXt and
    zTXt as Latin-1, iTXt as UTF-8. Compressed text over `limit` bytes is not decompressed further."""
    keyword, _, rest = data.partition(b"\0")
    key = keyword.decode("latin-1")
    chunk = f"its {quoted(key, 79)} text chunk"  # keywords are 1 to 79 characters; a damaged chunk's may be longer
    too_long = f"{chunk} is too long (more than {limit / 2**20:.3g} MB of text)"
    damaged = f"{chunk} is damaged (its compressed text cannot be read)"
    if kind == b"tEXt":
        return key, rest.decode("latin-1"), None
    if kind == b"zTXt":
        if rest[:1] != b"\0":
            return key, None, f"{chunk} uses an unknown compression method"
        raw = _inflate(rest[1:], limit)
        if raw is None or len(raw) > limit:
            return key, None, damaged if raw is None else too_long
        return key, raw.decode("latin-1"), None
    compressed, method, rest = rest[:1], rest[1:2], rest[2:]  # iTXt: flag, method, language, translated keyword
    parts = rest.split(b"\0", 2)
    if len(parts) < 3 or not method:
        return key, None, f"{chunk} is damaged"
    raw = parts[2]
    if compressed != b"\0":
        if method != b"\0":
            return key, None, f"{chunk} uses an unknown compression method"
        inflated = _inflate(raw, limit)
        if inflated is None or len(inflated) > limit:
            return key, None, damaged if inflated is None else too_long
        raw = inflated
    try:
        return key, raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return key, None, f"{chunk} is not valid UTF-8 text"


def read_text_chunks(path: Path) -> dict[str, str]:
    """The text chunks of the PNG at `path` (`png_text_chunks`, no pixels decoded); ValueError if not a PNG."""
    with open(path, "rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise ValueError(f"{safe_text(Path(path).name, QUOTE_LIMIT)} is not a PNG.")
        return png_text_chunks(f)[0]


def png_text_chunks(f: BinaryIO) -> tuple[dict[str, str], list[str]]:
    """Every tEXt, zTXt and iTXt chunk of the PNG open in `f` (positioned just after the signature), wherever it
    lies, as {keyword: text}, and a line for each problem met (a chunk too long, damaged or cut short).

    Written by hand because PIL reads the text chunks stored after the image data only by decoding the image
    (`Image.load()`): a 315 kB PNG that claims 9000x9000 RGBA pixels made it allocate 300 MB to reach one line of
    text. This walks the chunks (length, type, data, CRC), reads only text chunks and seeks past the rest; memory
    is bounded by MAX_TEXT_CHUNK_BYTES per chunk and MAX_TEXT_BYTES in all, time by MAX_PNG_CHUNKS."""
    texts: dict[str, str] = {}
    problems: list[str] = []
    budget = MAX_TEXT_BYTES
    for _ in range(MAX_PNG_CHUNKS):
        head = f.read(8)
        if len(head) < 8:
            problems.append("it ends before its last chunk (IEND): the file is cut short")
            break
        length, kind = struct.unpack(">I4s", head)
        name = kind.decode("latin-1") if kind.isalpha() else quoted(kind)
        if kind == b"IEND":
            break
        if length >= 2**31:  # the PNG format's own limit
            problems.append(f"a {name} chunk claims an impossible length")
            break
        limit = min(MAX_TEXT_CHUNK_BYTES, budget)
        if kind not in (b"tEXt", b"zTXt", b"iTXt") or length > limit + 80:  # 80: keyword and iTXt header
            if kind in (b"tEXt", b"zTXt", b"iTXt"):
                key = f.read(80).partition(b"\0")[0].decode("latin-1")
                problems.append(f"its {quoted(key, 79)} text chunk is too long ({length} bytes)")
                length -= 80
            f.seek(length + 4, os.SEEK_CUR)  # data and CRC; past the end of the file, the next read says so
            continue
        data = f.read(length)
        crc = f.read(4)
        if len(crc) < 4:
            problems.append(f"it is cut short in the middle of a {name} chunk")
            break
        if zlib.crc32(kind + data) != int.from_bytes(crc, "big"):
            problems.append(f"a {name} chunk is damaged (its checksum does not match)")
            continue
        key, text, problem = _text_chunk(kind, data, limit)
        if problem:
            problems.append(problem)
        elif key and text is not None:
            texts[key] = text
            budget -= len(text)
    else:
        problems.append(f"it has more than {MAX_PNG_CHUNKS} chunks; the rest were not read")
    return texts, problems


def read_metadata(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(`metadata.read_png_metadata` result, the PNG's text chunks) for a file that may come from anyone: checks
    that it is a PNG of sane size first, and never decodes its pixels (`png_text_chunks` reads text chunks stored
    after the image data too). Raises ValueError with a message for the user."""
    path = Path(path)
    name = safe_text(path.name, QUOTE_LIMIT)  # a dropped file is named by whoever sent it, maybe in HTML
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValueError(f"Could not read {name}: {safe_text(exc.strerror or exc)}.") from None
    if size > MAX_PNG_BYTES:
        raise ValueError(
            f"{name} is {size / 2**20:.0f} MB; PNGs over {MAX_PNG_BYTES // 2**20} MB are not read. Drop the PNG "
            "that sd35ui or another Stable Diffusion tool saved."
        )
    with path.open("rb") as f:
        if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise ValueError(
                f"{name} is not a PNG. Settings travel only in PNG text chunks: JPEG and WebP copies lose them. "
                "Drop the original PNG."
            )
        try:
            # PIL checks the header and the chunks before the image data (their checksums, its own limits on
            # compressed text) and decodes no pixels. Not Image.open: it hides why a PNG is refused.
            f.seek(0)
            image = PngImagePlugin.PngImageFile(f)
        except ValueError as exc:  # PIL's limits on text: 1 MB a compressed chunk, 64 MB in all
            too_long = f"The settings in {name} could not be read: its text is too long ({safe_text(exc)})."
            raise ValueError(too_long) from None
        except (OSError, SyntaxError) as exc:
            raise ValueError(f"{name} is a damaged PNG and could not be read ({safe_text(exc)}).") from None
        _check_pixels(image)
        f.seek(len(PNG_SIGNATURE))
        text, problems = png_text_chunks(f)
    wanted = {metadata.JSON_KEY, metadata.PARAMETERS_KEY}
    if not wanted & set(text) and problems:
        problem = "; ".join(dict.fromkeys(problems))  # each quotes the file's text with `quoted`
        raise ValueError(f"The settings in {name} could not be read: {problem}.")
    if not wanted & set(text):
        return metadata.read_png_metadata(_Info(text)), text  # raises its "no settings" message
    try:
        return metadata.read_png_metadata(_Info(text)), text
    except metadata.TextTooLong:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # malformed JSON or A1111 fields
        # the error quotes the file (a key, a value that is not a number) as Python does: `safe_text` makes it safe
        raise ValueError(f"The settings stored in {name} could not be understood ({safe_text(exc)}).") from None


class _Info:
    """Just enough of a PIL image for `metadata.read_png_metadata`: its text chunks."""

    def __init__(self, info: dict[str, str]) -> None:
        self.info = info


def _choice_or_note(key: str, value: Any, notes: list[str]) -> str | None:
    """`value` as one of the setting's choices, else None with a line in `notes` (another tool's sampler)."""
    try:
        return PARAM[key].choice(value)
    except ValueError:
        choices = ", ".join(PARAM[key].choices)
        notes.append(f"The PNG's {key}, {quoted(value)}, is not one this app has ({choices}); it was left unchanged.")
        return None


def _layers_or_note(key: str, value: Any, notes: list[str], spec: ModelSpec) -> str | None:
    """`value` as layers of `spec`'s transformer ("7, 8, 9"; "" for the model's own), else None with a note."""
    try:
        return PARAM[key].check(value if isinstance(value, (str, list)) else str(value), spec)
    except ValueError as exc:
        notes.append(f"{exc} The PNG's {key.replace('_', ' ')} was left unchanged.")
        return None


def _number_or_note(key: str, value: Any, notes: list[str], spec: ModelSpec = SD35_MEDIUM) -> Any:
    """`value` when `key` can take it in this app (a finite number in its range, for `spec`'s sizes), else None
    with a line in `notes`: Gradio cannot even send some (a seed of 2**64 or more), and the rest would fail."""
    label = key.replace("_", " ")
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))  # ints of any size
    if isinstance(value, bool) or not finite:
        notes.append(f"The PNG's {label} is {quoted(value)}, not a number; it was left unchanged.")
        return None
    rng = PARAM[key].range_for(spec)
    if not rng.minimum <= value <= rng.maximum:  # exact for ints of any size
        where = f" for {spec.name}" if key in ("width", "height") else ""
        notes.append(
            f"The PNG's {label}, {quoted(value)}, is outside the valid range {rng.describe()}{where}; "
            "it was left unchanged."
        )
        return None
    try:  # whole numbers, sizes in multiples of 16
        GenerationSettings.validated(
            spec, **{"prompt": "x", "width": spec.default_size, "height": spec.default_size, key: value}
        )
    except ValueError as exc:
        notes.append(f"{exc} The PNG's {label} was left unchanged.")
        return None
    return value


def generate_values(
    meta: dict[str, Any], notes: list[str] | None = None, spec: ModelSpec = SD35_MEDIUM
) -> dict[str, Any]:
    """Generate-tab values (keys of GENERATE_KEYS) for what a PNG's metadata holds. A1111 text may lack some
    fields, and a damaged file or another tool's may hold values of the wrong type or outside this app's ranges
    (`spec`'s sizes): those keys are left out (with a line in `notes`), so the Generate tab keeps its current
    values for them."""
    notes = notes if notes is not None else []
    settings: GenerationSettings = meta["settings"]
    present = set(GENERATE_KEYS)
    if meta["source"] == metadata.PARAMETERS_KEY:
        fields = meta.get("extra") or {}  # the A1111 keys of the parameter table that this text holds
        present = {p.name for p in PARAMS if p.kind == "text" or p.a1111 in fields}
    values: dict[str, Any] = {}
    for key in ("prompt", "negative_prompt"):
        text = getattr(settings, key)
        if isinstance(text, str):
            values[key] = text
        else:
            notes.append(f"The PNG's {key.replace('_', ' ')} is not text; it was left unchanged.")
    for key in (p.name for p in PARAMS if p.kind != "text"):
        if key in present and getattr(settings, key) is not None:
            if PARAM[key].choices:
                value = _choice_or_note(key, getattr(settings, key), notes)
            elif PARAM[key].kind == "layers":
                value = _layers_or_note(key, getattr(settings, key), notes, spec)
            else:
                value = _number_or_note(key, getattr(settings, key), notes, spec)
            if value is not None:
                values[key] = value
    if "seed" in values:
        values["randomize_seed"] = False  # the same seed and settings make the same image again
    return values


def check_values(values: dict[str, Any], spec: ModelSpec = SD35_MEDIUM) -> list[str]:
    """What this app's model cannot use as loaded (another tool's size, seed or guidance range), one line each."""
    base = {"prompt": "x", "width": spec.default_size, "height": spec.default_size}
    notes: list[str] = []
    for key in PARAM:
        if key in values:
            try:
                GenerationSettings.validated(spec, **{**base, key: values[key]})
            except ValueError as exc:
                notes.append(str(exc))
    return notes


# What a loaded setting that does not go with the others is replaced by, tried in order, and how the change is told:
# a schedule other than Default needs the Euler sampler (DPM++ 2M and Heun space their own steps), so the file's
# sampler is kept and its schedule made Default; skip-layer guidance that stops before it starts is loaded off.
COMBINATION_FALLBACKS: tuple[tuple[str, Any, str], ...] = (
    ("schedule", "Default", "the Default schedule"),
    ("slg_scale", 0.0, "skip-layer guidance off (scale 0)"),
)


def _combination_problem(values: dict[str, Any]) -> str | None:
    """Why the loaded `values` (with the settings' defaults for the rest) do not go together, or None."""
    given = {key: value for key, value in values.items() if key in PARAM}
    try:
        GenerationSettings(**{"prompt": "x", **given}).check_combination()
    except ValueError as exc:
        return str(exc)
    return None


def combine_values(values: dict[str, Any]) -> list[str]:
    """Make loaded `values` go together as Generate checks them (`GenerationSettings.check_combination`), in place:
    a setting of COMBINATION_FALLBACKS that is part of the problem gets its fallback. Returns a line per change,
    saying what was wrong and what was loaded instead; raises ValueError when that does not help (nothing loaded)."""
    changed: list[str] = []
    for key, fallback, shown in COMBINATION_FALLBACKS:
        problem = _combination_problem(values)
        if problem is None:
            break
        if key in values and values[key] != fallback and _combination_problem({**values, key: fallback}) != problem:
            label = PARAM[key].label.lower()
            changed.append(f"{problem} Loaded {shown} in place of the PNG's {label}, {quoted(values[key])}.")
            values[key] = fallback
    problem = _combination_problem(values)
    if problem is not None:
        raise ValueError(f"The PNG's settings do not go together, so none were loaded. {problem}")
    return changed


def load_settings(path: Path, spec: ModelSpec = SD35_MEDIUM) -> LoadedSettings:
    """Settings from a PNG (ours or A1111-style) as Generate-tab values, with notes on values that need changing
    for `spec`. Raises ValueError with a message for the user."""
    meta, text = read_metadata(path)
    notes: list[str] = []
    values = generate_values(meta, notes, spec)
    model = meta.get("model")
    if metadata.PARAMETERS_KEY in text:
        parameters = text[metadata.PARAMETERS_KEY]
    else:
        try:
            parameters = json.dumps(json.loads(text[metadata.JSON_KEY]), indent=1, ensure_ascii=False)
        except RecursionError:  # nested too deeply to indent (read_metadata parsed it, so it is JSON)
            parameters = text[metadata.JSON_KEY]
    model = model if isinstance(model, str) else None
    changed = combine_values(values)
    return LoadedSettings(values, meta["source"], model, parameters, notes + check_values(values, spec), changed)


def caption(entry: Entry, prompt: str | None = None, length: int = 60) -> str:
    """A short gallery caption: time, kind and the start of the prompt."""
    when = f"{entry.created:%Y-%m-%d %H:%M:%S}"
    label = {"sheet": "Sheet", "cell": "Cell"}.get(entry.kind, "")
    text = " ".join((prompt or "").split())
    if len(text) > length:
        text = text[: length - 1] + "…"
    return " · ".join(part for part in (when, label, text) if part)

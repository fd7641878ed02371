"""Where saved sheet cells are, by what made them: the lookup behind resume.

A cell is known by its `cell_key` (exact settings, model, load recipe). Every folder that holds sheet cells keeps an
index of them, `.sd35ui-cells.jsonl`: one line per saved cell, `{"key": <sha256 of the key>, "file": <name>}`,
appended by `remember` as the cell is saved (one write each, so two sheets saving at once never interleave a
line). `CellIndex(root)` reads the index of each folder under `root` (one folder deep, as `storage.new_path` lays
them out) instead of every cell PNG; a folder without one (cells saved by sd35ui before this index existed) is read
once, PNG by PNG, and its index written, so resuming those cells keeps working.

The index only says where to look. `CellIndex.get` checks the file it names still carries that exact key (its text
chunks, no pixels) before handing it out; `sheet.read_cell_image` then checks the pixels. A stale line (a cell
deleted or overwritten since) therefore means the cell is made again, never a wrong one used. Symlinks, to files or
to folders, are passed over, as History does: resume reads only what this app wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sd35ui.core import history, metadata, storage
from sd35ui.core.settings import GenerationSettings

INDEX_NAME = ".sd35ui-cells.jsonl"
# A sheet cell's file name (`sheet.cell_file`): `<sheet>-r2c3.png` or `<sheet>-p2r2c3.png`. Names starting with a dot
# (`storage.atomic_write_bytes`' temporary files, which may match the rest) are never cells.
CELL_FILE = re.compile(r"^[^.].*-(?:p\d+)?r\d+c\d+\.png$")
MAX_INDEX_BYTES = 64 * 2**20  # about 500,000 cells in one day's folder; a larger index is read as none (rebuilt)


def cell_key(settings: GenerationSettings, model: str, recipe: Mapping[str, Any]) -> str:
    """What makes a cell's pixels: its exact settings, the model and how it was loaded."""
    return json.dumps([settings.to_dict(), model, dict(recipe)], sort_keys=True)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def remember(path: Path, key: str) -> None:
    """Add the cell just saved at `path` to its folder's index. A failure (a full disk) leaves the cell saved and
    only unindexed: it is then made again by a resume rather than reused. The first cell saved in a folder of an
    earlier version's cells indexes those first."""
    if not (path.parent / INDEX_NAME).exists():
        _index_folder(path.parent)
    _append(path.parent / INDEX_NAME, json.dumps({"key": digest(key), "file": path.name}) + "\n")


def key_of(path: Path) -> str | None:
    """The `cell_key` a saved cell's PNG carries (read from its text chunks, no pixels decoded), or None."""
    try:
        payload = json.loads(history.read_text_chunks(path)[metadata.JSON_KEY])
        settings = GenerationSettings(**payload["settings"])
        return cell_key(settings, payload["model"], payload.get("recipe") or {})
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


class CellIndex(Mapping[str, Path]):
    """The saved cells under `root` by `cell_key`, the newest file for each key; built from the folders' indexes
    (see the module). `get(key)` (and `[key]`) answer only with a file that still carries `key`."""

    def __init__(self, root: Path) -> None:
        self._files: dict[str, Path] = {}  # digest -> file; later lines (newer cells) win
        for folder in _entries(root):
            if folder.is_dir(follow_symlinks=False):
                self._files.update(_folder_index(Path(folder.path)))

    def __getitem__(self, key: str) -> Path:
        path = self._files.get(digest(key))
        if path is None or path.is_symlink() or key_of(path) != key:
            raise KeyError(key)
        return path

    def __iter__(self) -> Iterator[str]:  # the keys themselves are not kept (only their digests): read them back
        for path in self._files.values():
            key = key_of(path)
            if key is not None and self._files.get(digest(key)) == path:
                yield key

    def __len__(self) -> int:  # reads every indexed file, as iterating does: for tests and tools, not for resume
        return sum(1 for _ in self)

    def __bool__(self) -> bool:  # cheap: whether any cell is indexed at all (resume asks this first)
        return bool(self._files)


def _folder_index(folder: Path) -> dict[str, Path]:
    """digest -> file for one folder: its index, or (none yet) the folder read PNG by PNG and the index written."""
    index = folder / INDEX_NAME
    try:
        if index.is_symlink() or index.stat().st_size > MAX_INDEX_BYTES:
            return {}
        text = index.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return _index_folder(folder)
    except OSError:
        return {}
    found: dict[str, Path] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            name = entry["file"]
            if isinstance(name, str) and CELL_FILE.match(name) and "/" not in name and isinstance(entry["key"], str):
                found[entry["key"]] = folder / name
        except (ValueError, KeyError, TypeError, RecursionError):  # a line cut short by a crash, or not ours
            continue
    return found


def _index_folder(folder: Path) -> dict[str, Path]:
    """Read every cell PNG of a folder that has no index yet (oldest first, so the newest file of a key wins) and
    write the index, so the folder is read this way once."""
    candidates: list[tuple[int, str]] = []
    for entry in _entries(folder):
        try:
            if CELL_FILE.match(entry.name) and entry.is_file(follow_symlinks=False):
                candidates.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
        except OSError:  # gone since the folder was listed
            continue
    found: dict[str, Path] = {}
    for _, name in sorted(candidates):
        key = key_of(folder / name)
        if key is not None:
            found[digest(key)] = folder / name
    if found and not (folder / INDEX_NAME).exists():  # another sheet may have written it meanwhile: keep theirs
        _append(folder / INDEX_NAME, "".join(json.dumps({"key": k, "file": p.name}) + "\n" for k, p in found.items()))
    return found


def _append(index: Path, lines: str) -> None:
    """Append `lines` to `index` in one write on a file opened for appending: on a local file system the write lands
    whole at the end, so two sheets saving at once never interleave a line (written by hand: no library offers an
    append-only log this small). Never through a symlink."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    with contextlib.suppress(OSError):
        fd = os.open(index, flags, storage.FILE_MODE)
        try:
            os.write(fd, lines.encode("utf-8"))
        finally:
            os.close(fd)


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of `folder`, or none when it cannot be listed (missing, not a folder, no permission)."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []

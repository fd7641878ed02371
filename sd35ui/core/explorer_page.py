"""The sheet explorer: one self-contained HTML page (`index.html`) written beside a sheet's cell PNGs.

The page is `explorer_page.html` (inline CSS and vanilla JavaScript, no URL of any kind, no fetch) with the sheet's
manifest embedded as JSON in a `<script type="application/json" id="manifest">` tag. It works opened straight from
disk (file://), offline: the viewer picks which axis runs across (X), down (Y) and which are outer (one sub-grid per
combination of outer values), hides values, zooms or fits the grid to the window, opens a cell large with its
settings, and compares two cells A/B with a slider or as a difference.

The manifest (`ExplorerManifest`; plain JSON-ready dicts, checked by `check_manifest`)::

    {
      "title": "a red fox\\n...",          # may span lines
      "model": "stabilityai/stable-diffusion-3.5-medium",
      "axes": [                           # 1 to MAX_AXES
        {"name": "Steps", "values": [10, 20], "labels": ["Steps: 10", "Steps: 20"]},
        {"name": "Sampler", "values": ["Euler", "Heun"], "labels": ["Sampler: Euler", "Sampler: Heun"]},
      ],
      "cells": [                          # any order; a combination left out (not made, stopped) shows grey
        {"file": "sheet-r1c1.png",        # a file name beside index.html (no folders)
         "coords": [0, 1],                # per axis, the index into its values
         "width": 64, "height": 64,       # the PNG's size in pixels
         "settings": {"steps": 10, ...},  # optional: flat setting name -> value, shown as a table
         "seconds": 1.23},                # optional: generation time
      ],
      "arrangement": {"x": 0, "y": 1, "outer": []},  # the first view: every axis exactly once
      "distances": {...},                 # optional, any JSON: kept in the page, not drawn
    }

The A/B slider and the difference view (the two images stacked with CSS `mix-blend-mode: difference`, optionally
brightened) need no pixel access, so they work from file://. The difference as a number (`distance.image_distance`,
percent mean absolute difference) needs the pixels through a canvas, which Chrome refuses for pages opened from
file:// (every local file is its own origin, so the canvas is "tainted"); there the page says so and how to get it
(serve the folder, e.g. `python -m http.server`).

The template is read when a page is written (nothing at import), from beside this module: it is package data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypedDict

from sd35ui.core import storage

TEMPLATE = Path(__file__).with_name("explorer_page.html")
PAGE_NAME = "index.html"
MAX_AXES = 4  # X, Y and two outer axes: beyond that the sub-grids stop being readable
MANIFEST_ID = "manifest"  # the id of the <script type="application/json"> holding the manifest
_PLACEHOLDER = re.compile(r"\{\{(TITLE|MANIFEST)\}\}")
_MANIFEST_TAG = re.compile(r'<script type="application/json" id="manifest">(.*?)</script>', re.DOTALL)
# Inside <script>, "</script" ends the tag and "<!--" changes how the parser looks for the end, whatever the
# JSON means; escaping every <, > and & (and the two line separators older JavaScript rejects) as \uXXXX keeps the
# text inert and still the same JSON.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


class ExplorerAxis(TypedDict):
    name: str  # "Steps", "Guidance", "Sampler", ...
    values: list[Any]  # the axis values, in sheet order
    labels: list[str]  # one label per value, as the sheet picture writes it ("Steps: 10")


class _CellRequired(TypedDict):
    file: str  # a file name in the page's folder
    coords: list[int]  # per axis, the index into its values
    width: int
    height: int


class ExplorerCell(_CellRequired, total=False):
    settings: dict[str, Any]  # flat setting name -> value
    seconds: float | None  # generation time


class Arrangement(TypedDict):
    x: int  # the axis across
    y: int | None  # the axis down, or None for a single row
    outer: list[int]  # the remaining axes, outermost first: one sub-grid per combination of their values


class _ManifestRequired(TypedDict):
    title: str
    model: str
    axes: list[ExplorerAxis]
    cells: list[ExplorerCell]
    arrangement: Arrangement


class ExplorerManifest(_ManifestRequired, total=False):
    distances: Any  # optional, carried into the page unchanged


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_index(value: Any, size: int) -> bool:
    return _is_int(value) and 0 <= value < size


def _check_axes(axes: Any) -> None:
    if not isinstance(axes, list) or not 1 <= len(axes) <= MAX_AXES:
        count = len(axes) if isinstance(axes, list) else type(axes).__name__
        raise ValueError(f"The manifest needs 1 to {MAX_AXES} axes in a list, got {count}.")
    names: set[str] = set()
    for number, axis in enumerate(axes):
        if not isinstance(axis, dict) or not isinstance(axis.get("name"), str) or not axis["name"]:
            raise ValueError(f"Axis {number} needs a non-empty 'name'.")
        name = axis["name"]
        if name in names:
            raise ValueError(f"Two axes are named {name!r}: axis names must differ.")
        names.add(name)
        values, labels = axis.get("values"), axis.get("labels")
        if not isinstance(values, list) or not values:
            raise ValueError(f"Axis {name!r} needs a non-empty list of 'values'.")
        if not isinstance(labels, list) or len(labels) != len(values) or not all(isinstance(s, str) for s in labels):
            raise ValueError(f"Axis {name!r} needs one text label per value ({len(values)}) in 'labels'.")


def _check_arrangement(arrangement: Any, n_axes: int) -> None:
    if not isinstance(arrangement, dict):
        raise ValueError("The manifest needs an 'arrangement': {'x': axis, 'y': axis or None, 'outer': [axes]}.")
    x, y, outer = arrangement.get("x"), arrangement.get("y"), arrangement.get("outer")
    placed = [x] + ([y] if y is not None else []) + (outer if isinstance(outer, list) else [None])
    if not all(_is_index(a, n_axes) for a in placed) or sorted(placed) != list(range(n_axes)):
        raise ValueError(
            f"The arrangement must place each of the {n_axes} axes (0 to {n_axes - 1}) exactly once as X, Y or "
            f"outer; got x={x!r}, y={y!r}, outer={outer!r}."
        )


def _check_cell(cell: Any, number: int, axes: list[ExplorerAxis]) -> tuple[int, ...]:
    if not isinstance(cell, dict):
        raise ValueError(f"Cell {number} is not a dict.")
    file = cell.get("file")
    if not isinstance(file, str) or file in ("", ".", "..") or "/" in file or "\\" in file:
        raise ValueError(
            f"Cell {number}'s file {file!r} must be a plain file name beside index.html (no folders, no URL)."
        )
    coords = cell.get("coords")
    sizes = [len(axis["values"]) for axis in axes]
    if not isinstance(coords, list) or len(coords) != len(axes) or not all(map(_is_index, coords, sizes)):
        raise ValueError(
            f"Cell {number} ({file}) needs 'coords' with one index per axis into its values (sizes {sizes}), "
            f"got {coords!r}."
        )
    for key in ("width", "height"):
        if not _is_int(cell.get(key)) or cell[key] < 1:
            raise ValueError(f"Cell {number} ({file}) needs its '{key}' in pixels, got {cell.get(key)!r}.")
    if not isinstance(cell.get("settings", {}), dict):
        raise ValueError(f"Cell {number} ({file}): 'settings' must be a dict of setting name -> value.")
    return tuple(coords)


def check_manifest(manifest: Any) -> None:
    """Raise ValueError, saying what is wrong, unless `manifest` has the shape the module docstring describes."""
    if not isinstance(manifest, dict):
        raise ValueError(f"The manifest must be a dict, got {type(manifest).__name__}.")
    for key in ("title", "model"):
        if not isinstance(manifest.get(key), str):
            raise ValueError(f"The manifest needs a text '{key}'.")
    axes = manifest.get("axes")
    _check_axes(axes)
    _check_arrangement(manifest.get("arrangement"), len(axes))
    cells = manifest.get("cells")
    if not isinstance(cells, list):
        raise ValueError("The manifest needs a list of 'cells' (it may be empty).")
    seen: dict[tuple[int, ...], int] = {}
    for number, cell in enumerate(cells):
        coords = _check_cell(cell, number, axes)
        if coords in seen:
            raise ValueError(f"Cells {seen[coords]} and {number} have the same coords {list(coords)}.")
        seen[coords] = number


def manifest_json(manifest: ExplorerManifest) -> str:
    """The manifest as JSON that is safe inside a <script> element: no '<', '>' or '&' characters at all."""
    try:
        text = json.dumps(manifest, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:  # a non-JSON value, or NaN/inf, which JSON.parse rejects
        raise ValueError(f"The manifest cannot be written as JSON: {error}") from error
    return "".join(_SCRIPT_ESCAPES.get(char, char) for char in text)


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def explorer_html(manifest: ExplorerManifest) -> str:
    """The explorer page for `manifest` (see the module docstring), as one self-contained HTML document."""
    check_manifest(manifest)
    lines = manifest["title"].strip().splitlines()
    title = f"{lines[0] if lines else 'Contact sheet'} - sd35ui sheet explorer"
    parts = {"TITLE": _html_text(title), "MANIFEST": manifest_json(manifest)}
    # one pass, so that a title containing "{{MANIFEST}}" is text, never a second placeholder
    return _PLACEHOLDER.sub(lambda match: parts[match.group(1)], TEMPLATE.read_text(encoding="utf-8"))


def read_manifest(page: str) -> dict[str, Any]:
    """The manifest embedded in an explorer page (the inverse of `explorer_html`)."""
    match = _MANIFEST_TAG.search(page)
    if match is None:
        raise ValueError(f'No <script type="application/json" id="{MANIFEST_ID}"> in this page.')
    return json.loads(match.group(1))


def write_explorer(folder: Path, manifest: ExplorerManifest) -> Path:
    """Write the explorer page as `folder`/index.html (beside the cell PNGs the manifest names), atomically, so a
    browser reloading it while a sheet runs sees the old page or the new one; return its path.

    The files the manifest names are not checked: a missing one shows as a broken image, not an error, so the
    page can be rewritten as cells finish."""
    return storage.atomic_write_bytes(Path(folder) / PAGE_NAME, explorer_html(manifest).encode("utf-8"))

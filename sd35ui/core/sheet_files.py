"""A contact sheet's files: its description (the `sd35ui-sheet` JSON in the PNG and the explorer page's manifest),
what changes along each numeric axis, and saving the sheet, its cells, its page and its zip. Part of the sheet
engine, whose front is `sd35ui.core.sheet`; loading a sheet back is `sd35ui.core.explore.load_sheet`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from PIL import PngImagePlugin

from sd35ui.core import cells, explorer_page, metadata, storage
from sd35ui.core.axes import (
    SCRIPT_NAME,
    SHEET_JSON_KEY,
)
from sd35ui.core.cells import cell_key
from sd35ui.core.settings import PARAM
from sd35ui.core.sheet_draw import title_text
from sd35ui.core.sheet_plan import (
    Cell,
    SheetSpec,
    coords,
)
from sd35ui.core.sheet_run import (
    CellResult,
    SheetResult,
)


def numeric_axes(spec: SheetSpec) -> list[int]:
    """Indices into `spec.axes()` of the axes whose values are ordered numbers (steps, guidance, shift, the
    skip-layer settings; not seeds, which are only names for noise)."""
    return [i for i, axis in enumerate(spec.axes()) if axis.kind in PARAM and PARAM[axis.kind].kind == "number"]


def axis_changes(result: SheetResult) -> dict[str, dict[str, list[float | None]]]:
    """What changes along each numeric axis: for each value, the mean distance (`distance.image_distance`, percent
    mean absolute difference) from its cell to the next value's cell, over every pair of neighbours whose other
    axes' values agree, and the mean seconds of its cells. None where no pair (or cell) was made."""
    from sd35ui.core import distance

    spec = result.spec
    by_coords = {coords(spec, d.cell): d for d in result.cells}
    changes: dict[str, dict[str, list[float | None]]] = {}
    for a in numeric_axes(spec):
        axis = spec.axes()[a]
        steps: list[list[float]] = [[] for _ in axis.values[:-1]]
        seconds: list[list[float]] = [[] for _ in axis.values]
        for place, done in by_coords.items():
            seconds[place[a]].append(done.seconds)
            if place[a] + 1 < len(axis.values):
                following = by_coords.get(place[:a] + (place[a] + 1,) + place[a + 1 :])
                if following is not None and following.image.size == done.image.size:
                    steps[place[a]].append(distance.image_distance(done.image, following.image))
        changes[axis.label] = {
            "values": [float(v) for v in axis.values],
            "distance_to_next": [_mean(d) for d in steps],
            "seconds": [_mean(t) for t in seconds],
        }
    return changes


def _mean(numbers: list[float]) -> float | None:
    return round(sum(numbers) / len(numbers), 4) if numbers else None


def sheet_parameters(spec: SheetSpec) -> dict[str, str]:
    """A1111's grid fields: Script, X Type, X Values (and Y)."""
    fields = {"Script": SCRIPT_NAME, "X Type": spec.x.label, "X Values": spec.x.text()}
    if spec.y is not None:
        fields.update({"Y Type": spec.y.label, "Y Values": spec.y.text()})
    for which, axis in zip(("Z", "W"), spec.outer):  # A1111 has Z; W is ours, in the same form
        fields.update({f"{which} Type": axis.label, f"{which} Values": axis.text()})
    return fields


def sheet_description(result: SheetResult) -> dict[str, Any]:
    """Everything about a sheet as JSON-ready data: axes, fixed settings, layout options and every cell."""
    spec = result.spec
    varied = {axis.kind for axis in spec.axes()}
    varied |= {"width", "height"} if "size" in varied else set()
    varied |= {"negative_prompt"} if "negative" in varied else set()
    fixed = {k: v for k, v in spec.base.to_dict().items() if k not in varied}
    return {
        "script": SCRIPT_NAME,
        "model": result.model,
        "x": spec.x.to_dict(),
        "y": spec.y.to_dict() if spec.y is not None else None,
        "outer": [axis.to_dict() for axis in spec.outer],
        "base": spec.base.to_dict(),
        "fixed": fixed,
        "options": {"show_times": spec.show_times, "margin": spec.margin, "legend": spec.legend, "swap": spec.swap},
        "rows": spec.rows,
        "cols": spec.cols,
        "pages": spec.pages,
        "stopped": result.stopped,
        "seconds": round(result.seconds, 3),
        "cells": [
            {
                "row": d.cell.row,
                "col": d.cell.col,
                "page": d.cell.page,
                "settings": d.settings.to_dict(),
                "seconds": round(d.seconds, 3),
                "reused": d.reused,
            }
            for d in sorted(result.cells, key=lambda d: d.cell.index)
        ],
        "changes": axis_changes(result),
    }


def sheet_png_info(result: SheetResult) -> PngImagePlugin.PngInfo:
    """A1111 `parameters` (first cell's settings + the X/Y plot fields), our JSON chunk, and the sheet as JSON."""
    first = min(result.cells, key=lambda d: d.cell.index) if result.cells else None
    settings = first.settings if first is not None else result.spec.base
    recipe = first.result.recipe if first is not None else None
    info = metadata.png_info(settings, result.model, sheet_parameters(result.spec), recipe)
    info.add_text(SHEET_JSON_KEY, json.dumps(sheet_description(result), ensure_ascii=False))
    return info


def explore_manifest(result: SheetResult, sheet_path: Path) -> dict[str, Any]:
    """The explorer page's manifest for `result`, whose cells are saved beside `sheet_path` (`sheet.cell_path`)."""
    spec = result.spec
    axes = spec.axes()
    has_y = spec.y is not None
    x, y = (1, 0) if spec.swap and has_y else (0, 1 if has_y else None)
    return {
        "title": title_text(spec, result.model),
        "model": result.model,
        "axes": [
            {"name": axis.label, "values": [_plain(v) for v in axis.values], "labels": axis.labels()} for axis in axes
        ],
        "cells": [
            {
                "file": cell_path(done, sheet_path).name,
                "coords": list(coords(spec, done.cell)),
                "width": done.image.width,
                "height": done.image.height,
                "settings": done.settings.to_dict(),
                "seconds": round(done.seconds, 3),
            }
            for done in sorted(result.cells, key=lambda d: d.cell.index)
        ],
        "arrangement": {"x": x, "y": y, "outer": list(range(2 if has_y else 1, len(axes)))},
        "distances": axis_changes(result),
    }


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) else str(value)


def cell_path(done: CellResult, sheet_path: Path) -> Path:
    """Where a cell of the sheet at `sheet_path` is saved: beside it, named by row and column."""
    return cell_file(done.cell, sheet_path)


def cell_file(cell: Cell, sheet_path: Path) -> Path:
    """`cell_path` of a planned cell: `<sheet>-r2c3.png`, with outer axes `<sheet>-p2r2c3.png` (sub-sheet 2)."""
    page = f"p{cell.page + 1}" if cell.paged else ""
    return sheet_path.with_name(f"{sheet_path.stem}-{page}r{cell.row + 1}c{cell.col + 1}.png")


def save_cell(done: CellResult, sheet_path: Path) -> Path:
    """Write one finished cell (with its own exact settings) beside the sheet it belongs to, atomically, so a
    stopped or crashed sheet keeps every cell made so far. A reused cell is not written again: its name beside
    this sheet is a hard link to the file it was read from (`storage.link_or_copy`), so the sheet's folder stays
    whole while resumed sheets add no bytes, and the link never counts as a newer copy."""
    path = cell_path(done, sheet_path)
    if done.source is not None and done.source.resolve() == path.resolve():
        return path
    if done.source is not None:
        storage.link_or_copy(done.source, path, "The sheet cell")
    else:
        storage.save_png(done.image, metadata.result_png_info(done.result), path)
    cells.remember(path, cell_key(done.settings, done.result.model, done.result.recipe))  # for resume
    return path


def save_sheet(
    result: SheetResult, root: Path | None = None, sheet_path: Path | None = None
) -> tuple[Path, list[Path], Path]:
    """Write the sheet PNG, one PNG per finished cell (each with its own settings), the explorer page
    (`<sheet>.html` beside them; `index.html` in the zip) and a zip of them all, each atomically. Cells already
    written by `save_cell` for the same `sheet_path` are reused, not written again. Returns (sheet path, cell paths
    in generation order, zip path)."""
    sheet_path = sheet_path or storage.new_path("sheet", result.spec.base.seed, root)
    sheet_bytes = storage.png_bytes(result.image(), sheet_png_info(result))
    storage.save_bytes(sheet_path, sheet_bytes, "The sheet")
    cell_paths: list[Path] = []
    members: list[tuple[str, bytes]] = [(sheet_path.name, sheet_bytes)]
    for done in sorted(result.cells, key=lambda d: d.cell.index):
        path = cell_path(done, sheet_path)
        if not path.is_file():
            save_cell(done, sheet_path)
        cell_paths.append(path)
        members.append((path.name, path.read_bytes()))
    page = explorer_page.explorer_html(explore_manifest(result, sheet_path)).encode("utf-8")
    storage.save_bytes(sheet_path.with_suffix(".html"), page, "The sheet's explorer page")  # beside the cells
    members.append((explorer_page.PAGE_NAME, page))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are already compressed
        for name, data in members:
            archive.writestr(name, data)
    zip_path = storage.save_bytes(sheet_path.with_suffix(".zip"), buffer.getvalue(), "The sheet's zip")
    return sheet_path, cell_paths, zip_path

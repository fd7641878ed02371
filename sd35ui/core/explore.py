"""Working with a sheet after it is made: re-arrange its axes without generating anything, describe it for the
explorer web page, find cells made before (resume), and load a saved sheet back.

- `rearrange(result, order, shown)`: the same cells under other axes (any axis on X, Y or outer) with some values
  hidden; its picture is pixel for pixel the sheet made with those axes from the start.
- `manifest(result, sheet_path)`: the explorer page's manifest (`sd35ui.core.explorer_page`).
- `reusable_cells(root)` + `run_sheet(..., reuse=...)`: a stopped, failed or interrupted sheet continues; cells saved
  with identical settings, model and load recipe are read back, not generated again.
- `load_sheet(path)`: a sheet PNG (ours) back into its spec and, where its cell files are beside it, its cells.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from sd35ui.core import generate, metadata
from sd35ui.core.settings import GenerationSettings
from sd35ui.core.sheet import (
    SHEET_JSON_KEY,
    Axis,
    Cell,
    CellResult,
    SheetResult,
    SheetSpec,
    axis_kind,
    cell_file,
    cell_key,
    coords,
    explore_manifest,
    plan_sheet,
)

manifest = explore_manifest  # the explorer page's manifest of a sheet, written by `sheet.save_sheet`

# --- Re-arranging ---------------------------------------------------------------------------------------------------


def rearrange(
    result: SheetResult, order: Sequence[int], shown: Mapping[int, Sequence[int]] | None = None
) -> SheetResult:
    """`result`'s cells under other axes. `order` lists indices into `result.spec.axes()`: the new X first, then
    the new Y (or -1 for none: a strip; then every other axis must be hidden down to one value), then the outer
    axes. `shown` maps an axis index to the indices of its values to keep, in order (default: all). Nothing is
    generated; a hidden value's cells are left out. Raises ValueError for an order that leaves out or repeats an
    axis, or hides every value of one."""
    spec = result.spec
    axes = spec.axes()
    rest = [a for a in order if a != -1]
    if sorted(rest) != list(range(len(axes))):
        raise ValueError(f"Put each of the {len(axes)} axes in exactly one place (X, Y or outer).")
    kept = {a: list((shown or {}).get(a, range(len(axes[a].values)))) for a in rest}
    for a, values in kept.items():
        if not values:
            raise ValueError(f"Show at least one value of {axes[a].label}.")
    picked = {a: Axis(axes[a].kind, tuple(axes[a].values[i] for i in kept[a])) for a in rest}
    x, y_index, outer = order[0], (order[1] if len(order) > 1 else -1), [a for a in order[2:] if a != -1]
    new_spec = dataclasses.replace(
        spec,
        x=picked[x],
        y=picked[y_index] if y_index != -1 else None,
        outer=tuple(picked[a] for a in outer),
    )
    new_axes = [x, *([y_index] if y_index != -1 else []), *outer]
    plan = {coords(new_spec, c): c for c in plan_sheet(new_spec)}
    cells = []
    for done in result.cells:
        old = coords(spec, done.cell)
        if any(old[a] not in kept[a] for a in rest):
            continue
        place = tuple(kept[a].index(old[a]) for a in new_axes)
        target: Cell = plan[place]
        cells.append(CellResult(dataclasses.replace(target, settings=done.settings), done.result, done.reused))
    cells.sort(key=lambda d: d.cell.index)
    return SheetResult(new_spec, result.model, cells, result.stopped, result.seconds, result.batched)


def arrangement(spec: SheetSpec) -> tuple[list[int], dict[int, list[int]]]:
    """The identity arrangement of `spec` for `rearrange`: (order, shown)."""
    order = [0, 1 if spec.y is not None else -1, *range(2 if spec.y is not None else 1, len(spec.axes()))]
    return order, {a: list(range(len(axis.values))) for a, axis in enumerate(spec.axes())}


# --- The explorer page ----------------------------------------------------------------------------------------------


# --- Resume ---------------------------------------------------------------------------------------------------------


def reusable_cells(root: Path) -> dict[str, Path]:
    """Every saved sheet cell under `root` by `cell_key`, read from the PNGs' text chunks without decoding them
    (files that cannot be read are passed over). Newest last, so a key maps to its newest file."""
    from sd35ui.core import history

    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*/*-*r*c*.png"), key=lambda p: p.stat().st_mtime_ns):
        try:
            chunks = history.read_text_chunks(path)
            payload = json.loads(chunks[metadata.JSON_KEY])
            settings = GenerationSettings(**payload["settings"])
            found[cell_key(settings, payload["model"], payload.get("recipe") or {})] = path
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


# --- Loading a saved sheet ------------------------------------------------------------------------------------------


def load_sheet(path: Path) -> SheetResult:
    """A sheet PNG saved by sd35ui back into its (resolved) spec, with every cell whose file is still beside it.
    Raises ValueError when the PNG is not one of our sheets."""
    from sd35ui.core import history

    chunks = history.read_text_chunks(Path(path))
    if SHEET_JSON_KEY not in chunks:
        raise ValueError(
            "This PNG is not an sd35ui contact sheet (it has no sheet description); drop a sheet saved by the "
            "Compare tab, or load a single image's settings in the Generate tab."
        )
    described = json.loads(chunks[SHEET_JSON_KEY])
    spec = spec_from_description(described)
    by_place = {(c["page"] if "page" in c else 0, c["row"], c["col"]): c for c in described.get("cells", [])}
    cells: list[CellResult] = []
    for cell in plan_sheet(spec):
        saved = by_place.get((cell.page, cell.row, cell.col))
        file = cell_file(cell, Path(path))
        if saved is None or not file.is_file():
            continue
        settings = GenerationSettings(**saved["settings"])
        with Image.open(file) as image:
            pixels = image.convert("RGB")
        timings = {"total": float(saved.get("seconds", 0.0))}
        made = generate.GenerationResult(pixels, settings, described.get("model", ""), timings, {})
        cells.append(CellResult(dataclasses.replace(cell, settings=settings), made))
    stopped = len(cells) < spec.n_cells
    return SheetResult(spec, described.get("model", ""), cells, stopped, float(described.get("seconds", 0.0)))


def spec_from_description(described: Mapping[str, Any]) -> SheetSpec:
    """The spec a sheet description (`sheet.sheet_description`) was made from."""
    base_values = described.get("base") or {**described.get("fixed", {})}
    if "prompt" not in base_values:  # sd35ui 0.2 wrote no base: a Prompt S/R sheet's first cell has the prompt
        first = (described.get("cells") or [{}])[0].get("settings", {})
        base_values = {**first, **base_values}
    base = GenerationSettings(**base_values)

    def axis(data: Mapping[str, Any] | None) -> Axis | None:
        if not data:
            return None
        return Axis(axis_kind(data["type"]).key, tuple(data["values"]))

    options = described.get("options", {})
    x = axis(described["x"])
    assert x is not None
    return SheetSpec(
        base,
        x,
        axis(described.get("y")),
        show_times=bool(options.get("show_times", False)),
        margin=int(options.get("margin", 0)),
        legend=bool(options.get("legend", True)),
        swap=bool(options.get("swap", False)),
        outer=tuple(a for a in (axis(d) for d in described.get("outer", [])) if a is not None),
    )

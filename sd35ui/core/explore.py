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
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sd35ui.core import generate
from sd35ui.core.cells import CellIndex
from sd35ui.core.quoting import quoted
from sd35ui.core.settings import PARAM, GenerationSettings, ModelSpec
from sd35ui.core.sheet import (
    MAX_AXIS_VALUES,
    MAX_OUTER,
    SHEET_JSON_KEY,
    Axis,
    Cell,
    CellResult,
    SheetResult,
    SheetSpec,
    axis_kind,
    cell_file,
    coords,
    explore_manifest,
    make_spec,
    plan_sheet,
    read_cell_image,
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
    return SheetResult(new_spec, result.model, cells, result.stopped, result.seconds)


def arrangement(spec: SheetSpec) -> tuple[list[int], dict[int, list[int]]]:
    """The identity arrangement of `spec` for `rearrange`: (order, shown)."""
    order = [0, 1 if spec.y is not None else -1, *range(2 if spec.y is not None else 1, len(spec.axes()))]
    return order, {a: list(range(len(axis.values))) for a, axis in enumerate(spec.axes())}


# --- The explorer page ----------------------------------------------------------------------------------------------


# --- Resume ---------------------------------------------------------------------------------------------------------


def reusable_cells(root: Path) -> Mapping[str, Path]:
    """The saved sheet cells under `root` by `cell_key`, the newest for each (`sd35ui.core.cells.CellIndex`: read
    from the folders' indexes, not from every PNG; a file is handed out only while it still carries that key).
    Symlinks are passed over, as History does: resume reads only what this app wrote."""
    return CellIndex(root)


# --- Loading a saved sheet ------------------------------------------------------------------------------------------


class DamagedSheet(ValueError):
    """A sheet PNG whose description cannot be read back into a sheet: the message says what is wrong."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"This sheet PNG's description is damaged or was not written by sd35ui: {problem}. Load a sheet PNG "
            "saved by the Compare tab or the CLI, or make the sheet again."
        )


def load_sheet(path: Path, model: ModelSpec | None = None) -> SheetResult:
    """A sheet PNG saved by sd35ui back into its spec and, where its cell files are beside it, its cells. The spec
    is rebuilt by `spec_from_description`, i.e. by `sheet.make_spec`: a loaded sheet passes exactly the checks and
    the size guard a new sheet passes, before anything is planned or drawn. Raises ValueError (`DamagedSheet`
    for a description that cannot be read back) when the PNG is not one of our sheets."""
    from sd35ui.core import history

    try:
        chunks = history.read_text_chunks(Path(path))
    except OSError as exc:  # gone, unreadable: a message, not the server's path in a traceback
        raise ValueError(
            f"Could not read {quoted(Path(path).name)}: {exc.strerror or type(exc).__name__}. Drop the file again."
        ) from None
    if SHEET_JSON_KEY not in chunks:
        raise ValueError(
            "This PNG is not an sd35ui contact sheet (it has no sheet description); drop a sheet saved by the "
            "Compare tab, or load a single image's settings in the Generate tab."
        )
    try:
        described = json.loads(chunks[SHEET_JSON_KEY])
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise DamagedSheet("it is not valid JSON") from None
    spec = spec_from_description(described, model)
    name = described.get("model")
    name = name if isinstance(name, str) else ""
    saved_cells = described.get("cells")
    by_place: dict[tuple[int, int, int], Mapping[str, Any]] = {}
    for saved in saved_cells if isinstance(saved_cells, list) else []:
        if isinstance(saved, Mapping):
            place = (saved.get("page", 0), saved.get("row"), saved.get("col"))
            if all(isinstance(i, int) and not isinstance(i, bool) for i in place):
                by_place.setdefault(place, saved)
    cells: list[CellResult] = []
    for cell in plan_sheet(spec):
        saved = by_place.get((cell.page, cell.row, cell.col))
        if saved is None:
            continue
        # The cell as planned from the checked spec, not the description's copy of its settings: the same
        # settings for a sheet that is what it says, and nothing unchecked for one that is not.
        pixels = read_cell_image(cell_file(cell, Path(path)), cell.settings)
        if pixels is None:  # not beside the sheet (an upload comes alone), or not this cell's picture
            continue
        timings = {"total": _seconds(saved.get("seconds"))}
        cells.append(CellResult(cell, generate.GenerationResult(pixels, cell.settings, name, timings, {})))
    stopped = len(cells) < spec.n_cells
    return SheetResult(spec, name, cells, stopped, _seconds(described.get("seconds")))


def _seconds(value: Any) -> float:
    """A time read from a description: a finite number of seconds, else 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return 0.0


def spec_from_description(described: Any, model: ModelSpec | None = None) -> SheetSpec:
    """The spec a sheet description (`sheet.sheet_description`) was made from, rebuilt through `sheet.make_spec`
    from the axes' input text (`Axis.text`), so that it is parsed, validated and size-guarded exactly as a new
    sheet is, against `model` (default: the model the description names). Raises ValueError: `DamagedSheet` when
    the description is not shaped like ours, make_spec's own message when a setting or the size is refused."""
    from sd35ui.core.pipeline import model_spec

    if not isinstance(described, Mapping):
        raise DamagedSheet("it is not a JSON object")
    name = described.get("model")
    model = model or model_spec(name if isinstance(name, str) else "")
    base_values = described.get("base") or described.get("fixed") or {}
    if not isinstance(base_values, Mapping):
        raise DamagedSheet("its base settings are not a JSON object")
    if "prompt" not in base_values:  # sd35ui 0.2 wrote no base: a Prompt S/R sheet's first cell has the prompt
        cells = described.get("cells")
        first = cells[0] if isinstance(cells, list) and cells and isinstance(cells[0], Mapping) else {}
        settings = first.get("settings")
        base_values = {**(settings if isinstance(settings, Mapping) else {}), **base_values}
    # Settings that this version does not know (a newer sd35ui's) are left out; every known one is checked.
    base = GenerationSettings.validated(model, **{k: v for k, v in base_values.items() if k in PARAM})
    outer = described.get("outer") or []
    if not isinstance(outer, list):
        raise DamagedSheet("its outer axes are not a list")
    if len(outer) > MAX_OUTER:  # the same refusal as make_spec's, before reading any of them
        raise ValueError(f"A sheet takes at most {MAX_OUTER} outer axes (four in all); this one has {len(outer)}.")
    options = described.get("options") or {}
    if not isinstance(options, Mapping):
        raise DamagedSheet("its drawing options are not a JSON object")
    x = _axis_input(described.get("x"), "X")
    if x[0] is None:
        raise DamagedSheet("it has no X axis")
    return make_spec(
        base,
        *x,
        *_axis_input(described.get("y"), "Y"),
        show_times=bool(options.get("show_times", False)),
        margin=options.get("margin", 0),
        legend=bool(options.get("legend", True)),
        swap=bool(options.get("swap", False)),
        model=model,
        outer=[_axis_input(axis, which) for which, axis in zip(("Z", "W"), outer)],
    )


def _axis_input(data: Any, which: str) -> tuple[str | None, str]:
    """One described axis (`Axis.to_dict`) as the (type, values text) a user would type, for `make_spec` to parse
    and check; (None, "") for no axis."""
    if not data:
        return None, ""
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("type"), str)
        or not isinstance(data.get("values"), list)
    ):
        raise DamagedSheet(f"its {which} axis is not a type with a list of values")
    kind = axis_kind(data["type"], which)
    values = data["values"]
    if len(values) > MAX_AXIS_VALUES:  # make_spec would refuse it too, after reading every value
        raise ValueError(f"{which} axis ({kind.label}) has {len(values)} values; the limit is {MAX_AXIS_VALUES}.")
    numeric = kind.key in PARAM and PARAM[kind.key].kind in ("number", "seed")
    for value in values:
        plain = isinstance(value, str) or (numeric and isinstance(value, (int, float)) and not isinstance(value, bool))
        if not plain:
            wanted = "a number" if numeric else "text"
            raise DamagedSheet(f"a value of its {which} axis ({kind.label}) is not {wanted}")
    return kind.label, Axis(kind.key, tuple(values)).text()

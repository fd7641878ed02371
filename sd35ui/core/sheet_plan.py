"""A contact sheet's plan: the spec (`SheetSpec`), made and guarded by `make_spec` (the one way a spec is made: UI,
API, CLI, library and a loaded sheet all pass it), the cells in the order they are made (`plan_sheet`) and the size
guard (`check_sheet`). Part of the sheet engine, whose front is `sd35ui.core.sheet`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sd35ui.core.axes import (
    DEFAULT_X_TYPE,
    DEFAULT_X_VALUES,
    DEFAULT_Y_TYPE,
    DEFAULT_Y_VALUES,
    MAX_CELLS,
    MAX_MARGIN,
    MAX_SHEET_PIXELS,
    MEGAPIXEL,
    SWITCH_COST,
    TEXT_AXES,
    Axis,
    check_axis,
    parse_axis,
    resolve_sizes,
)
from sd35ui.core.quoting import quoted, safe_text
from sd35ui.core.settings import (
    SD35_MEDIUM,
    GenerationSettings,
    ModelSpec,
)


@dataclass(frozen=True)
class SheetSpec:
    """A whole contact sheet: what to vary and how to draw it. Build it with `make_spec` to get it validated."""

    base: GenerationSettings  # everything not on an axis; base.seed=None draws one seed for the whole sheet
    x: Axis
    y: Axis | None = None
    show_times: bool = False  # caption every cell with its generation time
    margin: int = 0  # pixels between cells
    legend: bool = True  # axis labels and the title line
    swap: bool = False  # draw X down the side and Y across the top
    outer: tuple[Axis, ...] = ()  # up to MAX_OUTER more axes: one sub-sheet (page) per combination of their values

    @property
    def rows(self) -> int:
        return len(self.y.values) if self.y is not None else 1

    @property
    def cols(self) -> int:
        return len(self.x.values)

    @property
    def pages(self) -> int:
        """Sub-sheets: one per combination of the outer axes' values (1 without outer axes)."""
        return math.prod(len(axis.values) for axis in self.outer)

    @property
    def n_cells(self) -> int:
        return self.rows * self.cols * self.pages

    def axes(self) -> list[Axis]:
        """Every axis: X, Y (if any), then the outer axes, outermost first."""
        return [self.x, *([self.y] if self.y is not None else []), *self.outer]

    def page_indices(self, page: int) -> tuple[int, ...]:
        """The index into each outer axis's values of sub-sheet `page` (the first outer axis changes slowest)."""
        indices = []
        for axis in reversed(self.outer):
            page, index = divmod(page, len(axis.values))
            indices.append(index)
        return tuple(reversed(indices))

    def page_label(self, page: int) -> str:
        """The heading of sub-sheet `page`: "Sampler: Heun · T5: Off"."""
        return " · ".join(axis.labels()[i] for axis, i in zip(self.outer, self.page_indices(page)))

    def resolved(self) -> SheetSpec:
        """This spec with a concrete seed (drawn once for the whole sheet when none was set)."""
        return self if self.base.seed is not None else dataclasses.replace(self, base=self.base.with_seed())


MAX_OUTER = 2  # X, Y and two outer axes: four in all


def make_spec(
    base: GenerationSettings,
    x_type: str = DEFAULT_X_TYPE,
    x_values: str = DEFAULT_X_VALUES,
    y_type: str | None = DEFAULT_Y_TYPE,
    y_values: str | None = DEFAULT_Y_VALUES,
    *,
    show_times: bool = False,
    margin: int = 0,
    legend: bool = True,
    swap: bool = False,
    model: ModelSpec = SD35_MEDIUM,
    outer: Sequence[tuple[str | None, str | None]] = (),
    max_cells: int = MAX_CELLS,
    max_pixels: int = MAX_SHEET_PIXELS,
) -> SheetSpec:
    """Parse, validate and guard a sheet from loosely typed input (UI, API, CLI, a loaded sheet's description):
    the one way a sheet spec is made. `y_type` None, "" or "None": one axis. `outer`: up to two more (type, values)
    axes, each a sub-sheet per value; a None or "None" type is left out. The size guard (`check_sheet`) runs last,
    so a spec returned here is within `max_cells` and `max_pixels`.

    The seed is fixed here (drawn at random when `base.seed` is None) so the spec says exactly what will run."""
    base = base.validate(model)
    x = parse_axis(x_type, x_values, "X")
    x = resolve_sizes(x, model, "X") if x.kind == "size" else x
    check_axis(x, base, "X", model)
    y = None
    if not _is_none(y_type):
        y = parse_axis(y_type, y_values or "", "Y")
        y = resolve_sizes(y, model, "Y") if y.kind == "size" else y
        check_axis(y, base, "Y", model)
        if y.kind == x.kind and x.kind not in TEXT_AXES:
            raise ValueError(f"X and Y are both {x.label}; choose a different type for one of them.")
    outer_axes = _outer_axes(outer, [x, *([y] if y is not None else [])], base, model)
    whole = isinstance(margin, (int, float)) and not isinstance(margin, bool) and float(margin).is_integer()
    if not whole or not 0 <= margin <= MAX_MARGIN:
        raise ValueError(
            f"The margin between cells must be a whole number of pixels from 0 to {MAX_MARGIN}, got {quoted(margin)}."
        )
    options = {"show_times": bool(show_times), "margin": int(margin), "legend": bool(legend), "swap": bool(swap)}
    spec = SheetSpec(base, x, y, **options, outer=outer_axes).resolved()
    check_sheet(spec, max_cells, max_pixels)
    return spec


def _is_none(axis_type: Any) -> bool:
    return axis_type is None or str(axis_type).strip().lower() in ("", "none", "-")


def _outer_axes(
    outer: Sequence[tuple[str | None, str | None]], inner: list[Axis], base: GenerationSettings, model: ModelSpec
) -> tuple[Axis, ...]:
    """The outer axes (Z, then W), parsed and checked: none may repeat another axis's type (S/R axes may)."""
    axes: list[Axis] = []
    given = [(t, v) for t, v in outer if not _is_none(t)]
    if len(given) > MAX_OUTER:
        raise ValueError(f"A sheet takes at most {MAX_OUTER} outer axes (four in all); remove {len(given) - 2}.")
    for which, (axis_type, values) in zip(("Z", "W"), given):
        axis = parse_axis(str(axis_type), values or "", which)
        axis = resolve_sizes(axis, model, which) if axis.kind == "size" else axis
        check_axis(axis, base, which, model)
        taken = [a for a in inner + axes if a.kind == axis.kind and a.kind not in TEXT_AXES]
        if taken:
            raise ValueError(f"Two axes are {axis.label}; choose a different type for the {which} axis.")
        axes.append(axis)
    return tuple(axes)


@dataclass(frozen=True)
class Cell:
    index: int  # order of generation: row by row, or column by column when X is costlier to switch (SWITCH_COST)
    row: int  # index into the Y values (0 when there is no Y axis)
    col: int  # index into the X values
    settings: GenerationSettings
    page: int = 0  # the sub-sheet: index of the combination of outer-axis values (SheetSpec.page_indices)
    paged: bool = False  # the sheet has outer axes (its cells' files name the page)


def x_outer(spec: SheetSpec) -> bool:
    """Whether the sheet is made column by column: X's values are costlier to switch than Y's (a prompt or a size
    against a number), so X runs in the outer loop."""
    return spec.y is not None and SWITCH_COST.get(spec.x.kind, 0) > SWITCH_COST.get(spec.y.kind, 0)


def plan_sheet(spec: SheetSpec) -> list[Cell]:
    """The cells of a sheet in the order they are made: row by row, unless X is costlier to switch than Y
    (`x_outer`), then column by column. Everything not on an axis comes from `spec.base`."""
    spec = spec.resolved()
    y_values = spec.y.values if spec.y is not None else (None,)
    places = [(row, col) for row in range(len(y_values)) for col in range(spec.cols)]
    if x_outer(spec):
        places.sort(key=lambda place: (place[1], place[0]))
    cells: list[Cell] = []
    for page in range(spec.pages):  # outer axes: the outermost loop
        base = spec.base
        for axis, index in zip(spec.outer, spec.page_indices(page)):
            base = axis.apply(base, axis.values[index])
        for row, col in places:
            settings = spec.x.apply(base, spec.x.values[col])
            if spec.y is not None:
                settings = spec.y.apply(settings, y_values[row])
            cells.append(Cell(len(cells), row, col, settings, page, bool(spec.outer)))
    return cells


def coords(spec: SheetSpec, cell: Cell) -> tuple[int, ...]:
    """The cell's index into each of `spec.axes()`' values."""
    return (cell.col, *((cell.row,) if spec.y is not None else ()), *spec.page_indices(cell.page))


def check_sheet(spec: SheetSpec, max_cells: int = MAX_CELLS, max_pixels: int = MAX_SHEET_PIXELS) -> None:
    """Refuse a sheet over the cell or pixel limit (or with a Prompt S/R text missing from the prompt), before
    anything is generated."""
    for which, axis in zip(("X", "Y", "Z", "W") if spec.y is not None else ("X", "Z", "W"), spec.axes()):
        check_axis(axis, spec.base, which)
    shape = " x ".join(str(len(axis.values)) for axis in spec.axes())
    if spec.n_cells > max_cells:
        raise ValueError(
            f"This sheet has {spec.n_cells} cells ({shape}); the limit is {max_cells}. Use fewer values on an axis."
        )
    cells = plan_sheet(spec)
    for cell in cells:
        try:
            cell.settings.check_combination()
        except ValueError as exc:
            raise ValueError(f"Cell {safe_text(cell_name(spec, cell))}: {exc}") from None
    pixels = sum(cell.settings.width * cell.settings.height for cell in cells)
    if pixels > max_pixels:
        w, h = spec.base.width, spec.base.height
        sizes = {f"{c.settings.width}x{c.settings.height}" for c in cells}
        what = f"cells of {w}x{h}" if len(sizes) == 1 else f"cells of {len(sizes)} sizes"
        fit = f" ({max(1, max_pixels // (w * h))} cells at this size)" if len(sizes) == 1 else ""
        raise ValueError(
            f"This sheet's {spec.n_cells} {what} hold {pixels / MEGAPIXEL:.1f} megapixels; the limit is "
            f"{max_pixels / MEGAPIXEL:.1f} megapixels{fit}. Use a smaller size or fewer values."
        )


def cell_name(spec: SheetSpec, cell: Cell, sep: str = ", ") -> str:
    """A cell by its axis labels: "Sampler: Heun, Schedule type: Karras" (the UI's captions use sep=" · ")."""
    names = [spec.x.labels()[cell.col]] + ([spec.y.labels()[cell.row]] if spec.y is not None else [])
    return sep.join(names + ([spec.page_label(cell.page)] if spec.outer else []))

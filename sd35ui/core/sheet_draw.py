"""Drawing a contact sheet: its title and the picture (one grid per sub-sheet, stacked), through
`sd35ui.core.grid` (pure PIL). Part of the sheet engine, whose front is `sd35ui.core.sheet`."""

from __future__ import annotations

from typing import Any

from PIL import Image

from sd35ui.core import grid
from sd35ui.core.axes import format_value
from sd35ui.core.settings import (
    PARAMS,
    GenerationSettings,
)
from sd35ui.core.sheet_plan import (
    SheetSpec,
    plan_sheet,
)


def title_text(spec: SheetSpec, model: str) -> str:
    """The sheet's title: the prompt, then the settings that are the same in every cell."""
    base, varied = spec.base, {axis.kind for axis in spec.axes()}
    lines = [base.prompt]
    if base.negative_prompt:
        lines.append(f"Negative: {base.negative_prompt}")
    if "size" in varied:
        varied |= {"width", "height"}
    fixed = []
    if "steps" not in varied:
        fixed.append(f"Steps: {base.steps}")
    if "guidance" not in varied:
        fixed.append(f"Guidance: {base.guidance:g}")
    if "seed" not in varied:
        fixed.append(f"Seed: {base.seed}")
    slg_varied = varied & {"slg_scale", "skip_layers", "slg_start", "slg_stop"}
    for param in PARAMS:  # settings added since: named when not the model's own
        value = getattr(base, param.name)
        slg_off = param.name in ("skip_layers", "slg_start", "slg_stop") and not (base.slg_scale or slg_varied)
        if param.api_tail and param.name not in varied and value != getattr(GenerationSettings, param.name):
            if not slg_off:
                fixed.append(f"{param.label}: {format_value(value)}")
    if "size" not in varied:
        fixed.append(f"Size: {base.width}x{base.height}")
    fixed.append(f"Model: {model}")
    lines.append(", ".join(fixed))
    return "\n".join(lines)


def sheet_image(result: Any) -> Image.Image:
    """Draw a (possibly unfinished) sheet with `sd35ui.core.grid`: one grid, or with outer axes one grid per
    sub-sheet, each headed by its outer values, stacked top to bottom. `result` is a `sheet_run.SheetResult`
    (not imported: the run module draws through this one)."""
    spec = result.spec
    title = title_text(spec, result.model)
    if result.stopped:
        title += f"\nStopped: {len(result.cells)} of {spec.n_cells} cells made"
    pages = []
    for page in range(spec.pages):
        cells: list[list[Image.Image | None]] = [[None] * spec.cols for _ in range(spec.rows)]
        captions: list[list[str | None]] = [[None] * spec.cols for _ in range(spec.rows)]
        for done in result.cells:
            if done.cell.page == page:
                cells[done.cell.row][done.cell.col] = done.image
                captions[done.cell.row][done.cell.col] = f"{done.seconds:.1f} s"
        heading = title + (f"\n{spec.page_label(page)}" if spec.outer else "")
        pages.append(
            grid.compose(
                cells,
                spec.x.labels(),
                spec.y.labels() if spec.y is not None else None,
                title=heading,
                captions=captions if spec.show_times else None,
                margin=spec.margin,
                legend=spec.legend,
                swap=spec.swap,
                cell_size=cell_box(spec),
            )
        )
    return pages[0] if len(pages) == 1 else _stacked(pages)


PAGE_GAP = 16  # pixels between the sub-sheets of a sheet with outer axes


def _stacked(pages: list[Image.Image]) -> Image.Image:
    """Sub-sheets one under the other, left-aligned, on the sheet's background."""
    width = max(page.width for page in pages)
    out = Image.new("RGB", (width, sum(p.height for p in pages) + PAGE_GAP * (len(pages) - 1)), grid.BACKGROUND)
    top = 0
    for page in pages:
        out.paste(page, (0, top))
        top += page.height + PAGE_GAP
    return out


def cell_box(spec: SheetSpec) -> tuple[int, int]:
    """The box every cell is drawn in: the base size, or with a Size axis the widest by the tallest."""
    if any(axis.kind == "size" for axis in spec.axes()):
        sizes = [(c.settings.width, c.settings.height) for c in plan_sheet(spec)]
        return max(w for w, _ in sizes), max(h for _, h in sizes)
    return spec.base.width, spec.base.height

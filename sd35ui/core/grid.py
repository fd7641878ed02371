"""The contact-sheet picture: cells in a labelled grid, like the comparison figures in model docs. Pure PIL.

Column labels go on top and row labels on the left (A1111's X/Y plot layout: white bands, black text, font size
(cell_w + cell_h) // 25), with an optional title, per-cell captions (e.g. generation time) and gaps between cells.
Small cells are enlarged with NEAREST (no blur) so that the labels around them stay readable. Everything takes plain
PIL images and strings, so it is tested on coloured squares without a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

MIN_CELL_SIDE = 192  # smaller cells (the tiny model's 64 px) are enlarged by a whole factor up to at least this
MIN_FONT_SIZE = 14  # below this the default font stops being readable on a laptop screen
FONT_DIVISOR = 25  # A1111: font size = (cell_w + cell_h) // 25
MAX_LABEL_LINES = 3  # longer labels are cut with "..."; the full values stay in the metadata
MAX_TITLE_LINES = 4
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
CAPTION_TEXT = (80, 80, 80)
MISSING = (225, 225, 225)  # a cell that was not made (the sheet was stopped)
ELLIPSIS = "..."  # ASCII: the default font may lack the single-character ellipsis

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Layout:
    """Where everything goes on the sheet, in pixels. Cells are `cell_w` x `cell_h` after enlarging."""

    rows: int
    cols: int
    cell_w: int
    cell_h: int
    scale: int  # whole-number enlargement of the source cells
    margin: int  # gap between neighbouring cells
    title_h: int
    top_h: int  # column-label band
    left_w: int  # row-label band
    caption_h: int  # band under every cell
    font_size: int
    width: int
    height: int

    def cell_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the cell at `row`, `col` of the picture."""
        x = self.left_w + col * (self.cell_w + self.margin)
        y = self.title_h + self.top_h + row * (self.cell_h + self.caption_h + self.margin)
        return x, y, x + self.cell_w, y + self.cell_h

    def caption_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        x0, _, x1, y1 = self.cell_box(row, col)
        return x0, y1, x1, y1 + self.caption_h


def font(size: int) -> Font:
    """Pillow's built-in scalable font (Pillow >= 10.1; a bitmap font where FreeType is missing)."""
    return ImageFont.load_default(size=size)


def _line_height(f: Font) -> int:
    left, top, right, bottom = f.getbbox("Ag|jy")
    return int(bottom) + max(2, int(bottom) // 5)


def _width(f: Font, text: str) -> float:
    return f.getlength(text)


def _cut(f: Font, text: str, width: float) -> str:
    """`text` shortened with an ellipsis so that it fits `width`."""
    while text and _width(f, text + ELLIPSIS) > width:
        text = text[:-1]
    return text.rstrip() + ELLIPSIS


def wrap(text: str, f: Font, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; words longer than a line are split; overflow ends in '...'."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if _width(f, candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while _width(f, word) > width and len(word) > 1:
                cut = len(word)
                while cut > 1 and _width(f, word[:cut]) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [_cut(f, " ".join(lines[max_lines - 1 :]), width)]
    return lines


def font_size_for(cell_w: int, cell_h: int) -> int:
    return max(MIN_FONT_SIZE, (cell_w + cell_h) // FONT_DIVISOR)


def enlarge_factor(cell_w: int, cell_h: int, min_side: int = MIN_CELL_SIDE) -> int:
    return max(1, math.ceil(min_side / max(1, min(cell_w, cell_h))))


def _pad(font_size: int) -> int:
    return max(4, font_size // 2)


def layout(
    rows: int,
    cols: int,
    cell_size: tuple[int, int],
    col_labels: Sequence[str] | None,
    row_labels: Sequence[str] | None,
    *,
    title: str = "",
    captions: bool = False,
    margin: int = 0,
    min_side: int = MIN_CELL_SIDE,
) -> Layout:
    """The layout for a `rows` x `cols` grid of `cell_size` cells (source pixels). Labels that are None or empty
    get no band; bands grow with the number of wrapped lines."""
    if rows < 1 or cols < 1:
        raise ValueError(f"A sheet needs at least one row and one column, got {rows} x {cols}.")
    if margin < 0:
        raise ValueError(f"The margin between cells must be 0 or more pixels, got {margin}.")
    for name, labels, n in (("column", col_labels, cols), ("row", row_labels, rows)):
        if labels and len(labels) != n:
            raise ValueError(f"{len(labels)} {name} labels for {n} {name}s.")
    scale = enlarge_factor(*cell_size, min_side=min_side)
    cell_w, cell_h = cell_size[0] * scale, cell_size[1] * scale
    size = font_size_for(cell_w, cell_h)
    f = font(size)
    pad = _pad(size)
    line_h = _line_height(f)
    left_w = max(cell_w * 3 // 4, 4 * size) if row_labels else 0  # A1111's left pad
    grid_w = cols * cell_w + (cols - 1) * margin
    width = left_w + grid_w
    top_h = 0
    if col_labels:
        most = max(len(wrap(label, f, cell_w - pad, MAX_LABEL_LINES)) for label in col_labels)
        top_h = most * line_h + 2 * pad
    title_h = 0
    if title:
        title_h = len(wrap(title, f, width - 2 * pad, MAX_TITLE_LINES)) * line_h + 2 * pad
    caption_h = _line_height(font(_caption_size(size))) + pad if captions else 0
    height = title_h + top_h + rows * (cell_h + caption_h) + (rows - 1) * margin
    return Layout(rows, cols, cell_w, cell_h, scale, margin, title_h, top_h, left_w, caption_h, size, width, height)


def _caption_size(size: int) -> int:
    return max(MIN_FONT_SIZE - 2, size * 4 // 5)


def _draw_centred(draw: ImageDraw.ImageDraw, lines: list[str], f: Font, box: tuple[int, int, int, int], fill) -> None:
    line_h = _line_height(f)
    x0, y0, x1, y1 = box
    y = y0 + ((y1 - y0) - len(lines) * line_h) // 2
    for line in lines:
        draw.text((x0 + ((x1 - x0) - _width(f, line)) / 2, y), line, font=f, fill=fill)
        y += line_h


def _row_label_lines(label: str, f: Font, box_w: int, box_h: int) -> list[str]:
    """A row label wrapped into its band: as many lines as the cell is tall (at least MAX_LABEL_LINES)."""
    return wrap(label, f, box_w, max(MAX_LABEL_LINES, box_h // _line_height(f)))


def compose(
    cells: Sequence[Sequence[Image.Image | None]],
    col_labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    *,
    title: str = "",
    captions: Sequence[Sequence[str | None]] | None = None,
    margin: int = 0,
    legend: bool = True,
    swap: bool = False,
    cell_size: tuple[int, int] | None = None,
    min_side: int = MIN_CELL_SIDE,
) -> Image.Image:
    """Draw a contact sheet. `cells[row][col]` are images (None: not made, drawn grey), each centred in a box of
    `cell_size` (default: the first cell's size; none may be larger); `col_labels` and
    `row_labels` name the columns and rows ("Guidance: 4.5"); `captions[row][col]` is a small line under each cell.

    `swap` exchanges rows and columns (and their labels); a single row or column makes a strip labelled on one side.
    `legend=False` leaves out the labels and the title."""
    grid = _checked_grid(cells)
    caption_grid = [list(row) for row in captions] if captions is not None else None
    if swap:
        grid = _transposed(grid)
        caption_grid = _transposed(caption_grid) if caption_grid is not None else None
        col_labels, row_labels = row_labels, col_labels
    if not legend:
        col_labels = row_labels = None
        title = ""
    if cell_size is None:
        cell_size = _first_cell_size(grid)
    box = layout(
        len(grid),
        len(grid[0]),
        cell_size,
        col_labels,
        row_labels,
        title=title,
        captions=caption_grid is not None,
        margin=margin,
        min_side=min_side,
    )
    sheet = Image.new("RGB", (box.width, box.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    _draw_legend(draw, box, title, col_labels, row_labels)
    _draw_cells(sheet, draw, box, grid, caption_grid, cell_size)
    return sheet


def _checked_grid(cells: Sequence[Sequence[Image.Image | None]]) -> list[list[Image.Image | None]]:
    """`cells` as a list of rows, or a ValueError when there is no cell or the rows differ in length."""
    grid = [list(row) for row in cells]
    if not grid or not grid[0]:
        raise ValueError("A sheet needs at least one cell.")
    if any(len(row) != len(grid[0]) for row in grid):
        raise ValueError("Every row of a sheet must have the same number of cells.")
    return grid


def _transposed(grid: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [list(col) for col in zip(*grid)]


def _first_cell_size(grid: list[list[Image.Image | None]]) -> tuple[int, int]:
    """The size of the first cell that was made (every cell must have it)."""
    made = [cell for row in grid for cell in row if cell is not None]
    if not made:
        raise ValueError("No cell was made, so there is nothing to draw; pass cell_size to draw an empty sheet.")
    return made[0].size


def _draw_legend(
    draw: ImageDraw.ImageDraw,
    box: Layout,
    title: str,
    col_labels: Sequence[str] | None,
    row_labels: Sequence[str] | None,
) -> None:
    """The title band, the column labels above the first row and the row labels left of the first column."""
    f = font(box.font_size)
    pad = _pad(box.font_size)
    if box.title_h:
        lines = wrap(title, f, box.width - 2 * pad, MAX_TITLE_LINES)
        _draw_centred(draw, lines, f, (pad, 0, box.width - pad, box.title_h), TEXT)
    if box.top_h and col_labels:
        for col, label in enumerate(col_labels):
            x0, y0, x1, _ = box.cell_box(0, col)
            lines = wrap(label, f, box.cell_w - pad, MAX_LABEL_LINES)
            _draw_centred(draw, lines, f, (x0, y0 - box.top_h, x1, y0), TEXT)
    if box.left_w and row_labels:
        for row, label in enumerate(row_labels):
            _, y0, _, y1 = box.cell_box(row, 0)
            lines = _row_label_lines(label, f, box.left_w - 2 * pad, box.cell_h)
            _draw_centred(draw, lines, f, (pad, y0, box.left_w - pad, y1), TEXT)


def _draw_cells(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    box: Layout,
    grid: list[list[Image.Image | None]],
    caption_grid: list[list[str | None]] | None,
    cell_size: tuple[int, int],
) -> None:
    """Paste every cell (enlarged by `box.scale`, grey with "not made" where None) with its caption under it."""
    caption_font = font(_caption_size(box.font_size))
    for r, row in enumerate(grid):
        for c, cell in enumerate(row):
            x0, y0, x1, y1 = box.cell_box(r, c)
            if cell is None:
                draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=MISSING)
                _draw_centred(draw, ["not made"], caption_font, (x0, y0, x1, y1), CAPTION_TEXT)
                continue
            if cell.width > cell_size[0] or cell.height > cell_size[1]:
                raise ValueError(
                    f"Cell ({r}, {c}) is {cell.size[0]}x{cell.size[1]}; no cell may be larger than {cell_size}."
                )
            shown = cell.convert("RGB")
            if box.scale > 1:
                shown = shown.resize((cell.width * box.scale, cell.height * box.scale), Image.Resampling.NEAREST)
            # a smaller cell (a Size axis) sits in the middle of its box
            sheet.paste(shown, (x0 + (box.cell_w - shown.width) // 2, y0 + (box.cell_h - shown.height) // 2))
            caption = caption_grid[r][c] if caption_grid is not None else None
            if caption:
                lines = wrap(caption, caption_font, box.cell_w, 1)
                _draw_centred(draw, lines, caption_font, box.caption_box(r, c), CAPTION_TEXT)

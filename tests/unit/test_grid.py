"""The contact-sheet picture, on plain coloured cells: sizes, label bands, margins, swap, strips, legend off."""

from __future__ import annotations

import pytest
from PIL import Image

from sd35ui.core import grid

COLOURS = [[(200, 0, 0), (0, 200, 0), (0, 0, 200)], [(200, 200, 0), (0, 200, 200), (200, 0, 200)]]
WHITE = grid.BACKGROUND


def cells(size=(256, 256), colours=COLOURS):
    return [[Image.new("RGB", size, colour) for colour in row] for row in colours]


def centre(image, box):
    x0, y0, x1, y1 = box
    return image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2))


def has_text(image, box):
    """Some dark pixels (text) in `box`."""
    return image.crop(box).convert("L").getextrema()[0] < 100


def layout_of(sheet_cells, col_labels=None, row_labels=None, **options):
    rows, cols = len(sheet_cells), len(sheet_cells[0])
    return grid.layout(rows, cols, sheet_cells[0][0].size, col_labels, row_labels, **options)


COLS = ["Guidance: 3", "Guidance: 4.5", "Guidance: 6"]
ROWS = ["Steps: 10", "Steps: 20"]


def test_sheet_size_without_legend_is_the_cells():
    image = grid.compose(cells(), COLS, ROWS, title="a red fox", legend=False)
    assert image.size == (3 * 256, 2 * 256)
    for r, row in enumerate(COLOURS):
        for c, colour in enumerate(row):
            assert image.getpixel((c * 256 + 128, r * 256 + 128)) == colour


def test_label_bands_and_cell_positions():
    image = grid.compose(cells(), COLS, ROWS, title="a red fox\nSeed: 7")
    box = layout_of(cells(), COLS, ROWS, title="a red fox\nSeed: 7")
    assert box.font_size == (256 + 256) // grid.FONT_DIVISOR
    assert box.left_w == 256 * 3 // 4 and box.top_h > box.font_size and box.title_h > 2 * box.font_size
    assert image.size == (box.left_w + 3 * 256, box.title_h + box.top_h + 2 * 256) == (box.width, box.height)
    for r, row in enumerate(COLOURS):
        for c, colour in enumerate(row):
            assert centre(image, box.cell_box(r, c)) == colour
    x0, y0, x1, _ = box.cell_box(0, 1)
    assert has_text(image, (x0, y0 - box.top_h, x1, y0))  # "Guidance: 4.5" above column 1
    _, y0, _, y1 = box.cell_box(1, 0)
    assert has_text(image, (0, y0, box.left_w, y1))  # "Steps: 20" beside row 1
    assert has_text(image, (0, 0, box.width, box.title_h))
    assert image.getpixel((1, box.title_h + 1)) == WHITE  # the corner above the row labels stays blank


def test_small_cells_are_enlarged_without_blur():
    small = cells(size=(64, 64))
    small[0][0].putpixel((0, 0), (255, 255, 255))
    image = grid.compose(small, COLS, ROWS)
    box = layout_of(small, COLS, ROWS)
    assert box.scale == 3 and (box.cell_w, box.cell_h) == (192, 192)
    assert box.font_size >= grid.MIN_FONT_SIZE
    x0, y0, _, _ = box.cell_box(0, 0)
    block = image.crop((x0, y0, x0 + 3, y0 + 3))
    assert block.getcolors() == [(9, (255, 255, 255))]  # one source pixel became a sharp 3x3 block
    assert image.getpixel((x0 + 3, y0)) == COLOURS[0][0]


def test_margins_separate_cells():
    image = grid.compose(cells(), COLS, ROWS, margin=10)
    box = layout_of(cells(), COLS, ROWS, margin=10)
    assert box.width == box.left_w + 3 * 256 + 2 * 10
    assert box.height == box.title_h + box.top_h + 2 * 256 + 10
    x0, y0, x1, y1 = box.cell_box(0, 0)
    assert box.cell_box(0, 1)[0] == x1 + 10 and box.cell_box(1, 0)[1] == y1 + 10
    assert image.getpixel((x1 + 5, y0 + 100)) == WHITE
    assert image.getpixel((x0 + 100, y1 + 5)) == WHITE


def test_swap_exchanges_rows_and_columns():
    straight = layout_of(cells(), COLS, ROWS)
    image = grid.compose(cells(), COLS, ROWS, swap=True)
    swapped = grid.layout(3, 2, (256, 256), ROWS, COLS)
    assert image.size == (swapped.width, swapped.height)
    assert (swapped.rows, swapped.cols) == (3, 2) and image.size != (straight.width, straight.height)
    for r, row in enumerate(COLOURS):
        for c, colour in enumerate(row):
            assert centre(image, swapped.cell_box(c, r)) == colour


def test_one_axis_strip():
    strip = [COLOURS[0]]
    one_row = [[Image.new("RGB", (256, 256), colour) for colour in strip[0]]]
    image = grid.compose(one_row, COLS)
    box = grid.layout(1, 3, (256, 256), COLS, None)
    assert box.left_w == 0 and box.top_h > 0
    assert image.size == (3 * 256, box.top_h + 256)
    column = grid.compose(one_row, COLS, swap=True)  # the same sweep drawn downwards, labelled on the left
    box = grid.layout(3, 1, (256, 256), None, COLS)
    assert box.top_h == 0 and box.left_w == 192
    assert column.size == (192 + 256, 3 * 256)
    assert centre(column, box.cell_box(2, 0)) == strip[0][2]


def test_captions_under_cells():
    captions = [["1.0 s", "2.0 s", "3.0 s"], ["4.0 s", None, "6.0 s"]]
    image = grid.compose(cells(), COLS, ROWS, captions=captions)
    box = layout_of(cells(), COLS, ROWS, captions=True)
    assert box.caption_h > 0 and image.size == (box.width, box.height)
    assert box.height == box.top_h + 2 * (256 + box.caption_h)
    assert has_text(image, box.caption_box(0, 0))
    assert not has_text(image, box.caption_box(1, 1))


def test_missing_cells_are_grey():
    partial = cells()
    partial[1][2] = None
    image = grid.compose(partial, COLS, ROWS)
    box = layout_of(cells(), COLS, ROWS)
    x0, y0, _, _ = box.cell_box(1, 2)
    assert image.getpixel((x0 + 2, y0 + 2)) == grid.MISSING
    empty = grid.compose([[None, None]], ["a", "b"], cell_size=(64, 64))
    assert empty.size[0] == 2 * 192


def test_long_labels_wrap_and_are_cut():
    font = grid.font(20)
    words = "a watercolor painting of a red fox in a snowy forest at sunset, cinematic lighting, detailed"
    lines = grid.wrap(words, font, 150, max_lines=3)
    assert len(lines) == 3 and lines[-1].endswith(grid.ELLIPSIS)
    assert all(font.getlength(line) <= 150 for line in lines)
    assert grid.wrap("Steps: 10", font, 150, 3) == ["Steps: 10"]
    assert all(font.getlength(line) <= 40 for line in grid.wrap("supercalifragilistic", font, 40, 9))
    tall = grid.layout(1, 2, (256, 256), [words, "short"], None)
    short = grid.layout(1, 2, (256, 256), ["Guidance: 3", "short"], None)
    assert tall.top_h > short.top_h


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"col_labels": ["only one"]}, "1 column labels for 3 columns"),
        ({"row_labels": ["a", "b", "c"]}, "3 row labels for 2 rows"),
        ({"margin": -1}, "margin"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grid.compose(cells(), **kwargs)


def test_no_cell_may_be_larger_than_the_box():
    mixed = cells()
    mixed[0][1] = Image.new("RGB", (512, 256))
    with pytest.raises(ValueError, match="no cell may be larger"):
        grid.compose(mixed)


def test_a_smaller_cell_sits_centred_in_its_box():
    """A Size axis makes cells of different sizes: each is drawn in the middle of a box of the largest size."""
    wide, tall = Image.new("RGB", (8, 4), (255, 0, 0)), Image.new("RGB", (4, 8), (0, 0, 255))
    sheet = grid.compose([[wide, tall]], legend=False, cell_size=(8, 8), min_side=8)
    pixels = sheet.load()
    assert sheet.size == (16, 8)
    assert pixels[4, 0] == grid.BACKGROUND and pixels[4, 3] == (255, 0, 0)  # wide: rows 2-5 of its box
    assert pixels[8, 4] == grid.BACKGROUND and pixels[11, 4] == (0, 0, 255)  # tall: columns 2-5 of the next box

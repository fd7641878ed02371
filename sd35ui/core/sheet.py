"""Contact sheets (A1111's X/Y plot for SD3.5): parse the axes, plan the cells, guard the size, run, save.

One sheet = base settings + an X axis and an optional Y axis, each one of Steps, Guidance, Seed or Prompt S/R.
Every cell is the image `generate.generate` makes for the same settings, pixel for pixel: cells are denoised one
by one through `generate.denoise`; each distinct prompt is encoded once per sheet, and cells are decoded and
reported as they finish. The picture
itself is drawn by `sd35ui.core.grid` (pure PIL).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from sd35ui.core import cells, explorer_page, generate, grid, metadata, storage
from sd35ui.core.cells import cell_key
from sd35ui.core.quoting import quoted, safe_text
from sd35ui.core.settings import (
    PARAM,
    PARAMS,
    SD35_MEDIUM,
    GenerationSettings,
    ModelSpec,
    _number,
    check_layers,
    check_prompt,
    check_size,
    preset_size,
)

# An 8 x 8 sheet of SD3.5 Medium at 1024x1024 and 40 steps: about 2 hours on a mid-range GPU; on an H200 at least
# 73 s, 64 x the 1.14 s compute floor of one image (PERF.md).
MAX_CELLS = 64
MAX_AXIS_VALUES = MAX_CELLS  # a one-axis strip may use the whole sheet
MEGAPIXEL = 1024 * 1024  # one image at SD3.5's native 1024x1024
MAX_SHEET_PIXELS = 64 * MEGAPIXEL  # the cells of a sheet: 64 native images, 192 MB of RGB in memory
MAX_MARGIN = 200  # pixels between cells

DEFAULT_X_TYPE, DEFAULT_X_VALUES = "Guidance", "3, 4.5, 6, 7.5"  # below, at and above SD3.5's recommended 4.5
DEFAULT_Y_TYPE, DEFAULT_Y_VALUES = "Steps", "10, 20, 30, 40"  # up to SD3.5's recommended 40
SCRIPT_NAME = "X/Y/Z plot"  # A1111's name, so tools that read its grids recognise ours
SHEET_JSON_KEY = "sd35ui-sheet"  # PNG text chunk holding the whole sheet description
# The /contact_sheet API's inputs, in order: the prompts, the two axes, the other settings of the parameter table,
# then how the sheet is drawn.
SHEET_KEYS: tuple[str, ...] = (
    *("prompt", "negative_prompt", "x_axis", "x_values", "y_axis", "y_values"),
    *(p.name for p in PARAMS if p.kind != "text" and not p.api_tail),
    *("show_times", "margin", "legend", "swap"),
    *(p.name for p in PARAMS if p.api_tail),
    *("z_axis", "z_values", "w_axis", "w_values", "resume"),  # added with the sheet explorer: optional, last
)
SHEET_ADDED = 5  # the last SHEET_KEYS, after the settings added since: the outer axes and resume


@dataclass(frozen=True)
class AxisKind:
    key: str  # settings field (or "prompt" for search/replace)
    label: str  # shown on the sheet and written as "X Type"
    aliases: tuple[str, ...]


# The setting axes come from the parameter table (each setting with an `axis`); Prompt S/R, Negative S/R and Size
# (width and height together) are the sheet's own.
AXIS_KINDS: dict[str, AxisKind] = {
    **{p.name: AxisKind(p.name, p.axis[0], tuple(a.lower() for a in p.axis)) for p in PARAMS if p.axis},
    "prompt": AxisKind("prompt", "Prompt S/R", ("prompt", "prompt s/r", "prompt sr", "prompt_sr", "s/r")),
    "negative": AxisKind(
        "negative", "Negative S/R", ("negative s/r", "negative", "negative prompt", "negative prompt s/r", "neg s/r")
    ),
    "size": AxisKind("size", "Size", ("size", "sizes", "resolution", "aspect ratio", "width x height")),
}
TEXT_AXES = ("prompt", "negative")  # search/replace: the first value is the text to find
# How costly a change of each axis's value is between two cells: the costlier axis runs in the outer loop. A new
# prompt means the text encoders (under offload, moved to the GPU and back); a new size new tensor shapes (and, with
# torch.compile, a recompile); everything else is a number or a scheduler built from a config (T5 off zeroes part of
# an encoding already made).
SWITCH_COST = {"prompt": 2, "negative": 2, "size": 1}
AXIS_CHOICES = tuple(kind.label for kind in AXIS_KINDS.values())  # for a dropdown


def axis_kind(name: str, which: str = "X") -> AxisKind:
    """The axis kind called `name` (case-insensitive; "cfg" is Guidance), or a ValueError listing the choices."""
    wanted = " ".join(str(name).strip().lower().split())
    for kind in AXIS_KINDS.values():
        if wanted in kind.aliases:
            return kind
    raise ValueError(f"{which} axis: unknown type {quoted(name)}. Choose one of: {', '.join(AXIS_CHOICES)}.")


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _quote_csv(value: str) -> str:
    if value != value.strip() or any(c in value for c in ',"\n') or value == "":
        return '"' + value.replace('"', '""') + '"'
    return value


@dataclass(frozen=True)
class Axis:
    """One parsed, validated axis. For Prompt S/R, values[0] is the text to find and every value replaces it."""

    kind: str  # a key of AXIS_KINDS
    values: tuple[Any, ...]

    @property
    def label(self) -> str:
        return AXIS_KINDS[self.kind].label

    def labels(self) -> list[str]:
        """What the sheet writes over each column / beside each row."""
        name = {"prompt": "Prompt", "negative": "Negative"}.get(self.kind, self.label)
        return [f"{name}: {format_value(v) if v != '' else chr(34) * 2}" for v in self.values]

    def text(self) -> str:
        """The values in the input format (`3, 4.5, 6`; quoted prompts), which parse back to the same axis."""
        if self.kind in TEXT_AXES or PARAM.get(self.kind, PARAM["prompt"]).kind == "layers":
            return ", ".join(_quote_csv(v) for v in self.values)
        return ", ".join(format_value(v) for v in self.values)

    def apply(self, settings: GenerationSettings, value: Any) -> GenerationSettings:
        if self.kind == "prompt":
            find = self.values[0]
            return settings.replace(
                prompt=settings.prompt.replace(find, value),
                negative_prompt=settings.negative_prompt.replace(find, value),
            )
        if self.kind == "negative":
            return settings.replace(negative_prompt=settings.negative_prompt.replace(self.values[0], value))
        if self.kind == "size":
            width, height = size_of(value)
            return settings.replace(width=width, height=height)
        return settings.replace(**{self.kind: value})

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.label, "values": list(self.values), "labels": self.labels()}


_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_STEP_RANGE = re.compile(rf"^{_NUM}\s*-\s*{_NUM}\s*(?:\(\s*([+-]?)\s*{_NUM}\s*\))?$")
_COUNT_RANGE = re.compile(rf"^{_NUM}\s*-\s*{_NUM}\s*\[\s*(\d+)\s*\]$")
FORMAT_HELP = "a list like `10, 20, 40`, a range by step like `10-40(+10)`, or a range by count like `3-7.5[4]`"


_SIZE = re.compile(r"^\s*(\d{1,5})\s*[x×*]\s*(\d{1,5})\s*$", re.IGNORECASE)
_RATIO = re.compile(r"^\s*(\d{1,2})\s*:\s*(\d{1,2})\s*$")


def size_of(value: str) -> tuple[int, int]:
    """(width, height) of a Size axis value "1344x768"."""
    match = _SIZE.match(value)
    assert match is not None, value
    return int(match[1]), int(match[2])


def _split(text: str) -> list[str]:
    """Comma-separated items; double quotes keep commas inside an item (`"a, b", c`). ValueError for an item
    longer than the csv module reads (131,072 characters)."""
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    try:
        return [item.strip() for row in rows for item in row]
    except csv.Error:
        raise ValueError(
            f"a value is longer than {csv.field_size_limit():,} characters; shorten it (a prompt is read up to "
            "a few hundred words)."
        ) from None


def _expand(item: str, which: str, label: str) -> list[float]:
    """One list item: a number, `a-b`, `a-b(+s)`, `a-b(-s)` or `a-b[n]`, as numbers (not yet range-checked)."""
    try:
        return [float(item)]
    except ValueError:
        pass
    compact = item.strip()
    bounds = [float(number) for number in re.findall(_NUM, compact)]
    if not all(math.isfinite(number) and abs(number) < 1e15 for number in bounds):
        shown = item if len(item) <= 40 else item[:40] + "…"
        raise ValueError(f"{which} axis ({label}): a number in {quoted(shown)} is too large; use values in its range.")
    match = _COUNT_RANGE.match(compact)
    if match:
        start, end, count = float(match[1]), float(match[2]), int(match[3])
        if not 1 <= count <= MAX_AXIS_VALUES:
            raise ValueError(
                f"{which} axis ({label}): {quoted(item)} asks for {count} values; use 1 to {MAX_AXIS_VALUES} per axis."
            )
        if count == 1:
            return [start]
        return [start + (end - start) * i / (count - 1) for i in range(count)]
    match = _STEP_RANGE.match(compact)
    if match:
        start, end = float(match[1]), float(match[2])
        step = float(match[4]) if match[4] is not None else 1.0
        if match[3] == "-":
            step = -step
        if step == 0:
            raise ValueError(f"{which} axis ({label}): the step in {quoted(item)} is 0; use a step like (+10).")
        if (end - start) * step < 0:
            sign = "-" if end < start else "+"
            raise ValueError(
                f"{which} axis ({label}): {quoted(item)} steps away from its end; write the step as "
                f"({sign}{abs(step):g})."
            )
        count = math.floor((end - start) / step + 1e-9) + 1
        if count > MAX_AXIS_VALUES:
            raise ValueError(
                f"{which} axis ({label}): {quoted(item)} makes {count} values; the limit is {MAX_AXIS_VALUES} per "
                "axis. Use a bigger step or a range by count like `a-b[8]`."
            )
        return [start + step * i for i in range(count)]
    raise ValueError(f"{which} axis ({label}): cannot read {quoted(item)}. Use {FORMAT_HELP}.")


def parse_axis(name: str, text: str, which: str = "X") -> Axis:
    """Parse and validate one axis: `name` is its type (Steps, Guidance, Seed, Prompt S/R), `text` its values.

    Raises ValueError naming the axis, the bad value and the valid range or format. Prompt S/R is checked against
    the prompt by `make_spec` / `check_axis`."""
    kind = axis_kind(name, which)
    label = kind.label
    text = "" if text is None else str(text)
    try:
        items = _split(text)
    except ValueError as exc:
        raise ValueError(f"{which} axis ({label}): {exc}") from None
    if kind.key in TEXT_AXES:
        values = items
        if not values or not values[0]:
            example = '`red, blue, "deep green"`' if kind.key == "prompt" else '`blurry, "", "blurry, lowres"`'
            raise ValueError(
                f"{which} axis ({label}) needs the text to find first, then its replacements, e.g. {example}."
            )
        if len(values) > MAX_AXIS_VALUES:
            raise ValueError(f"{which} axis ({label}) has {len(values)} values; the limit is {MAX_AXIS_VALUES}.")
        return Axis(kind.key, tuple(values))
    if kind.key == "size":
        return _size_axis(items, which)
    if PARAM[kind.key].kind == "choice":
        return _choice_axis(PARAM[kind.key], items, which)
    if PARAM[kind.key].kind == "layers":
        return _layers_axis(PARAM[kind.key], items, which)
    if not items or all(not item for item in items):
        raise ValueError(f"{which} axis ({label}) has no values. Enter {FORMAT_HELP}.")
    rng = PARAM[kind.key].range
    assert rng is not None
    numbers: list[float] = []
    for item in items:
        if not item:
            raise ValueError(f"{which} axis ({label}): an empty value between commas in {quoted(text)}.")
        expanded = _expand(item, which, label)
        for number in expanded:
            if rng.integer and len(expanded) > 1 and _COUNT_RANGE.match(item):
                number = math.floor(number + 0.5)  # a count range of whole numbers rounds its even spacing
            shown = item if len(expanded) == 1 else f"{format_value(round(number, 4))} (from {item})"
            try:
                _number(kind.key, round(number, 4), rng)
            except ValueError:
                problem = "is outside the valid range" if math.isfinite(number) else "is not a finite number; use"
                if math.isfinite(number) and rng.minimum <= number <= rng.maximum:
                    problem = "is not a whole number; use whole numbers from"
                raise ValueError(f"{which} axis ({label}): {shown} {problem} {rng.describe()}.") from None
            numbers.append(number)
        if len(numbers) > MAX_AXIS_VALUES:
            raise ValueError(f"{which} axis ({label}) has more than {MAX_AXIS_VALUES} values; use fewer.")
    values = tuple(int(round(n)) if rng.integer else round(n, 4) + 0.0 for n in numbers)
    repeated = sorted({format_value(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(
            f"{which} axis ({label}) repeats {', '.join(repeated)}: each value makes its own "
            f"{'column' if which == 'X' else 'row'}, so list each once."
        )
    return Axis(kind.key, values)


def _choice_axis(param: Any, items: list[str], which: str) -> Axis:
    """An axis over a setting with named choices (Sampler: `Euler, Heun`)."""
    if not items or not all(items):
        raise ValueError(f"{which} axis ({param.label}) needs values from: {', '.join(param.choices)}.")
    try:
        values = tuple(param.choice(item) for item in items)
    except ValueError as exc:
        raise ValueError(f"{which} axis: {exc}") from None
    if len(set(values)) < len(values):
        raise ValueError(f"{which} axis ({param.label}) repeats a value: list each once.")
    return Axis(param.name, values)


def _size_axis(items: list[str], which: str) -> Axis:
    """A Size axis: `1024x1024, 1344x768`, or aspect ratios (`1:1, 16:9, 9:16`) that `resolve_sizes` turns into
    the model's preset sizes; sizes are checked against the model there too."""
    if not items or not all(items):
        raise ValueError(
            f"{which} axis (Size) needs sizes like `1024x1024, 1344x768` or aspect ratios like `1:1, 16:9`."
        )
    values = []
    for item in items:
        match, ratio = _SIZE.match(item), _RATIO.match(item)
        if match is None and ratio is None:
            raise ValueError(
                f"{which} axis (Size): cannot read {quoted(item)}; write a size as WIDTHxHEIGHT (`1344x768`) or an "
                "aspect ratio (`16:9`)."
            )
        values.append(f"{int(match[1])}x{int(match[2])}" if match else f"{int(ratio[1])}:{int(ratio[2])}")
    if len(set(values)) < len(values):
        raise ValueError(f"{which} axis (Size) repeats a value: list each once.")
    return Axis("size", tuple(values))


def resolve_sizes(axis: Axis, model: ModelSpec, which: str = "X") -> Axis:
    """A Size axis with each aspect ratio replaced by the model's preset size for it, every size checked against
    the model's range and multiple of 16."""
    values = []
    for value in axis.values:
        if ":" in value:
            w, _, h = value.partition(":")
            if not (int(w) and int(h)):
                raise ValueError(f"{which} axis (Size): the aspect ratio {value} has a zero side.")
            width, height = preset_size(int(w) / int(h), model)
        else:
            width, height = size_of(value)
        try:
            check_size("width", width, model)
            check_size("height", height, model)
        except ValueError as exc:
            raise ValueError(f"{which} axis (Size), {value}: {exc}") from None
        values.append(f"{width}x{height}")
    if len(set(values)) < len(values):
        raise ValueError(f"{which} axis (Size): two values make the same size ({', '.join(values)}); list each once.")
    return Axis("size", tuple(values))


def _layers_axis(param: Any, items: list[str], which: str) -> Axis:
    """An axis over skipped layers: each value a quoted list (`"7, 8, 9", "7", "8 9"`); checked against the model
    by `make_spec`."""
    if not items or not all(items):
        raise ValueError(f'{which} axis ({param.axis[0]}) needs layer lists like `"7, 8, 9", "7", "8, 9"`.')
    try:
        values = tuple(check_layers(param.name, item, _ANY_LAYERS) for item in items)
    except ValueError as exc:
        raise ValueError(f"{which} axis: {exc}") from None
    if len(set(values)) < len(values):
        raise ValueError(f"{which} axis ({param.axis[0]}) repeats a value: list each once.")
    return Axis(param.name, values)


# Layer lists are read before the model is known, then checked against it (`check_axis`).
_ANY_LAYERS = ModelSpec("any model", 1024, 1440, transformer_layers=1000)


def check_axis(axis: Axis, base: GenerationSettings, which: str = "X", model: ModelSpec | None = None) -> None:
    """Checks that need the base settings or the model: S/R text must occur in the prompt (Prompt S/R: or the
    negative prompt; Negative S/R: the negative prompt), layers must exist in the model, every cell's settings must
    go together (a schedule only with Euler)."""
    if model is not None and axis.kind == "skip_layers":
        for value in axis.values:
            try:
                check_layers("skip_layers", value, model)
            except ValueError as exc:
                raise ValueError(f"{which} axis: {exc}") from None
    if axis.kind not in TEXT_AXES:
        for value in axis.values:
            try:
                axis.apply(base, value).check_combination()
            except ValueError as exc:
                raise ValueError(f"{which} axis ({axis.label}: {format_value(value)}): {exc}") from None
        return
    find = axis.values[0]
    if axis.kind == "negative":
        if find not in base.negative_prompt:
            raise ValueError(
                f"{which} axis (Negative S/R): the text to find, {quoted(find)}, is not in the negative prompt. The "
                "first value is the text to replace and must appear in the negative prompt exactly (case and spaces "
                "count)."
            )
        for value in axis.values:
            check_prompt("negative_prompt", base.negative_prompt.replace(find, value), required=False)
        return
    if find not in base.prompt and find not in base.negative_prompt:
        raise ValueError(
            f"{which} axis (Prompt S/R): the text to find, {quoted(find)}, is not in the prompt. The first value is "
            "the text to replace and must appear in the prompt exactly (case and spaces count)."
        )
    for value in axis.values:
        check_prompt("prompt", base.prompt.replace(find, value), required=True)


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


def _cost(settings: GenerationSettings) -> int:
    """Transformer passes for one cell: two per step with classifier-free guidance, one without, plus skip-layer
    guidance's."""
    return generate.transformer_passes(settings)


def estimate_seconds(cells: Sequence[Cell], done: Sequence[CellResult]) -> float | None:
    """Seconds left for the cells not in `done`, from the time per transformer pass measured so far (None until
    the first cell is timed)."""
    if not done:
        return None
    seconds = sum(r.seconds for r in done)
    passes = sum(_cost(r.settings) for r in done)
    finished = {r.cell.index for r in done}
    left = sum(_cost(c.settings) for c in cells if c.index not in finished)
    return seconds / max(1, passes) * left


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    result: generate.GenerationResult  # image, exact settings, model, timings (seconds)
    reused: bool = False  # read from a cell saved earlier with the same settings, model and recipe (resume)
    source: Path | None = None  # the file a reused cell was read from (`save_cell` links to it, writes nothing)

    @property
    def image(self) -> Image.Image:
        return self.result.image

    @property
    def settings(self) -> GenerationSettings:
        return self.result.settings

    @property
    def seconds(self) -> float:
        return self.result.timings["total"]


@dataclass
class SheetResult:
    spec: SheetSpec  # resolved: the seed actually used
    model: str
    cells: list[CellResult] = field(default_factory=list)  # finished cells, in the order they finished
    stopped: bool = False  # Stop was pressed; `cells` holds what finished before
    seconds: float = 0.0
    first_steps_shared: int = 0  # first transformer calls answered from another cell's (generate.FirstStepCache)

    @property
    def complete(self) -> bool:
        return len(self.cells) == self.spec.n_cells

    @property
    def reused(self) -> int:
        """Cells taken from earlier saved ones rather than generated (resume)."""
        return sum(done.reused for done in self.cells)

    def cell_at(self, row: int, col: int) -> CellResult | None:
        for done in self.cells:
            if done.cell.row == row and done.cell.col == col:
                return done
        return None

    def image(self) -> Image.Image:
        """The contact sheet picture (missing cells grey when the sheet was stopped)."""
        return sheet_image(self)


class SheetOutOfMemory(generate.GenerationOutOfMemory):
    """The GPU ran out of memory during a sheet; `result` holds the cells finished before."""

    def __init__(self, message: str, result: SheetResult) -> None:
        super().__init__(message)
        self.result = result


ProgressCallback = Callable[[int, int, int, int], None]  # (cell index from 0, cells, step done, steps)
CellCallback = Callable[[CellResult], None]


class _Encoder:
    """Each distinct (prompt, negative, guided?, T5) encoded once per sheet, through the shared LRU cache (T5 off
    is the same encoding with T5's part zeroed)."""

    def __init__(self, pipe: Any, cache: generate.PromptCache) -> None:
        self.pipe, self.cache = pipe, cache
        self.known: dict[tuple[str, str, bool, str], generate.Embeddings] = {}
        self.first_steps: generate.FirstStepCache | None = None  # the sheet's shared first transformer calls

    def get(self, settings: GenerationSettings) -> generate.Embeddings:
        key = (settings.prompt, settings.negative_prompt, generate.is_guided(settings.guidance), settings.t5_prompt)
        if key not in self.known:
            self.known[key] = generate.embeddings_for(self.pipe, settings, self.cache)
        return self.known[key]


def read_cell_image(path: Path, settings: GenerationSettings) -> Image.Image | None:
    """The RGB pixels of a saved cell, or None when the file is not a picture of exactly `settings`' size that
    decodes whole (gone, a symlink, another size, a forged header, a damaged or oversized chunk): such a cell is
    made again, never used. The size is checked from the header, before any pixel is decoded."""
    if path.is_symlink():  # resume and loading read only what this app wrote, never what a link points at
        return None
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.size != (settings.width, settings.height):
                return None
            return image.convert("RGB")
    # Pillow reports a bad file as OSError, ValueError (a text chunk over its limit), SyntaxError, EOFError,
    # struct.error, zlib.error or DecompressionBombError: every one means "make this cell again".
    except Exception:
        return None


def reused_cell(cell: Cell, path: Path, model: str, recipe: Mapping[str, Any]) -> CellResult | None:
    """A cell read back from `path` (found by `reusable_cells`) instead of generated, or None when that file cannot
    stand for it (`read_cell_image`)."""
    pixels = read_cell_image(path, cell.settings)
    if pixels is None:
        return None
    timings = {"encode": 0.0, "denoise": 0.0, "decode": 0.0, "total": 0.0}
    made = generate.GenerationResult(pixels, cell.settings, model, timings, dict(recipe))
    return CellResult(cell, made, reused=True, source=Path(path))


def run_sheet(
    pipe: Any,
    spec: SheetSpec,
    on_progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    on_cell: CellCallback | None = None,
    *,
    cache: generate.PromptCache | None = None,
    max_cells: int = MAX_CELLS,
    max_pixels: int = MAX_SHEET_PIXELS,
    reuse: Mapping[str, Path] | None = None,
) -> SheetResult:
    """Make every cell of `spec` and return them (the picture: `result.image()`; files: `save_sheet`).

    The size guard runs first. `on_cell` gets each cell as soon as it is decoded; `on_progress(cell, cells, step,
    steps)` after every denoising step. Setting `stop` ends the sheet within one step; finished cells are kept and
    `stopped` is set. Cells are denoised one at a time, so each is pixel for pixel its single image (a batched loop
    was removed: 1.03-1.09x faster on the tiny model, and it broke that identity). Out of GPU memory raises
    `SheetOutOfMemory` (a `GenerationOutOfMemory`) holding the finished cells. `reuse` (`explore.reusable_cells`)
    maps `cell_key`s to saved cells: those are read back, not generated (resume), and reported like the others with
    `reused` set. Under model CPU offload the sheet's texts are all encoded first and the transformer and VAE stay
    on the GPU for every cell (`generate.resident_models`), not moved there and back per cell; all is offloaded at
    the end, also when the sheet stops or fails."""
    import torch

    from sd35ui.core.pipeline import free_memory

    spec = spec.resolved()
    check_sheet(spec, max_cells, max_pixels)
    cells = plan_sheet(spec)
    encoder = _Encoder(pipe, cache if cache is not None else generate.prompt_cache)
    encoder.first_steps = generate.FirstStepCache()
    result = SheetResult(spec=spec, model=generate.model_name(pipe))
    start = time.perf_counter()
    cells = _take_reused(pipe, cells, reuse or {}, result, on_cell)
    try:
        with generate.resident_models(pipe):  # the end offloads every model, before the handlers below run
            _encode_up_front(pipe, cells, encoder, stop)
            for cell in cells:
                if stop is not None and stop.is_set():
                    result.stopped = True
                    break
                try:
                    with generate.pipe_lock(pipe):
                        done = _run_cell(pipe, cell, encoder, len(cells), on_progress, stop)
                except generate.GenerationStopped:
                    result.stopped = True
                    break
                result.cells.append(done)
                if on_cell is not None:
                    on_cell(done)
    except torch.OutOfMemoryError as exc:
        encoder.known.clear()
        pipe.maybe_free_model_hooks()
        free_memory()
        result.seconds = time.perf_counter() - start
        what = f"cell {len(result.cells) + 1} of {len(cells)} of the sheet"
        raise SheetOutOfMemory(generate.out_of_memory_advice(what), result) from exc
    result.seconds = time.perf_counter() - start
    result.first_steps_shared = encoder.first_steps.hits
    return result


def _encode_up_front(pipe: Any, cells: list[Cell], encoder: _Encoder, stop: threading.Event | None) -> None:
    """Under model CPU offload, every text the cells need encoded before the first cell, so that the text encoders
    take the GPU once and the transformer then keeps it for the whole sheet. Without offload, each cell encodes its
    own as it comes (the same embeddings: `_Encoder` keeps one per distinct text for the sheet)."""
    if not generate.offloads_models(pipe) or (stop is not None and stop.is_set()):
        return
    with generate.pipe_lock(pipe):
        for cell in cells:
            encoder.get(cell.settings)


def _take_reused(
    pipe: Any, cells: list[Cell], reuse: Mapping[str, Path], result: SheetResult, on_cell: CellCallback | None
) -> list[Cell]:
    """`take_reused` for the cells of a sheet on `pipe`."""
    if not reuse:
        return cells
    from sd35ui.core.pipeline import recipe

    return take_reused(cells, generate.model_name(pipe), recipe(pipe), reuse, result, on_cell)


def take_reused(
    cells: Sequence[Cell],
    model: str,
    recipe: Mapping[str, Any],
    reuse: Mapping[str, Path],
    result: SheetResult,
    on_cell: CellCallback | None,
) -> list[Cell]:
    """Read back the cells `reuse` holds for `model` loaded as `recipe` (reported at once through `on_cell`);
    returns the cells left to make."""
    left = []
    for cell in cells:
        path = reuse.get(cell_key(cell.settings, model, recipe))
        done = reused_cell(cell, path, model, recipe) if path is not None else None
        if done is None:  # none saved, or deleted, damaged or of another size since: make it again
            left.append(cell)
            continue
        result.cells.append(done)
        if on_cell is not None:
            on_cell(done)
    return left


def _run_cell(
    pipe: Any,
    cell: Cell,
    encoder: _Encoder,
    n_cells: int,
    on_progress: ProgressCallback | None,
    stop: threading.Event | None,
) -> CellResult:
    """Encode (once per sheet), denoise and decode one cell, as `generate.generate` would make it."""

    def on_step(step: int, total: int) -> None:
        if on_progress is not None:
            on_progress(cell.index, n_cells, step, total)

    from sd35ui.core.pipeline import recipe

    t0 = time.perf_counter()
    embeddings = encoder.get(cell.settings)
    t1 = time.perf_counter()
    latents = generate.denoise(pipe, embeddings, cell.settings, on_step, stop, encoder.first_steps)
    t2 = time.perf_counter()
    image = generate.decode(pipe, latents)[0]
    timings = {"encode": t1 - t0, "denoise": t2 - t1, "decode": time.perf_counter() - t2}
    timings["total"] = sum(timings.values())
    made = generate.GenerationResult(image, cell.settings, generate.model_name(pipe), timings, recipe(pipe))
    return CellResult(cell, made)


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


def sheet_image(result: SheetResult) -> Image.Image:
    """Draw a (possibly unfinished) sheet with `sd35ui.core.grid`: one grid, or with outer axes one grid per
    sub-sheet, each headed by its outer values, stacked top to bottom."""
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

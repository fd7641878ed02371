"""A contact sheet's axes: the kinds of axis (one per setting of the parameter table that has one, plus Prompt S/R,
Negative S/R and Size), parsing and checking their values (`parse_axis`, `check_axis`), and the sheet's limits.
Part of the sheet engine, whose front is `sd35ui.core.sheet`."""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from typing import Any

from sd35ui.core.quoting import quoted
from sd35ui.core.settings import (
    PARAM,
    PARAMS,
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

"""Generation settings: the parameter table, the frozen settings object, presets and validation.

Every generation setting is declared once, in `PARAMS`: its name (the settings field, the API parameter and the
JSON key), type, range, default, help text, A1111 metadata key, CLI flag and sheet axis. The CLI flags
(`add_settings_arguments`), validation (`GenerationSettings.validated`), the PNG metadata (`sd35ui.core.metadata`),
the sheet axes (`sd35ui.core.sheet`), the Gradio controls and ZeroGPU durations (`sd35ui.app`) are derived from it;
the explicit `/generate` API signature is checked against it by tests/unit/test_params.py. Everything here is pure
Python: no torch, no gradio.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from sd35ui.core.quoting import quoted

SIZE_MULTIPLE = 16  # VAE downscale 8 x transformer patch size 2: latents must tile into whole patches
MAX_SEED = 2**31 - 1  # the range the official SD3.5 Space and A1111 use, so seeds are portable between tools
MAX_PROMPT_CHARS = 2000  # CLIP reads 77 tokens and T5 256; far longer text is a mistake or an attack


@dataclass(frozen=True)
class Range:
    """The valid values of one numeric setting, with the UI's default and slider step."""

    label: str
    minimum: float
    maximum: float
    default: float
    step: float
    integer: bool

    def describe(self) -> str:
        fmt = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        return f"{fmt(self.minimum)} to {fmt(self.maximum)}"


# Skip-layer guidance as Stability's reference sampler for SD3.5 Medium runs it (with the model's own layers): the
# Generate tab's "Recommended" button.
SLG_RECOMMENDED: dict[str, float] = {"slg_scale": 2.5, "slg_start": 0.01, "slg_stop": 0.2}
SLG_KEYS = ("slg_scale", "skip_layers", "slg_start", "slg_stop")
STEP_PRESETS: dict[str, int] = {"Quick draft": 20, "Standard": 40, "High quality": 50}
GUIDANCE_PRESETS: dict[str, float] = {"Abstract": 3.5, "General": 4.5, "Precise": 7.5}


@dataclass(frozen=True)
class ModelSpec:
    """What a model declares about the images it makes."""

    name: str
    default_size: int
    max_size: int
    min_size: int = 256
    default_steps: int = 40  # what the model's guide recommends; sliders open here
    examples: tuple[str, ...] = ()  # prompts shown under the prompt box
    # the Compare tab opens on: X type, X values, Y type, Y values (the usage guide's question for SD3.5)
    sheet_axes: tuple[str, str, str, str] = ("Guidance", "3, 4.5, 6, 7.5", "Steps", "10, 20, 30, 40")
    transformer_layers: int = 24  # transformer blocks: the layers skip-layer guidance may skip are 0 to this - 1
    skip_layers: tuple[int, ...] = (7, 8, 9)  # what skip-layer guidance skips by default (SD3.5 Medium's model card)

    def steps_range(self) -> Range:
        return dataclasses.replace(RANGES["steps"], default=self.default_steps)

    def size_range(self) -> Range:
        return Range("Size", self.min_size, self.max_size, self.default_size, SIZE_MULTIPLE, integer=True)

    def size_presets(self) -> dict[str, tuple[int, int]]:
        """Width x height per aspect ratio ("16:9", "9:16", ...) at about the pixels of the model's default size,
        multiples of 16 within its size range (SD3.5 Medium: about one megapixel)."""
        return {label: preset_size(w / h, self) for label, (w, h) in ASPECT_RATIOS.items()}


# Aspect ratios offered as size presets: landscape, then the portraits.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:2": (3, 2),
    "16:9": (16, 9),
    "21:9": (21, 9),
    "3:4": (3, 4),
    "2:3": (2, 3),
    "9:16": (9, 16),
}


def preset_size(ratio: float, spec: ModelSpec) -> tuple[int, int]:
    """The multiple-of-16 size within the model's range closest to aspect `ratio` at the default size's pixels:
    the one with the least (4 x ratio error + area error), both as log ratios. Hand-written: the rounding rule is
    ours (1360x768 for 16:9 at one megapixel, 1440x624 for 21:9 where 1440 is SD3.5's widest)."""
    area = spec.default_size**2
    sizes = range(spec.min_size, spec.max_size + 1, SIZE_MULTIPLE)

    def score(wh: tuple[int, int]) -> float:
        w, h = wh
        return 4 * abs(math.log(w / h / ratio)) + abs(math.log(w * h / area))

    return min(((w, h) for w in sizes for h in sizes), key=score)


SD35_MEDIUM = ModelSpec(
    "stabilityai/stable-diffusion-3.5-medium",
    default_size=1024,
    max_size=1440,
    min_size=256,
    examples=(
        "a misty pine forest at dawn, soft volumetric light, matte painting background",
        "concept art of a floating desert city, warm sunset palette, wide establishing shot",
        "a cozy reading nook by a rainy window, watercolor illustration",
    ),
)


@dataclass(frozen=True)
class Param:
    """One generation setting, declared once. `kind` says how a value is checked: "text" (a prompt), "number"
    (within `range`), "size" (within the model's size range, a multiple of 16), "seed" (a number, or empty for
    random), "choice" (one of `choices`) or "layers" (transformer layer numbers like "7, 8, 9", or empty for the
    model's own)."""

    name: str  # the GenerationSettings field, the API parameter name and the key in the sd35ui JSON chunk
    label: str  # the UI's label
    help: str  # the UI's info line, the CLI's help and the API docs
    kind: Literal["text", "number", "size", "seed", "choice", "layers"]
    cli: str  # the CLI flag
    range: Range | None = None  # numbers: valid values, the default and the slider step
    a1111: str | None = None  # the key in A1111's `parameters` line; width and height share "Size" (WxH)
    axis: tuple[str, ...] = ()  # sheet axis: its label first, then other names it is typed as
    required: bool = False
    # Added after the API was published: the API takes it after the first settings (and /generate's
    # randomize_seed), with its default, so every older call, positional ones included, keeps working.
    api_tail: bool = False
    choices: tuple[str, ...] = ()  # "choice": the values it takes, the default first

    def default_for(self, spec: ModelSpec) -> Any:
        """The value used when none is given: the model's own steps and size, the table's otherwise."""
        if self.kind == "size":
            return spec.default_size
        if self.name == "steps":
            return spec.default_steps
        if self.kind == "seed":
            return None
        if self.kind in ("text", "layers"):
            return ""
        if self.kind == "choice":
            return self.choices[0]
        assert self.range is not None
        return self.range.default

    def choice(self, value: Any) -> str:
        """The choice `value` names, case-insensitively and without a parenthesised note ("Euler (flow matching)",
        as sd35ui 0.1 wrote the sampler, is Euler), or a ValueError listing the choices."""
        name = str(value).split("(")[0].strip().casefold() if isinstance(value, str) else None
        for choice in self.choices:
            if choice.casefold() == name:
                return choice
        raise ValueError(f"{self.label} ({self.name}) is {quoted(value)}; choose one of {', '.join(self.choices)}.")

    def range_for(self, spec: ModelSpec) -> Range:
        if self.kind == "size":
            return spec.size_range()
        if self.name == "steps":
            return spec.steps_range()
        assert self.range is not None
        return self.range

    def check(self, value: Any, spec: ModelSpec) -> Any:
        """`value` as this setting's type, or a ValueError naming the setting, the value and what is valid."""
        if self.kind == "text":
            return check_prompt(self.name, value, required=self.required)
        if self.kind == "size":
            return check_size(self.name, value, spec)
        if self.kind == "seed" and (value is None or value == ""):
            return None
        if self.kind == "choice":
            return self.choice(value)
        if self.kind == "layers":
            return check_layers(self.name, value, spec)
        assert self.range is not None
        number = _number(self.name, value, self.range)
        return int(number) if self.range.integer else round(number, 4)


PARAMS: tuple[Param, ...] = (
    Param("prompt", "Prompt", "what the image should show", "text", "--prompt", required=True),
    Param("negative_prompt", "Negative prompt", "what it should not show (may be empty)", "text", "--negative-prompt"),
    Param(
        "steps",
        "Steps",
        "denoising steps: fewer are faster and rougher",
        "number",
        "--steps",
        Range("Steps", 1, 50, 40, 1, integer=True),
        a1111="Steps",
        axis=("Steps", "step"),
    ),
    Param(
        "guidance",
        "Guidance scale",
        "classifier-free guidance: higher follows the prompt more strictly",
        "number",
        "--guidance",
        Range("Guidance scale", 1.0, 10.0, 4.5, 0.1, integer=False),
        a1111="CFG scale",
        axis=("Guidance", "guidance scale", "cfg", "cfg scale", "cfg_scale"),
    ),
    Param("width", "Width", "image width in pixels, a multiple of 16", "size", "--width", a1111="Size"),
    Param("height", "Height", "image height in pixels, a multiple of 16", "size", "--height", a1111="Size"),
    Param(
        "seed",
        "Seed",
        f"the starting noise, 0-{MAX_SEED}: the same seed and settings make the same image",
        "seed",
        "--seed",
        Range("Seed", 0, MAX_SEED, 0, 1, integer=True),
        a1111="Seed",
        axis=("Seed", "seeds"),
    ),
    Param(
        "shift",
        "Shift",
        "how the noise schedule spends its steps: higher spends more of them on the overall layout, lower on "
        "detail (SD3.5 Medium's own: 3)",
        "number",
        "--shift",
        Range("Shift", 1.0, 10.0, 3.0, 0.1, integer=False),
        a1111="Shift",
        axis=("Shift", "schedule shift", "sigma shift"),
        api_tail=True,
    ),
    Param(
        "sampler",
        "Sampler",
        "how each step moves towards the image: Euler (one model call a step, SD3's own), Heun (two calls a step "
        "but the last, more accurate in few steps) or DPM++ 2M (one call a step, second order from the step "
        "before; Stability's own sampler for SD3.5 Medium)",
        "choice",
        "--sampler",
        a1111="Sampler",
        axis=("Sampler", "samplers"),
        api_tail=True,
        choices=("Euler", "Heun", "DPM++ 2M"),
    ),
    Param(
        "schedule",
        "Schedule type",
        "how the noise levels are spaced between the steps (Euler only): Default (SD3's own, shifted evenly), "
        "Karras, Exponential or Beta",
        "choice",
        "--schedule",
        a1111="Schedule type",
        axis=("Schedule type", "schedule", "scheduler", "schedules"),
        api_tail=True,
        choices=("Default", "Karras", "Exponential", "Beta"),
    ),
    Param(
        "slg_scale",
        "Skip-layer guidance",
        "skip-layer guidance scale, 0 = off: a third model pass with some layers skipped, pushed away from, for "
        "better anatomy and structure (SD3.5 Medium's card recommends it; 2.5 in Stability's own sampler). Only with "
        "guidance above 1",
        "number",
        "--slg-scale",
        Range("Skip-layer guidance scale", 0.0, 10.0, 0.0, 0.1, integer=False),
        a1111="SLG scale",
        axis=("SLG scale", "skip-layer guidance", "skip layer guidance", "slg", "skip-layer guidance scale"),
        api_tail=True,
    ),
    Param(
        "skip_layers",
        "Skipped layers",
        "the transformer layers skip-layer guidance skips, like 7, 8, 9; empty: the model's own",
        "layers",
        "--skip-layers",
        a1111="SLG layers",
        axis=("Skip layers", "skipped layers", "slg layers"),
        api_tail=True,
    ),
    Param(
        "slg_start",
        "SLG start",
        "where skip-layer guidance starts, as a fraction of the steps",
        "number",
        "--slg-start",
        Range("SLG start", 0.0, 1.0, 0.01, 0.01, integer=False),
        a1111="SLG start",
        axis=("SLG start",),
        api_tail=True,
    ),
    Param(
        "slg_stop",
        "SLG stop",
        "where skip-layer guidance stops, as a fraction of the steps",
        "number",
        "--slg-stop",
        Range("SLG stop", 0.0, 1.0, 0.2, 0.01, integer=False),
        a1111="SLG stop",
        axis=("SLG stop",),
        api_tail=True,
    ),
    Param(
        "t5_prompt",
        "T5",
        "the T5-XXL text encoder's part of the prompt: On, or Off (zeros, as when T5 is not loaded) to see what "
        "it adds",
        "choice",
        "--t5-prompt",
        a1111="T5",
        axis=("T5", "t5 on/off", "t5 encoder"),
        api_tail=True,
        choices=("On", "Off"),
    ),
)
PARAM: dict[str, Param] = {p.name: p for p in PARAMS}
# The /generate API's inputs, in order: every setting, then whether to draw a random seed instead of `seed`.
GENERATE_KEYS: tuple[str, ...] = (
    *(p.name for p in PARAMS if not p.api_tail),
    "randomize_seed",
    *(p.name for p in PARAMS if p.api_tail),
)
RANGES: dict[str, Range] = {p.name: p.range for p in PARAMS if p.range is not None}


def _number(field: str, value: Any, rng: Range) -> float:
    """Coerce `value` to a finite number in `rng`, or raise a ValueError naming the field, value and range."""
    if isinstance(value, bool):
        raise ValueError(
            f"{rng.label} ({field}) must be a number, got {quoted(value)}. Valid range: {rng.describe()}."
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{rng.label} ({field}) must be a number, got {quoted(value)}. Valid range: {rng.describe()}."
        ) from None
    if not math.isfinite(number):
        raise ValueError(
            f"{rng.label} ({field}) must be a finite number, got {quoted(value)}. Valid range: {rng.describe()}."
        )
    if rng.integer and number != int(number):
        raise ValueError(
            f"{rng.label} ({field}) must be a whole number, got {quoted(value)}. Valid range: {rng.describe()}."
        )
    if not rng.minimum <= number <= rng.maximum:
        raise ValueError(f"{rng.label} ({field}) is {quoted(value)}, outside the valid range {rng.describe()}.")
    return number


def check_size(field: str, value: Any, spec: ModelSpec) -> int:
    rng = spec.size_range()
    number = _number(field, value, rng)
    size = int(number)
    if size % SIZE_MULTIPLE:
        lower, upper = size // SIZE_MULTIPLE * SIZE_MULTIPLE, (size // SIZE_MULTIPLE + 1) * SIZE_MULTIPLE
        candidates = [v for v in (lower, upper) if spec.min_size <= v <= spec.max_size]
        candidates.sort(key=lambda v: (abs(v - size), v))
        raise ValueError(
            f"{field.capitalize()} must be a multiple of {SIZE_MULTIPLE}, got {size}. "
            f"Use {' or '.join(map(str, candidates))} instead (valid range {rng.describe()} for {spec.name})."
        )
    return size


def check_layers(field: str, value: Any, spec: ModelSpec) -> str:
    """Transformer layer numbers ("7, 8, 9", "7 8 9", "[7, 8, 9]" or a list) as "7, 8, 9", sorted and each once;
    "" stays "" (the model's own). Raises ValueError naming the model's layers."""
    if value is None:
        return ""
    items = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value).strip("[] ").replace(",", " ")
    words = items if isinstance(items, list) else items.split()
    last = spec.transformer_layers - 1
    valid = f"whole numbers from 0 to {last} ({spec.name} has {spec.transformer_layers} transformer layers)"
    layers = set()
    for word in words:
        if not word.strip().isdigit():
            raise ValueError(f"Skipped layers ({field}): cannot read {quoted(word)}; use {valid}, like 7, 8, 9.")
        layer = int(word)
        if layer > last:
            raise ValueError(f"Skipped layers ({field}): there is no layer {layer}; use {valid}.")
        layers.add(layer)
    return ", ".join(map(str, sorted(layers)))


def check_prompt(field: str, value: Any, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{field.replace('_', ' ').capitalize()} must be text, got {type(value).__name__}.")
    if "\x00" in value:
        raise ValueError(f"{field.replace('_', ' ').capitalize()} contains a NUL character; remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no tokenizer can read it
        bad = value[exc.start]
        raise ValueError(
            f"{field.replace('_', ' ').capitalize()} contains an invalid character (U+{ord(bad):04X}, half of a "
            f"UTF-16 pair) at position {exc.start}; remove it or paste the text again."
        ) from None
    if required and not value.strip():
        raise ValueError("The prompt is empty: describe the image you want, e.g. 'a watercolor fox in a forest'.")
    if len(value) > MAX_PROMPT_CHARS:
        raise ValueError(
            f"{field.replace('_', ' ').capitalize()} is {len(value)} characters long; the limit is "
            f"{MAX_PROMPT_CHARS} (the text encoders read at most 77 + 256 tokens). Shorten it."
        )
    return value


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def check_flag(field: str, value: Any) -> bool:
    """A yes/no setting from loosely typed input: a bool, 0/1, or the text true/false (yes/no, on/off), so that the
    string "false" from a JSON or curl client means false. Raises ValueError on anything else."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{field.replace('_', ' ').capitalize()} must be true or false, got {quoted(value)}.")


def random_seed() -> int:
    return random.SystemRandom().randint(0, MAX_SEED)


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines one image: one field per entry of `PARAMS`, in its order, with SD3.5 Medium's
    defaults (tests/unit/test_params.py checks both). `seed=None` means "draw a random seed at generation time"."""

    prompt: str
    negative_prompt: str = ""
    steps: int = SD35_MEDIUM.default_steps
    guidance: float = RANGES["guidance"].default
    width: int = SD35_MEDIUM.default_size
    height: int = SD35_MEDIUM.default_size
    seed: int | None = None
    shift: float = RANGES["shift"].default
    sampler: str = "Euler"
    schedule: str = "Default"
    slg_scale: float = RANGES["slg_scale"].default
    skip_layers: str = ""  # the model's own (ModelSpec.skip_layers)
    slg_start: float = RANGES["slg_start"].default
    slg_stop: float = RANGES["slg_stop"].default
    t5_prompt: str = "On"

    @classmethod
    def validated(cls, spec: ModelSpec = SD35_MEDIUM, **values: Any) -> GenerationSettings:
        """Build settings from loosely typed input (UI, API, CLI), raising ValueError on anything invalid. A setting
        that is not given takes its default (`Param.default_for`; the prompt is required)."""
        unknown = set(values) - set(PARAM)
        if unknown:
            raise ValueError(f"Unknown setting(s): {', '.join(quoted(name) for name in sorted(map(str, unknown)))}.")
        out = {p.name: p.check(values[p.name] if p.name in values else p.default_for(spec), spec) for p in PARAMS}
        return cls(**out).check_combination()

    def check_combination(self) -> GenerationSettings:
        """These settings, or a ValueError for values that are valid alone but not together."""
        if self.schedule != "Default" and self.sampler != "Euler":
            raise ValueError(
                f"The {self.schedule} schedule works with the Euler sampler only ({self.sampler} spaces its own "
                "steps); choose Euler or the Default schedule."
            )
        if self.slg_scale > 0 and self.slg_start >= self.slg_stop:
            raise ValueError(
                f"Skip-layer guidance starts at {self.slg_start:g} of the steps and stops at {self.slg_stop:g}: the "
                "start must come before the stop (SD3.5 Medium: 0.01 to 0.2)."
            )
        return self

    @property
    def skip_layer_guided(self) -> bool:
        """Whether skip-layer guidance runs: a scale above 0, with classifier-free guidance on (as in diffusers)."""
        return self.slg_scale > 0 and self.guidance > 1.0

    def validate(self, spec: ModelSpec = SD35_MEDIUM) -> GenerationSettings:
        return GenerationSettings.validated(spec, **dataclasses.asdict(self))

    def with_seed(self) -> GenerationSettings:
        """These settings with a concrete seed (a random one drawn if none was set)."""
        return self if self.seed is not None else dataclasses.replace(self, seed=random_seed())

    def replace(self, **changes: Any) -> GenerationSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

"""Generation settings: the range table, the frozen settings object, presets and validation.

The UI builds its sliders from `RANGES`, and `GenerationSettings.validate` checks against the same table, so the two
can never disagree. Everything here is pure Python: no torch, no gradio.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any

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


RANGES: dict[str, Range] = {
    "steps": Range("Steps", 1, 50, 40, 1, integer=True),
    "guidance": Range("Guidance scale", 1.0, 10.0, 4.5, 0.1, integer=False),
    "seed": Range("Seed", 0, MAX_SEED, 0, 1, integer=True),
}

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

    def steps_range(self) -> Range:
        return dataclasses.replace(RANGES["steps"], default=self.default_steps)

    def size_range(self) -> Range:
        return Range("Size", self.min_size, self.max_size, self.default_size, SIZE_MULTIPLE, integer=True)


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


def _number(field: str, value: Any, rng: Range) -> float:
    """Coerce `value` to a finite number in `rng`, or raise a ValueError naming the field, value and range."""
    if isinstance(value, bool):
        raise ValueError(f"{rng.label} ({field}) must be a number, got {value!r}. Valid range: {rng.describe()}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{rng.label} ({field}) must be a number, got {value!r}. Valid range: {rng.describe()}."
        ) from None
    if not math.isfinite(number):
        raise ValueError(
            f"{rng.label} ({field}) must be a finite number, got {value!r}. Valid range: {rng.describe()}."
        )
    if rng.integer and number != int(number):
        raise ValueError(
            f"{rng.label} ({field}) must be a whole number, got {value!r}. Valid range: {rng.describe()}."
        )
    if not rng.minimum <= number <= rng.maximum:
        raise ValueError(f"{rng.label} ({field}) is {value!r}, outside the valid range {rng.describe()}.")
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
    raise ValueError(f"{field.replace('_', ' ').capitalize()} must be true or false, got {value!r}.")


def random_seed() -> int:
    return random.SystemRandom().randint(0, MAX_SEED)


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines one image. `seed=None` means "draw a random seed at generation time"."""

    prompt: str
    negative_prompt: str = ""
    steps: int = int(RANGES["steps"].default)  # denoising steps: fewer are faster and rougher
    guidance: float = RANGES["guidance"].default  # classifier-free guidance: higher follows the prompt more strictly
    width: int = SD35_MEDIUM.default_size
    height: int = SD35_MEDIUM.default_size
    seed: int | None = None

    @classmethod
    def validated(cls, spec: ModelSpec = SD35_MEDIUM, **values: Any) -> GenerationSettings:
        """Build settings from loosely typed input (UI, API, CLI), raising ValueError on anything invalid."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
        out: dict[str, Any] = {}
        out["prompt"] = check_prompt("prompt", values.get("prompt"), required=True)
        out["negative_prompt"] = check_prompt("negative_prompt", values.get("negative_prompt", ""), required=False)
        out["steps"] = int(_number("steps", values.get("steps", RANGES["steps"].default), RANGES["steps"]))
        guidance = _number("guidance", values.get("guidance", RANGES["guidance"].default), RANGES["guidance"])
        out["guidance"] = round(guidance, 4)
        out["width"] = check_size("width", values.get("width", spec.default_size), spec)
        out["height"] = check_size("height", values.get("height", spec.default_size), spec)
        seed = values.get("seed")
        out["seed"] = None if seed is None or seed == "" else int(_number("seed", seed, RANGES["seed"]))
        return cls(**out)

    def validate(self, spec: ModelSpec = SD35_MEDIUM) -> GenerationSettings:
        return GenerationSettings.validated(spec, **dataclasses.asdict(self))

    def with_seed(self) -> GenerationSettings:
        """These settings with a concrete seed (a random one drawn if none was set)."""
        return self if self.seed is not None else dataclasses.replace(self, seed=random_seed())

    def replace(self, **changes: Any) -> GenerationSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

"""Hugging Face Spaces ZeroGPU: a GPU decorator that is a no-op everywhere else, and how many seconds to ask for.

On a ZeroGPU Space each call of a `spaces.GPU` function borrows a GPU slice (an H200 MIG slice) for at most its
`duration`; shorter requests are served first, and a call that runs past its duration is killed. Everywhere else
(locally, in Docker, on a Space with dedicated hardware) `gpu()` returns the function unchanged, and the optional
`spaces` package need not be installed. Importing this module imports nothing heavy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from sd35ui.core.env import on_space, on_zerogpu  # noqa: F401  (part of this module's interface)
from sd35ui.core.settings import GENERATE_KEYS, PARAM, SD35_MEDIUM

F = TypeVar("F", bound=Callable[..., Any])

REFERENCE_PIXELS = 1024 * 1024  # SD3.5 Medium's default size, where the per-step cost below was estimated
# One guided step (two transformer passes, about 22.5 TFLOP) at 1024x1024 on a ZeroGPU slice (3/7 of an H200,
# about 340 TFLOP/s bf16 peak), at roughly half of peak, with margin: a call that overruns is killed.
SECONDS_PER_STEP = 0.15
# Attention grows with the square of the image tokens, the rest linearly; at 1024x1024 (4096 image + 333 text
# tokens, 1536 wide) attention is about a third of a step, i.e. half of the rest.
ATTENTION_SHARE = 0.5
OVERHEAD_S = 10.0  # per call: moving the pipeline onto the slice, text encoding, VAE decoding, saving the PNG
MIN_DURATION_S = 15  # never ask for less: the overhead alone varies by seconds
MAX_DURATION_S = 120  # never ask for more: long requests wait longest in the ZeroGPU queue and burn user quota


def gpu(duration_fn: Callable[..., float]) -> Callable[[F], F]:
    """Decorate a function that needs the GPU: `spaces.GPU(duration=duration_fn)` on ZeroGPU, else unchanged.

    `duration_fn` is called with the decorated function's own arguments and returns seconds (see `duration`)."""

    def decorate(fn: F) -> F:
        if not on_zerogpu():
            return fn
        import spaces

        return spaces.GPU(duration=duration_fn)(fn)

    return decorate


def duration(steps: float, width: float, height: float, cells: int = 1) -> int:
    """Seconds of GPU to request for `cells` images of `steps` steps at width x height, between the floor and cap.

    Grows with steps, pixels (faster than linearly: attention) and cells; the overhead is paid once per call."""
    pixels = max(float(width), 1.0) * max(float(height), 1.0) / REFERENCE_PIXELS
    step_cost = SECONDS_PER_STEP * pixels * (1 + ATTENTION_SHARE * pixels) / (1 + ATTENTION_SHARE)
    seconds = OVERHEAD_S + max(float(steps), 0.0) * step_cost * max(int(cells), 1)
    if not math.isfinite(seconds):
        return MAX_DURATION_S
    return int(min(max(math.ceil(seconds), MIN_DURATION_S), MAX_DURATION_S))


def _named(keys: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A handler's arguments by name: positional ones in `keys` order (its API order), then keyword ones."""
    return {**dict(zip(keys, args)), **kwargs}


def generate_duration(*args: Any, **kwargs: Any) -> int:
    """`duration` for the app's /generate handler, called with its arguments (in GENERATE_KEYS order, the parameter
    table's) before they are validated: values that are not finite numbers ask for the floor (validation then
    rejects them at once)."""
    values = _named(GENERATE_KEYS, args, kwargs)
    try:
        numbers = [
            float(values.get(name, PARAM[name].default_for(SD35_MEDIUM))) for name in ("steps", "width", "height")
        ]
    except (TypeError, ValueError):
        return MIN_DURATION_S
    if not all(map(math.isfinite, numbers)):
        return MIN_DURATION_S
    numbers[0] *= _sampler_factor(values.get("sampler")) * _slg_factor([values.get("slg_scale")])
    return duration(*numbers)


def _sampler_factor(sampler: Any) -> int:
    """Model calls per step: Heun makes two (sd35ui.core.generate.loop_length), so it asks for twice the time."""
    return 2 if str(sampler).strip().lower().startswith("heun") else 1


def _slg_factor(scales: list[Any]) -> float:
    """Skip-layer guidance adds one pass to the two of a guided step inside its window: at most 1.5 x the work
    (a whole-run window), asked for whenever any scale is above 0."""
    try:
        return 1.5 if any(float(scale or 0) > 0 for scale in scales) else 1.0
    except (TypeError, ValueError):
        return 1.0


def sheet_duration(*args: Any, **kwargs: Any) -> int:
    """`duration` for the /contact_sheet handler (arguments in SHEET_KEYS order): the steps of every cell (a Steps
    axis counts its own values). Input that does not parse asks for the floor; validation then rejects it at once."""
    from sd35ui.core import sheet

    values = {
        "x_axis": None,
        "x_values": None,
        "y_axis": None,
        "y_values": None,
        **_named(sheet.SHEET_KEYS, args, kwargs),
    }
    steps, width, height = (
        values.get(name, PARAM[name].default_for(SD35_MEDIUM)) for name in ("steps", "width", "height")
    )
    try:
        axes = [sheet.parse_axis(values["x_axis"], values["x_values"], "X")]
        y_axis = values["y_axis"]
        if y_axis is not None and str(y_axis).strip().lower() not in ("", "none", "-"):
            axes.append(sheet.parse_axis(y_axis, values["y_values"] or "", "Y"))
        for which in ("z", "w"):  # the outer axes: one sub-sheet per value
            kind = values.get(f"{which}_axis")
            if kind is not None and str(kind).strip().lower() not in ("", "none", "-"):
                axes.append(sheet.parse_axis(kind, values.get(f"{which}_values") or "", which.upper()))
        total_steps = float(steps)
        cells = 1
        for axis in axes:
            cells *= len(axis.values)
        samplers = [values.get("sampler")]
        scales = [values.get("slg_scale")]
        for axis in axes:
            if axis.kind == "slg_scale":
                scales = list(axis.values)
            if axis.kind == "steps":
                total_steps = sum(float(v) for v in axis.values) / len(axis.values)
            if axis.kind == "sampler":
                samplers = list(axis.values)
        total_steps *= max(_sampler_factor(s) for s in samplers)  # Heun anywhere: the sheet's upper bound
        total_steps *= _slg_factor(scales)
        return duration(total_steps, float(width), float(height), cells)
    except (TypeError, ValueError):
        return MIN_DURATION_S

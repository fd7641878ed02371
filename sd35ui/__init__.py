"""sd35ui: a web app, CLI, API and library for text-to-image generation with Stable Diffusion 3.5 Medium.

The library's front door (the app, the CLI and the API use the same functions underneath):

    import sd35ui

    pipe = sd35ui.load("tiny")  # or "auto": SD3.5 Medium on a CUDA GPU
    result = sd35ui.generate(pipe, prompt="a red circle on a blue background", seed=7)
    sd35ui.save(result, "circle.png")  # settings, load recipe and version embedded
    sheet = sd35ui.make_sheet(pipe, prompt="a red circle", x="guidance=1,3,5", y="steps=2,5,10", seed=7)
    sd35ui.save(sheet, "sheet.png")

Importing `sd35ui` imports nothing heavy: torch and diffusers load on the first `load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from sd35ui.core.generate import GenerationResult
    from sd35ui.core.sheet import SheetResult

__all__ = ["__version__", "load", "generate", "make_sheet", "save"]


def load(model: str = "auto", **options: Any) -> Any:
    """The `StableDiffusion3Pipeline` for `model` ("auto", "tiny", a hub id or a local folder), loaded once and
    cached. `options` are the fields of `sd35ui.core.pipeline.LoadOptions`, the CLI's model flags: quant="nf4",
    t5="4bit" or "drop", offload="model", dtype, device, compile="regional", offload_text_encoders=True,
    allow_cpu=True. Raises `PipelineError` (with what to do) when it cannot be loaded."""
    from sd35ui.core.pipeline import LoadOptions, get_pipeline

    return get_pipeline(LoadOptions(model=model, **options))


def _settings(pipe: Any, prompt: str, values: dict[str, Any]) -> Any:
    from sd35ui.core.generate import model_name
    from sd35ui.core.pipeline import model_spec
    from sd35ui.core.settings import GenerationSettings

    given = {name: value for name, value in values.items() if value is not None}
    return GenerationSettings.validated(model_spec(model_name(pipe)), prompt=prompt, **given)


def generate(
    pipe: Any,
    prompt: str,
    negative_prompt: str = "",
    steps: int | None = None,
    guidance: float | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    shift: float | None = None,
    sampler: str | None = None,
    **more: Any,
) -> GenerationResult:
    """One image, exactly as the app makes it for the same settings (same seed, same pixels). Settings left out
    take the model's defaults (SD3.5 Medium: 40 steps, guidance 4.5, 1024x1024, shift 3, Euler; a random seed, in
    `result.seed`). `more` takes any other setting of the parameter table by name: schedule ("Karras"),
    slg_scale (skip-layer guidance, 2.5 as SD3.5 Medium recommends), skip_layers ("7, 8, 9"), slg_start, slg_stop,
    t5_prompt ("Off").
    Raises ValueError, saying what is valid, for bad settings."""
    from sd35ui.core.generate import generate as run

    values = dict(negative_prompt=negative_prompt, steps=steps, guidance=guidance, width=width, height=height)
    values.update(seed=seed, shift=shift, sampler=sampler)
    return run(pipe, _settings(pipe, prompt, {**values, **more}))


def make_sheet(
    pipe: Any,
    prompt: str,
    x: str = "guidance=3,4.5,6,7.5",
    y: str | None = "steps=10,20,30,40",
    **settings: Any,
) -> SheetResult:
    """A contact sheet: one image per combination of the X and Y values, as the Compare tab makes it. Axes are
    TYPE=VALUES with TYPE one of the Compare tab's axes (steps, guidance, seed, shift, sampler, schedule, slg,
    "skip layers", t5, prompt and negative for search/replace, size) and VALUES as in the app (`10, 20`,
    `10-40(+10)`, `3-7.5[4]`, `Euler, Heun`, `1:1, 16:9`); `y=None` makes a strip. `settings` are the other settings
    by name (negative_prompt, steps, guidance, width, height, seed, shift, sampler, schedule, slg_scale, ...).
    `sheet.image()` is the picture."""
    from sd35ui.core import sheet
    from sd35ui.core.generate import model_name
    from sd35ui.core.pipeline import model_spec

    base = _settings(pipe, prompt, settings)
    axes = [_axis(x, "x"), _axis(y, "y") if y else (None, "")]
    spec = sheet.make_spec(base, *axes[0], *axes[1], model=model_spec(model_name(pipe)))  # validated and guarded
    return sheet.run_sheet(pipe, spec)


def _axis(text: str, which: str) -> tuple[str, str]:
    kind, sep, values = str(text).partition("=")
    if not sep:
        raise ValueError(f"{which} must look like TYPE=VALUES, e.g. {which}='guidance=3,4.5,6'; got {text!r}.")
    return kind.strip(), values


def save(result: GenerationResult | SheetResult, path: str | Path) -> Path:
    """Write an image or a sheet as a PNG with its settings, load recipe and sd35ui version embedded (the History
    tab and "load settings" read them back). Written atomically; returns the path."""
    from sd35ui.core import metadata, sheet, storage

    if isinstance(result, sheet.SheetResult):
        return storage.save_png(result.image(), sheet.sheet_png_info(result), Path(path))
    return storage.save_png(result.image, metadata.result_png_info(result), Path(path))

"""The Generate tab: one image from a prompt and the settings, with Stop and step/guidance presets.

`build_generate_tab(ctx)` = `layout` (components only; the API's inputs all come from `generate_inputs`, in API
order) + `wire` (module-level handlers bound to the context). Every handler maps UI values to settings in one place
(`settings_from_ui`) and calls the generation service; errors become `gr.Error` messages, never tracebacks."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from sd35ui.app import zerogpu
from sd35ui.app.context import AppContext, bind, control_for, escape_markdown, session_of, user_error
from sd35ui.core import metadata, storage
from sd35ui.core.generate import GenerationResult, GenerationStopped
from sd35ui.core.pipeline import LoadOptions, is_loaded, model_spec
from sd35ui.core.settings import (
    GENERATE_KEYS,
    GUIDANCE_PRESETS,
    MAX_PROMPT_CHARS,
    PARAM,
    PARAMS,
    SLG_KEYS,
    SLG_RECOMMENDED,
    STEP_PRESETS,
    GenerationSettings,
    ModelSpec,
    check_flag,
)
from sd35ui.core.tokens import TokenCount

HELP = """
**Steps**: how many denoising steps. Fewer are faster and rougher (20 for a quick draft); 40 is the standard;
50 adds a little detail. **Guidance scale**: how strictly the image follows the prompt. Low (about 3.5) is freer
and more abstract; 4.5 suits most prompts; high (7.5) follows the prompt more strictly but can look harsh.
The **seed** picks the starting noise: the same settings and seed give the same image.
""" + "".join(f"**{p.label}**: {p.help}. " for p in PARAMS if p.api_tail)  # settings added since, from the table


# --- Values ---------------------------------------------------------------------------------------------------------


def settings_from_ui(options: LoadOptions, *values: Any) -> GenerationSettings:
    """The one place UI/API values become settings: `values` in GENERATE_KEYS order (every setting of the
    parameter table, then randomize_seed). Raises ValueError with a message for the user."""
    if len(values) > len(GENERATE_KEYS):
        raise ValueError(f"/generate takes at most {len(GENERATE_KEYS)} values: {', '.join(GENERATE_KEYS)}.")
    given = dict(zip(GENERATE_KEYS, values))  # settings added since (Param.api_tail) may be left out: defaults
    if check_flag("randomize_seed", given.pop("randomize_seed", None)):
        given["seed"] = None
    return GenerationSettings.validated(model_spec(options.resolve().model), **given)


def save_result(result: GenerationResult, root: Path) -> Path:
    path = storage.new_path("image", result.seed, root)
    return storage.save_png(result.image, metadata.result_png_info(result), path)


def save_or_keep(result: GenerationResult, root: Path) -> Path:
    """Save the result in the outputs folder; where that fails (a full or read-only disk), keep it in a temporary
    file so the user still gets the image, and warn that it is not in History. Raises SaveError if neither works."""
    try:
        return save_result(result, root)
    except storage.SaveError as exc:
        try:
            path = save_result(result, Path(tempfile.mkdtemp(prefix="sd35ui-unsaved-")))
        except storage.SaveError:
            raise exc from None
        gr.Warning(f"{exc.strerror} Download it now: it is not kept in History.", title="Not saved")
        return path


def info_line(result: GenerationResult, tokens: TokenCount | None = None) -> str:
    """The summary under the image (and the API's third value): seed, size, steps, guidance, what differs from the
    model's own sampling, the time, and warnings: words the text encoders cut, skip-layer guidance that did not
    run."""
    s = result.settings
    parts = [f"Seed {s.seed}", f"{s.width}x{s.height}", f"{s.steps} steps", f"guidance {s.guidance:g}"]
    if s.sampler != "Euler" or s.schedule != "Default":
        parts.append(s.sampler + (f" {s.schedule}" if s.schedule != "Default" else ""))
    if s.skip_layer_guided:
        parts.append(f"skip-layer guidance {s.slg_scale:g}")
    if s.t5_prompt == "Off":
        parts.append("T5 off")
    line = " · ".join([*parts, f"{result.timings['total']:.2f} s"])
    if s.slg_scale > 0 and not s.skip_layer_guided:
        line += "\nSkip-layer guidance did not run: it works only with guidance above 1."
    warning = tokens.warning() if tokens is not None else None
    return line + (f"\nPrompt too long: {warning}" if warning else "")


def token_count_text(prompt: Any, *, ctx: AppContext) -> str:
    """The line under the prompt box: tokens per text encoder, and the words cut when the prompt is too long."""
    if not isinstance(prompt, str) or not prompt.strip():
        return ""
    try:
        counts = ctx.pool.count_tokens(prompt[: MAX_PROMPT_CHARS + 1])
    except Exception:  # the model failed to load: generating says why; the count is not worth a second message
        return ""
    warning = counts.warning()
    return f"Tokens: {counts.line()}" + (f"  \n⚠ {escape_markdown(warning)}" if warning else "")


# --- Layout ---------------------------------------------------------------------------------------------------------


@dataclass
class GenerateTab:
    """The Generate tab's components."""

    inputs: dict[str, Any]  # the API's inputs, keyed and ordered as GENERATE_KEYS
    run: gr.Button
    stop: gr.Button
    image: gr.Image
    info: gr.Textbox
    seed_used: gr.Number
    step_preset: gr.Radio
    guidance_preset: gr.Radio
    size_preset: gr.Dropdown
    slg_recommended: gr.Button
    tokens: gr.Markdown


def generate_inputs(spec: ModelSpec) -> dict[str, Any]:
    """The /generate inputs, created (not yet placed: `layout` renders each where it goes) in API order
    (GENERATE_KEYS): one control per setting of the parameter table, then "Randomize seed"."""
    controls = {param.name: control_for(param, spec) for param in PARAMS}
    controls["randomize_seed"] = gr.Checkbox(label="Randomize seed", value=True, elem_id="randomize", render=False)
    return {key: controls[key] for key in GENERATE_KEYS}


def layout(spec: ModelSpec) -> GenerateTab:
    """The tab's components; call inside the app's `gr.Tabs`."""
    inputs = generate_inputs(spec)
    with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
        with gr.Row(equal_height=True):
            inputs["prompt"].render()
            run = gr.Button("Generate", variant="primary", scale=1, elem_id="generate-btn")
            stop = gr.Button("Stop", variant="stop", scale=0, elem_id="stop-btn")
        tokens = gr.Markdown("", elem_id="token-count")
        if spec.examples:
            gr.Examples([[example] for example in spec.examples], inputs=[inputs["prompt"]], label="Try")
        with gr.Row():
            with gr.Column(scale=2):
                image = gr.Image(
                    label="Result",
                    type="filepath",
                    format="png",  # WebP would drop the PNG text chunks that carry the settings
                    buttons=["download", "fullscreen"],
                    interactive=False,
                    elem_id="result",
                )
                info = gr.Textbox(label="Settings used", interactive=False, elem_id="info")
            with gr.Column(scale=1):
                with gr.Accordion("Advanced settings", open=False, elem_id="advanced"):
                    inputs["negative_prompt"].render()
                    step_preset = gr.Radio(
                        list(STEP_PRESETS),
                        label="Steps preset",
                        value=_matching_preset(STEP_PRESETS, spec.default_steps),
                    )
                    inputs["steps"].render()
                    guidance_preset = gr.Radio(list(GUIDANCE_PRESETS), label="Guidance preset", value="General")
                    inputs["guidance"].render()
                    size_preset = gr.Dropdown(
                        [CUSTOM_SIZE, *size_presets(spec)],
                        value=_matching_size(spec, spec.default_size, spec.default_size),
                        label="Aspect ratio",
                        info=f"sizes at about {spec.default_size}x{spec.default_size} pixels for {spec.name}",
                        elem_id="size-preset",
                    )
                    with gr.Row():
                        inputs["width"].render()
                        inputs["height"].render()
                    with gr.Row():
                        inputs["seed"].render()
                        inputs["randomize_seed"].render()
                    for param in PARAMS:  # settings added since: in the order of the table
                        if param.name == "slg_scale":
                            slg_recommended = _skip_layer_guidance_group(spec, inputs)
                        elif param.api_tail and param.name not in SLG_KEYS:
                            inputs[param.name].render()
                seed_used = gr.Number(
                    label="Seed used", value=None, interactive=False, precision=0, elem_id="seed-used"
                )
                gr.Markdown(HELP)
    presets = (step_preset, guidance_preset, size_preset, slg_recommended)
    return GenerateTab(inputs, run, stop, image, info, seed_used, *presets, tokens)


def _skip_layer_guidance_group(spec: ModelSpec, inputs: dict[str, Any]) -> gr.Button:
    """Skip-layer guidance's settings with the one-click recommendation; returns that button."""
    layers = ", ".join(map(str, spec.skip_layers))
    with gr.Group(elem_id="slg-group"):
        gr.Markdown(
            "**Skip-layer guidance** (SD3.5 Medium's model card recommends it): works only with guidance above 1. "
            f"Recommended: layers {layers}, scale {SLG_RECOMMENDED['slg_scale']:g}, from "
            f"{SLG_RECOMMENDED['slg_start']:.0%} to {SLG_RECOMMENDED['slg_stop']:.0%} of the steps.",
            elem_id="slg-note",
        )
        button = gr.Button("Use the recommended skip-layer guidance", size="sm", elem_id="slg-recommended")
        for key in SLG_KEYS:
            inputs[key].render()
    return button


CUSTOM_SIZE = "Custom"


def size_presets(spec: ModelSpec) -> dict[str, tuple[int, int]]:
    """The aspect-ratio dropdown's choices ("16:9 · 1344x768") and their sizes."""
    return {f"{label} · {w}x{h}": (w, h) for label, (w, h) in spec.size_presets().items()}


def _matching_size(spec: ModelSpec, width: Any, height: Any) -> str:
    for label, size in size_presets(spec).items():
        if size == (width, height):
            return label
    return CUSTOM_SIZE


def _size_of_preset(spec: ModelSpec, label: str) -> tuple[Any, Any]:
    size = size_presets(spec).get(label)
    return size if size is not None else (gr.skip(), gr.skip())


def _recommended_slg(spec: ModelSpec) -> tuple[float, str, float, float]:
    recommended = SLG_RECOMMENDED
    layers = ", ".join(map(str, spec.skip_layers))
    return recommended["slg_scale"], layers, recommended["slg_start"], recommended["slg_stop"]


# --- Handlers -------------------------------------------------------------------------------------------------------


def generate_image(
    prompt: str,
    negative_prompt: str,
    steps: float,
    guidance: float,
    width: float,
    height: float,
    seed: float,
    randomize_seed: bool,
    shift: float = PARAM["shift"].range.default,
    sampler: str = PARAM["sampler"].choices[0],
    schedule: str = PARAM["schedule"].choices[0],
    slg_scale: float = PARAM["slg_scale"].range.default,
    skip_layers: str | None = None,
    slg_start: float = PARAM["slg_start"].range.default,
    slg_stop: float = PARAM["slg_stop"].range.default,
    t5_prompt: str = PARAM["t5_prompt"].choices[0],
    request: gr.Request = None,
    progress: gr.Progress = gr.Progress(),
    *,
    ctx: AppContext,
) -> tuple[str, int, str]:
    # The docstring (the API's and MCP's description of each parameter) is written from the parameter table below.
    try:
        values = (prompt, negative_prompt, steps, guidance, width, height, seed, randomize_seed, shift, sampler)
        values += (schedule, slg_scale, skip_layers, slg_start, slg_stop, t5_prompt)
        settings = settings_from_ui(ctx.options, *values)
    except ValueError as exc:
        raise user_error(exc) from None
    session = session_of(request)
    event_id = LocalContext.event_id.get(None)  # this job's queue event: a Stop pressed while it waited names it
    stop = ctx.stops.start(session, event_id)
    loaded = ctx.config.workers is not None or is_loaded(ctx.options)  # --devices/--ray load before serving
    progress(0, desc="Starting" if loaded else "Loading model")

    def on_step(i: int, n: int) -> None:
        progress((i, n), desc=f"Step {i}/{n}")
        if ctx.client_gone(event_id):
            stop.set()  # the tab was closed or the client went away: free the GPU within one step

    try:
        result = ctx.pool.generate(settings, on_step=on_step, stop=stop)  # on whichever worker is free first
        path = save_or_keep(result, ctx.config.outputs)
        tokens = ctx.pool.count_tokens(settings.prompt)
    except GenerationStopped:
        raise gr.Error("Stopped before the image was finished; nothing was saved.", title="Stopped") from None
    except Exception as exc:  # the server must survive any failure inside the pipeline
        raise user_error(exc) from exc
    finally:
        ctx.stops.finish(session, stop)
    return str(path), result.seed, info_line(result, tokens)


def api_docstring(summary: str, extra_args: dict[str, str], returns: str) -> str:
    """A handler's docstring, in the Google style Gradio reads for the API page and MCP tools, with one `Args` line
    per setting of the parameter table (its help and range)."""
    lines = [summary, "", "Args:"]
    for name in GENERATE_KEYS:  # the API's order
        if name in extra_args:
            lines.append(f"    {name}: {extra_args[name]}.")
            continue
        param = PARAM[name]
        rng = f"; {param.range.describe()}" if param.range is not None and param.kind != "seed" else ""
        rng = f"; one of {', '.join(param.choices)}" if param.choices else rng
        default = f" (default {param.range.default:g})" if param.kind == "number" and param.name != "steps" else ""
        lines.append(f"    {param.name}: {param.help}{rng}{default}.")
    return "\n".join([*lines, "", "Returns:", f"    {returns}."])


generate_image.__doc__ = api_docstring(
    "Generate one image with SD3.5 Medium (or the app's loaded model).",
    {"randomize_seed": "draw a new random seed for this image, ignoring seed"},
    "The PNG file (settings embedded), the seed used, and a one-line summary",
)


def stop_generation(request: gr.Request, *, ctx: AppContext) -> None:
    """Stop this user's running generation or sheet within one step (or a waiting one as soon as it starts)."""
    ctx.stop(session_of(request))


def _preset_value(table: dict[str, float], name: str | None) -> Any:
    return table[name] if name in table else gr.skip()


def _matching_preset(table: dict[str, float], value: Any) -> str | None:
    for name, preset in table.items():
        try:
            if float(value) == preset:
                return name
        except (TypeError, ValueError):
            break
    return None


# --- Wiring ---------------------------------------------------------------------------------------------------------


def wire(ctx: AppContext, tab: GenerateTab) -> None:
    for preset, control, table in (
        (tab.step_preset, tab.inputs["steps"], STEP_PRESETS),
        (tab.guidance_preset, tab.inputs["guidance"], GUIDANCE_PRESETS),
    ):
        # A preset the user picks sets its slider; a slider moved (or loaded from an image) shows the preset it
        # matches, if any. `.input`, not `.change`, on the preset: a preset set by the slider must not set the
        # slider back, or two quick slider moves can race and a stale reply moves the slider to an old value.
        preset.input(partial(_preset_value, table), preset, control, api_visibility="private", queue=False)
        control.change(partial(_matching_preset, table), control, preset, api_visibility="private", queue=False)
    size = [tab.inputs["width"], tab.inputs["height"]]
    private = dict(api_visibility="private", queue=False)
    tab.size_preset.input(partial(_size_of_preset, ctx.spec), tab.size_preset, size, **private)
    for control in size:
        control.change(partial(_matching_size, ctx.spec), size, tab.size_preset, **private)
    slg = [tab.inputs[key] for key in SLG_KEYS]
    tab.slg_recommended.click(partial(_recommended_slg, ctx.spec), None, slg, **private)
    tab.inputs["prompt"].change(
        bind(token_count_text, ctx=ctx),
        tab.inputs["prompt"],
        tab.tokens,
        trigger_mode="always_last",
        show_progress="hidden",
        **private,
    )
    gr.on(
        triggers=[tab.run.click, tab.inputs["prompt"].submit],
        fn=zerogpu.gpu(zerogpu.generate_duration)(bind(generate_image, ctx=ctx)),
        inputs=list(tab.inputs.values()),
        outputs=[tab.image, tab.seed_used, tab.info],
        api_name="generate",
        concurrency_id="gpu",
        concurrency_limit=ctx.config.concurrency,
    )
    tab.stop.click(bind(stop_generation, ctx=ctx), None, None, api_name="stop", queue=False)


def build_generate_tab(ctx: AppContext) -> GenerateTab:
    """Add the Generate tab; call inside the app's `gr.Tabs`, before the other tabs (they read
    `ctx.generate_inputs`). Its events are wired once every tab is built (`ctx.run_deferred()`), i.e. registered
    after the other tabs' events, as they always were: the events' order is visible to clients (fn_index, the order
    of MCP tools, and Gradio's cumulative `file_data_present` flag in /gradio_api/mcp/schema)."""
    tab = layout(ctx.spec)
    ctx.generate_inputs = dict(tab.inputs)
    ctx.defer(lambda: wire(ctx, tab))
    return tab

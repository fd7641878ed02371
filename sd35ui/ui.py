"""The Gradio Blocks app: layout and wiring only. Every handler maps UI values to settings in one place
(`settings_from_ui`) and calls the generation service; errors become `gr.Error` messages, never tracebacks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from sd35ui import metadata, storage, zerogpu
from sd35ui.generate import GenerationOutOfMemory, GenerationResult, GenerationStopped, generate
from sd35ui.pipeline import LoadOptions, PipelineError, get_pipeline, model_banner, model_spec
from sd35ui.settings import GUIDANCE_PRESETS, RANGES, STEP_PRESETS, GenerationSettings, ModelSpec, Range
from sd35ui.ui_compare import build_compare_tab
from sd35ui.ui_history import build_history_tab

HELP = """
**Steps**: how many denoising steps. Fewer are faster and rougher (20 for a quick draft); 40 is the standard;
50 adds a little detail. **Guidance scale**: how strictly the image follows the prompt. Low (about 3.5) is freer
and more abstract; 4.5 suits most prompts; high (7.5) follows the prompt more strictly but can look harsh.
The **seed** picks the starting noise: the same settings and seed give the same image.
"""


@dataclass
class AppConfig:
    """How the app runs: which model, where results go, and how the queue is bounded."""

    load: LoadOptions = field(default_factory=LoadOptions)
    outputs: Path = field(default_factory=storage.outputs_dir)
    queue_size: int = 16  # waiting jobs beyond the running ones; past this, "queue full, try again"
    concurrency: int = 1  # GPU jobs at once: one GPU runs one generation at a time


class StopRegistry:
    """Per-user stop signals, keyed by the Gradio session: one user's Stop never stops another's job."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._early: set[str] = set()  # sessions that pressed Stop while their job was still waiting in the queue
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        with self._lock:
            event = threading.Event()
            if session in self._early:
                self._early.discard(session)
                event.set()  # stops before the first step
            self._events[session] = event
            return event

    def stop_when_started(self, session: str) -> None:
        with self._lock:
            self._early.add(session)

    def stop(self, session: str) -> bool:
        with self._lock:
            event = self._events.get(session)
        if event is None:
            return False
        event.set()
        return True

    def finish(self, session: str, event: threading.Event) -> None:
        with self._lock:
            if self._events.get(session) is event:
                del self._events[session]


GENERATE_KEYS = ("prompt", "negative_prompt", "steps", "guidance", "width", "height", "seed", "randomize_seed")


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "cli"


def settings_from_ui(
    options: LoadOptions,
    prompt: Any,
    negative_prompt: Any,
    steps: Any,
    guidance: Any,
    width: Any,
    height: Any,
    seed: Any,
    randomize_seed: Any,
) -> GenerationSettings:
    """The one place UI/API values become settings. Raises ValueError with a message for the user."""
    spec = model_spec(options.resolve().model)
    randomize = bool(randomize_seed) if randomize_seed is not None else False
    return GenerationSettings.validated(
        spec,
        prompt=prompt,
        negative_prompt=negative_prompt,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        seed=None if randomize else seed,
    )


def save_result(result: GenerationResult, root: Path) -> Path:
    path = storage.new_path("image", result.seed, root)
    return storage.save_png(result.image, metadata.png_info(result.settings, result.model), path)


def info_line(result: GenerationResult) -> str:
    s = result.settings
    return (
        f"Seed {s.seed} · {s.width}x{s.height} · {s.steps} steps · guidance {s.guidance:g} · "
        f"{result.timings['total']:.2f} s"
    )


def user_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, ValueError):
        return gr.Error(str(exc), title="Invalid input")
    if isinstance(exc, GenerationOutOfMemory):
        return gr.Error(str(exc), title="Out of GPU memory")
    if isinstance(exc, PipelineError):
        return gr.Error(str(exc), title="Model could not be loaded")
    return gr.Error(f"Generation failed: {type(exc).__name__}: {exc}. The server is still running; try again.")


@dataclass
class AppContext:
    """What the tabs share: the config, the loaded model's limits, stop signals and the Generate tab's inputs
    (so other tabs can send settings to it)."""

    config: AppConfig
    options: LoadOptions
    spec: ModelSpec
    stops: StopRegistry
    tabs: gr.Tabs
    generate_inputs: dict[str, Any]
    GENERATE_KEYS = GENERATE_KEYS

    @staticmethod
    def slider(rng: Range, label: str | None = None, elem_id: str | None = None) -> gr.Slider:
        return _slider(rng, label=label, elem_id=elem_id)

    @staticmethod
    def unchecked(component: Any) -> Any:
        return _unchecked(component)

    @staticmethod
    def session_of(request: gr.Request | None) -> str:
        return session_of(request)

    @staticmethod
    def user_error(exc: BaseException) -> gr.Error:
        return user_error(exc)

    app: gr.Blocks | None = None

    def client_gone(self, event_id: str | None) -> bool:
        return self.app is not None and client_gone(self.app, event_id)


def client_gone(app: gr.Blocks, event_id: str | None) -> bool:
    """True once the browser tab or API client that started `event_id` has disconnected or cancelled it. Gradio
    6.31 then drops the job's waiting events and marks the running one dead (or, on /cancel, forgets it), but lets
    a running non-generator function go on to the end; the step callback polls this and stops the job within one
    step. (`_queue` is private Gradio API: tests/test_reliability.py checks the behaviour on every upgrade.)"""
    queue = getattr(app, "_queue", None)
    if queue is None or not event_id:  # called outside the queue
        return False
    event = queue.event_ids_to_events.get(event_id)  # forgotten while running: the job was cancelled (/cancel)
    return event is None or not event.alive


def has_waiting_job(app: gr.Blocks, session: str) -> bool:
    """True when this session has a job waiting in the queue (not yet running). Private Gradio API, as above."""
    queue = getattr(app, "_queue", None)
    if queue is None:
        return False
    return any(
        event.session_hash == session
        for waiting in queue.event_queue_per_concurrency_id.values()
        for event in waiting.queue
    )


def create_app(config: AppConfig | None = None) -> gr.Blocks:
    config = config or AppConfig()
    options = config.load.resolve()
    spec = model_spec(options.model)
    stops = StopRegistry()
    banner = model_banner(options)

    @zerogpu.gpu(zerogpu.generate_duration)
    def generate_image(
        prompt: str,
        negative_prompt: str,
        steps: float,
        guidance: float,
        width: float,
        height: float,
        seed: float,
        randomize_seed: bool,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[str, int, str]:
        """Generate one image with SD3.5 Medium (or the app's loaded model).

        Args:
            prompt: what the image should show.
            negative_prompt: what it should not show (may be empty).
            steps: denoising steps, 1-50; fewer are faster and rougher (default 40).
            guidance: classifier-free guidance scale, 1.0-10.0; higher follows the prompt more strictly (default 4.5).
            width: image width in pixels, a multiple of 16.
            height: image height in pixels, a multiple of 16.
            seed: the starting noise, 0-2147483647; ignored when randomize_seed is true.
            randomize_seed: draw a new random seed for this image.

        Returns:
            The PNG file (settings embedded), the seed used, and a one-line summary.
        """
        try:
            settings = settings_from_ui(
                options, prompt, negative_prompt, steps, guidance, width, height, seed, randomize_seed
            )
        except ValueError as exc:
            raise user_error(exc) from None
        session = session_of(request)
        stop = stops.start(session)
        progress(0, desc="Loading model" if not _loaded(options) else "Starting")
        event_id = LocalContext.event_id.get(None)

        def on_step(i: int, n: int) -> None:
            progress((i, n), desc=f"Step {i}/{n}")
            if client_gone(app, event_id):
                stop.set()  # the tab was closed or the client went away: free the GPU within one step

        try:
            pipe = get_pipeline(options)
            result = generate(
                pipe,
                settings,
                on_step=on_step,
                stop=stop,
            )
            path = save_result(result, config.outputs)
        except GenerationStopped:
            raise gr.Error("Stopped before the image was finished; nothing was saved.", title="Stopped") from None
        except Exception as exc:  # the server must survive any failure inside the pipeline
            raise user_error(exc) from exc
        finally:
            stops.finish(session, stop)
        return str(path), result.seed, info_line(result)

    def stop_generation(request: gr.Request) -> None:
        """Stop this user's running generation within one step (or a waiting one as soon as it starts)."""
        session = session_of(request)
        if not stops.stop(session) and has_waiting_job(app, session):
            stops.stop_when_started(session)

    with gr.Blocks(title="sd35ui · Stable Diffusion 3.5 Medium") as app:
        gr.Markdown("# sd35ui · Stable Diffusion 3.5 Medium")
        if banner:
            gr.Markdown(f"⚠️ **{banner}**", elem_id="model-banner")
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                with gr.Row(equal_height=True):
                    prompt = gr.Textbox(
                        label="Prompt",
                        placeholder="Describe the image, then press Enter",
                        lines=1,
                        max_lines=6,
                        scale=5,
                        elem_id="prompt",
                    )
                    run = gr.Button("Generate", variant="primary", scale=1, elem_id="generate-btn")
                    stop = gr.Button("Stop", variant="stop", scale=0, elem_id="stop-btn")
                if spec.examples:
                    gr.Examples([[example] for example in spec.examples], inputs=[prompt], label="Try")
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
                            negative = gr.Textbox(label="Negative prompt", lines=1, max_lines=4, elem_id="negative")
                            step_preset = gr.Radio(
                                list(STEP_PRESETS),
                                label="Steps preset",
                                value=_matching_preset(STEP_PRESETS, spec.default_steps),
                            )
                            steps = _slider(spec.steps_range(), elem_id="steps")
                            guidance_preset = gr.Radio(
                                list(GUIDANCE_PRESETS), label="Guidance preset", value="General"
                            )
                            guidance = _slider(RANGES["guidance"], elem_id="guidance")
                            size = spec.size_range()
                            with gr.Row():
                                width = _slider(size, label="Width", elem_id="width")
                                height = _slider(size, label="Height", elem_id="height")
                            with gr.Row():
                                seed = gr.Number(
                                    label="Seed",
                                    value=0,
                                    precision=0,
                                    minimum=RANGES["seed"].minimum,
                                    maximum=RANGES["seed"].maximum,
                                    elem_id="seed",
                                )
                                _unchecked(seed)
                                randomize = gr.Checkbox(label="Randomize seed", value=True, elem_id="randomize")
                        seed_used = gr.Number(
                            label="Seed used", value=None, interactive=False, precision=0, elem_id="seed-used"
                        )
                        gr.Markdown(HELP)
            inputs = [prompt, negative, steps, guidance, width, height, seed, randomize]
            ctx = AppContext(config, options, spec, stops, tabs, dict(zip(GENERATE_KEYS, inputs)), app=app)
            build_compare_tab(ctx)
            build_history_tab(config, ctx.generate_inputs, tabs)

        for preset, slider, table in (
            (step_preset, steps, STEP_PRESETS),
            (guidance_preset, guidance, GUIDANCE_PRESETS),
        ):
            # A preset the user picks sets its slider; a slider moved (or loaded from an image) shows the preset it
            # matches, if any. `.input`, not `.change`, on the preset: a preset set by the slider must not set the
            # slider back, or two quick slider moves can race and a stale reply moves the slider to an old value.
            preset.input(partial(_preset_value, table), preset, slider, api_visibility="private", queue=False)
            slider.change(partial(_matching_preset, table), slider, preset, api_visibility="private", queue=False)
        gr.on(
            triggers=[run.click, prompt.submit],
            fn=generate_image,
            inputs=inputs,
            outputs=[image, seed_used, info],
            api_name="generate",
            concurrency_id="gpu",
            concurrency_limit=config.concurrency,
        )
        stop.click(stop_generation, None, None, api_name="stop", queue=False)

        app.sd35ui = ctx  # for tests: the shared context
    return app


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


def _loaded(options: LoadOptions) -> bool:
    from sd35ui.pipeline import is_loaded

    return is_loaded(options)


def _unchecked(component: Any) -> Any:
    """Let the raw value reach `GenerationSettings.validated`, which names the setting and its range; Gradio's own
    check says only "Value 0.2 is less than minimum value 1.0". (Set on the instance: subclassing a Gradio
    component makes Gradio write a .pyi stub next to this file at import.)"""
    component.preprocess = lambda payload: payload
    return component


def _slider(rng: Range, label: str | None = None, elem_id: str | None = None) -> gr.Slider:
    slider = gr.Slider(
        minimum=rng.minimum,
        maximum=rng.maximum,
        value=rng.default,
        step=rng.step,
        label=label or rng.label,
        elem_id=elem_id,
    )
    return _unchecked(slider)


MAX_UPLOAD_BYTES = 64 * 2**20  # the PNG drop zone (history.MAX_PNG_BYTES); Gradio accepts any size otherwise


def launch(
    app: gr.Blocks,
    config: AppConfig,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    auth: tuple[str, str] | None = None,
    mcp: bool = False,
    **kwargs: Any,
) -> Any:
    """Queue and serve the app. Only the outputs folder is served as files besides Gradio's own cache."""
    config.outputs.mkdir(parents=True, exist_ok=True)
    app.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    return app.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth,
        allowed_paths=[str(config.outputs)],
        show_error=True,  # Gradio's own refusals (a path never uploaded, a malformed call) keep their message
        max_file_size=MAX_UPLOAD_BYTES,
        mcp_server=mcp,
        **kwargs,
    )

"""The Gradio Blocks app: layout and wiring only. Every handler maps UI values to settings in one place
(`settings_from_ui`) and calls the generation service; errors become `gr.Error` messages, never tracebacks."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from sd35ui.app import zerogpu
from sd35ui.app.compare_tab import build_compare_tab
from sd35ui.app.history_tab import build_history_tab
from sd35ui.core import metadata, storage
from sd35ui.core.generate import GenerationOutOfMemory, GenerationResult, GenerationStopped, generate
from sd35ui.core.pipeline import LoadOptions, PipelineError, get_pipeline, model_banner, model_spec
from sd35ui.core.settings import (
    GUIDANCE_PRESETS,
    RANGES,
    STEP_PRESETS,
    GenerationSettings,
    ModelSpec,
    Range,
    check_flag,
)

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
    randomize = check_flag("randomize_seed", randomize_seed)
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


def info_line(result: GenerationResult) -> str:
    s = result.settings
    return (
        f"Seed {s.seed} · {s.width}x{s.height} · {s.steps} steps · guidance {s.guidance:g} · "
        f"{result.timings['total']:.2f} s"
    )


def user_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, storage.SaveError):
        return gr.Error(exc.strerror, title="Not saved")
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
            path = save_or_keep(result, config.outputs)
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
    from sd35ui.core.pipeline import is_loaded

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


DEFAULT_CACHE_LIMIT_MB = 2048  # this app's files in Gradio's cache (uploads, copies of results): oldest go first
DEFAULT_CACHE_MAX_AGE_S = 24 * 3600  # ... and each goes after a day
CACHE_PRUNE_EVERY_S = 60  # results are copied into the cache as they are made: checked this often (and per upload)


def launch(
    app: gr.Blocks,
    config: AppConfig,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    auth: tuple[str, str] | None = None,
    mcp: bool = False,
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_MB * 2**20,
    cache_max_age_s: float = DEFAULT_CACHE_MAX_AGE_S,
    login_limiter: Any = None,
    **kwargs: Any,
) -> Any:
    """Queue and serve the app. Only the outputs folder is served as files besides Gradio's own cache, where this
    app's files are bounded in total size and age (`CacheBound`). With `auth`, every route but the login page needs
    the login (`AccessGate`), and failed logins are limited per address (`login_limiter`, by default
    `access.LoginLimiter()`: 5 failures a minute)."""
    from starlette.middleware import Middleware

    from sd35ui.app.access import LoginLimiter

    config.outputs.mkdir(parents=True, exist_ok=True)
    app.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    cache = CacheBound(app, cache_limit_bytes, cache_max_age_s)
    app.sd35ui_cache = cache  # for tests and tools: what the app keeps in Gradio's cache
    # Middleware must be given to the FastAPI app as Gradio creates it: Starlette refuses any added after start.
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    middleware = list(app_kwargs.get("middleware") or [])
    if auth is not None:  # outermost: nothing below runs for a request without the login
        app.sd35ui_login_limiter = limiter = login_limiter or LoginLimiter()
        middleware.insert(0, Middleware(AccessGate, limiter=limiter))
    middleware.append(Middleware(CacheGuard, cache=cache))
    app_kwargs["middleware"] = middleware
    app_kwargs["lifespan"] = cache.lifespan(app_kwargs.get("lifespan"))
    return app.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth,
        allowed_paths=[str(config.outputs)],
        show_error=True,  # Gradio's own refusals (a path never uploaded, a malformed call) keep their message
        max_file_size=MAX_UPLOAD_BYTES,
        mcp_server=mcp,
        app_kwargs=app_kwargs,
        **kwargs,
    )


class CacheBound:
    """Bounds what this app keeps in Gradio's cache (`gradio.utils.get_upload_folder()`: GRADIO_TEMP_DIR, else
    /tmp/gradio, shared with any other Gradio app on the machine): the uploads and the copies of results that Gradio
    tracks for this Blocks (`temp_file_sets`). `prune` deletes the expired ones and then the oldest until the total
    fits the limit; all of them go when the server stops. Gradio's own `delete_cache=(frequency, age)` only expires
    files by age, with no bound on their total size, and iterates the same sets unlocked from another thread, so this
    does both jobs in one place instead. Ages count from a file's ctime, which Gradio renews when it hands a cached
    file out again."""

    def __init__(self, blocks: gr.Blocks, limit_bytes: int, max_age_s: float) -> None:
        if limit_bytes < 1 or max_age_s <= 0:
            raise ValueError("the cache limit and the maximum age must be positive")
        self.blocks = blocks
        self.limit_bytes = int(limit_bytes)
        self.max_age_s = float(max_age_s)
        self.folder = Path(blocks.GRADIO_CACHE).resolve()
        self.every_s = max(1.0, min(CACHE_PRUNE_EVERY_S, self.max_age_s / 2))
        self._lock = threading.Lock()

    def files(self) -> list[tuple[float, int, str]]:
        """(ctime, bytes, path) of each file this app has in the cache, oldest first; files that Gradio keeps for
        good (examples, default values) are left out."""
        import os

        keep: set[str] = set()
        for block in list(self.blocks.blocks.values()):
            keep.update(getattr(block, "keep_in_cache", ()))
        found: dict[str, tuple[float, int, str]] = {}
        for paths in list(self.blocks.temp_file_sets):
            for path in list(paths):
                if path in keep or path in found:
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    paths.discard(path)  # deleted by someone else: forget it
                    continue
                found[path] = (st.st_ctime, st.st_size, path)
        return sorted(found.values())

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.files())

    def prune(self, incoming: int = 0, everything: bool = False) -> list[str]:
        """Delete expired files, then the oldest until the total plus `incoming` bytes fits the limit (or every file
        with `everything`). Returns the paths deleted."""
        import time

        with self._lock:
            files = self.files()
            total = sum(size for _, size, _ in files)
            now = time.time()
            removed = []
            for ctime, size, path in files:
                expired = now - ctime > self.max_age_s
                if not (everything or expired or total + incoming > self.limit_bytes):
                    break  # oldest first: the rest are younger and fit
                if self._delete(path):
                    removed.append(path)
                    total -= size
            return removed

    def _delete(self, path: str) -> bool:
        file = Path(path)
        if not file.resolve().is_relative_to(self.folder):  # never anything outside Gradio's cache folder
            return False
        try:
            file.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return False
        for paths in list(self.blocks.temp_file_sets):
            paths.discard(path)
        parent = file.parent  # Gradio keeps each file in a folder named by its hash: remove it once empty
        while parent != self.folder and parent.is_relative_to(self.folder):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def lifespan(self, inner: Any = None) -> Any:
        """A FastAPI lifespan (wrapping `inner`, if any) that prunes every `every_s` seconds while the server runs
        and empties the app's part of the cache when it stops."""
        import asyncio
        import contextlib

        import anyio

        @contextlib.asynccontextmanager
        async def lifespan(server_app: Any) -> Any:
            async def prune_on_schedule() -> None:
                while True:
                    await asyncio.sleep(self.every_s)
                    try:
                        await anyio.to_thread.run_sync(self.prune)
                    except Exception as exc:  # a cache that cannot be pruned must not stop the server
                        import logging

                        logging.getLogger("sd35ui").warning("Could not prune Gradio's cache: %s", exc)

            task = asyncio.create_task(prune_on_schedule())
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(server_app) as state:
                        yield state
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await anyio.to_thread.run_sync(lambda: self.prune(everything=True))

        return lifespan


class CacheGuard:
    """ASGI middleware on uploads (POST /gradio_api/upload): an upload larger than the whole cache is refused with
    413; before one, the oldest files make room for it, and after it the cache is pruned to its limit again."""

    def __init__(self, app: Any, cache: CacheBound) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/gradio_api/upload":
            await self.app(scope, receive, send)
            return
        import anyio
        from starlette.datastructures import Headers
        from starlette.responses import PlainTextResponse

        try:
            incoming = max(0, int(Headers(scope=scope).get("content-length") or 0))
        except ValueError:
            incoming = 0
        limit = self.cache.limit_bytes
        if incoming > limit:
            message = (
                f"This upload ({incoming / 2**20:.1f} MB) is larger than the server's file cache "
                f"({limit / 2**20:.1f} MB, --cache-limit-mb)."
            )
            await PlainTextResponse(message, status_code=413)(scope, receive, send)
            return
        await anyio.to_thread.run_sync(lambda: self.cache.prune(incoming=incoming))
        try:
            await self.app(scope, receive, send)  # Gradio moves the files into place before this returns
        finally:
            await anyio.to_thread.run_sync(self.cache.prune)


PUBLIC_PATHS = frozenset(
    {
        "/",  # without the login, Gradio answers with the login page (and no app config)
        "/favicon.ico",
        "/theme.css",
        "/gradio_api/theme.css",
        "/robots.txt",
        "/manifest.json",
        "/logout",
        "/gradio_api/startup-events",  # launch() calls it from this machine without a login; idempotent
    }
)
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")  # the login page's scripts, styles and icons
LOGIN_PATHS = ("/login", "/login/")


class AccessGate:
    """ASGI middleware for `--auth`: a request without the login cookie reaches only the login page, its assets
    and the login itself; everything else (the API, files, uploads, /cancel, /openapi.json, MCP, ...) gets 401,
    whether or not Gradio checks the login on that route. Logins from an address that failed too often get 429
    (`access.LoginLimiter`)."""

    def __init__(self, app: Any, limiter: Any) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        from starlette.requests import HTTPConnection
        from starlette.responses import JSONResponse

        path, method = scope["path"], scope.get("method", "GET")
        address = (scope.get("client") or ("unknown",))[0]
        if scope["type"] == "http" and method == "POST" and path in LOGIN_PATHS:
            await self._login(address, scope, receive, send)
            return
        server_app = scope.get("app")
        if self._logged_in(server_app, HTTPConnection(scope)) or (
            scope["type"] == "http" and method in ("GET", "HEAD") and _is_public(path)
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        auth_message = getattr(getattr(server_app, "blocks", None), "auth_message", None)
        body = {"detail": {"error": "Not authenticated", "auth_message": auth_message}}  # as Gradio's login_check
        await JSONResponse(body, status_code=401)(scope, receive, send)

    @staticmethod
    def _logged_in(server_app: Any, connection: Any) -> bool:
        cookie_id = getattr(server_app, "cookie_id", None)
        tokens = getattr(server_app, "tokens", None)
        if cookie_id is None or not tokens:
            return False
        cookies = connection.cookies
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        return token is not None and token in tokens

    async def _login(self, address: str, scope: Any, receive: Any, send: Any) -> None:
        from starlette.responses import JSONResponse

        from sd35ui.app.access import too_many_logins_message

        wait = self.limiter.retry_after(address)
        if wait > 0:
            headers = {"Retry-After": str(max(1, round(wait + 0.5)))}
            await JSONResponse({"detail": too_many_logins_message(wait)}, 429, headers)(scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.limiter.succeeded(address)
        elif status and 400 <= status[0] < 500 and status[0] != 429:  # wrong user or password, or a malformed form
            self.limiter.failed(address)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

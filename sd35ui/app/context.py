"""What every tab shares: the app's config, the loaded model's limits, per-user stop signals, the Generate tab's
inputs and the `gr.Tabs` (so that other tabs can send settings to it), and the small helpers the tabs all use.

Each tab module has the same shape: `build_*_tab(ctx)` calls a layout function (components only), then a wiring
function that connects module-level handlers to the components, binding the context with `bind`."""

from __future__ import annotations

import html
import inspect
import re
import string
import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from sd35ui.core import storage
from sd35ui.core.generate import GenerationOutOfMemory
from sd35ui.core.pipeline import LoadOptions, PipelineError, get_pipeline, model_spec
from sd35ui.core.settings import GENERATE_KEYS, ModelSpec, Param, Range
from sd35ui.core.workers import LocalWorker, Worker, WorkerPool


@dataclass
class AppConfig:
    """How the app runs: which model, where results go, and how the queue is bounded."""

    load: LoadOptions = field(default_factory=LoadOptions)
    outputs: Path = field(default_factory=storage.outputs_dir)
    queue_size: int = 16  # waiting jobs beyond the running ones; past this, "queue full, try again"
    concurrency: int = 1  # GPU jobs at once: one GPU runs one generation at a time
    # The pipelines that make the images (`--devices`, `--ray`); None: one, `get_pipeline(load)`, loaded on first use
    workers: Sequence[Worker] | None = None


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


# Every ASCII punctuation mark but `&` and `;` (which spell the entities html.escape writes); escaping `:` and `/`
# also stops bare URLs from becoming links.
_MARKDOWN_SPECIAL = re.compile("([" + re.escape(string.punctuation.replace("&", "").replace(";", "")) + "])")


def escape_markdown(text: str) -> str:
    """User text shown in a Markdown component, as plain text: HTML escaped (no tags, no entities) and Markdown's
    punctuation backslash-escaped (no links, images or emphasis). Gradio's sanitiser would still let `<img>` and
    links through. Written by hand: neither gradio nor the standard library escapes Markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", "  \n")


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "cli"


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


def client_gone(app: gr.Blocks, event_id: str | None) -> bool:
    """True once the browser tab or API client that started `event_id` has disconnected or cancelled it. Gradio
    6.31 then drops the job's waiting events and marks the running one dead (or, on /cancel, forgets it), but lets
    a running non-generator function go on to the end; the step callback polls this and stops the job within one
    step. (`_queue` is private Gradio API: tests/app/test_reliability.py checks the behaviour on every upgrade.)"""
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


def unchecked(component: Any) -> Any:
    """Let the raw value reach `GenerationSettings.validated`, which names the setting and its range; Gradio's own
    check says only "Value 0.2 is less than minimum value 1.0". (Set on the instance: subclassing a Gradio
    component makes Gradio write a .pyi stub next to this file at import.)"""
    component.preprocess = lambda payload: payload
    return component


def slider(rng: Range, label: str | None = None, elem_id: str | None = None, render: bool = True) -> gr.Slider:
    """A slider for a setting's range (bounds, default, step, label), passing raw values on (`unchecked`)."""
    component = gr.Slider(
        minimum=rng.minimum,
        maximum=rng.maximum,
        value=rng.default,
        step=rng.step,
        label=label or rng.label,
        elem_id=elem_id,
        render=render,
    )
    return unchecked(component)


def bind(fn: Callable[..., Any], /, **bound: Any) -> Callable[..., Any]:
    """`fn` with its keyword-only parameters `bound` filled in, as Gradio must see it: the same name, docstring
    (the API and MCP description), type hints (which mark gr.Request, gr.SelectData ...) and signature less the
    bound parameters (the API's parameters), and still a generator function if `fn` is one (so Gradio streams its
    updates). `functools.partial` would show Gradio none of these."""
    signature = inspect.signature(fn)
    for name in bound:
        if signature.parameters[name].kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{fn.__name__}: only keyword-only parameters can be bound, not {name!r}")
    hints = typing.get_type_hints(fn)  # evaluated in fn's own module, as Gradio would
    if inspect.isgeneratorfunction(fn):

        def handler(*args: Any, **kwargs: Any) -> Any:
            return (yield from fn(*args, **kwargs, **bound))

    else:

        def handler(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs, **bound)

    handler.__name__ = fn.__name__
    handler.__qualname__ = fn.__qualname__
    handler.__module__ = fn.__module__
    handler.__doc__ = fn.__doc__
    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name not in bound]
    )
    handler.__annotations__ = {name: hint for name, hint in hints.items() if name not in bound}
    return handler


@dataclass
class AppContext:
    """What the tabs share: the config, the loaded model's limits, stop signals, and (once the Generate tab is
    built) its inputs keyed as GENERATE_KEYS, the `gr.Tabs` and the app (so other tabs can send settings to it)."""

    config: AppConfig
    options: LoadOptions
    spec: ModelSpec
    pool: WorkerPool
    stops: StopRegistry = field(default_factory=StopRegistry)
    tabs: gr.Tabs | None = None
    generate_inputs: dict[str, Any] = field(default_factory=dict)
    app: gr.Blocks | None = None
    # The Compare tab's explorer and /contact_sheet's inputs (History opens a saved sheet there)
    explorer: Any = None
    sheet_inputs: list[Any] = field(default_factory=list)
    deferred: list[Callable[[], None]] = field(default_factory=list)  # wiring to run once every tab is laid out

    @classmethod
    def create(cls, config: AppConfig) -> AppContext:
        options = config.load.resolve()
        workers = config.workers or [LocalWorker(load=lambda: get_pipeline(options), name="local")]
        return cls(config, options, model_spec(options.model), WorkerPool(workers))

    @property
    def local_pipeline(self) -> bool:
        """True when one pipeline in this process makes every image (no `--devices` or `--ray`)."""
        return len(self.pool) == 1 and isinstance(self.pool.workers[0], LocalWorker)

    def client_gone(self, event_id: str | None) -> bool:
        return self.app is not None and client_gone(self.app, event_id)

    def has_waiting_job(self, session: str) -> bool:
        return self.app is not None and has_waiting_job(self.app, session)

    def defer(self, wiring: Callable[[], None]) -> None:
        """Run `wiring` after every tab is built (`run_deferred`), i.e. register its events after theirs."""
        self.deferred.append(wiring)

    def run_deferred(self) -> None:
        while self.deferred:
            self.deferred.pop(0)()

    def generate_targets(self, keys: tuple[str, ...] = GENERATE_KEYS) -> list[Any]:
        """The Generate tab's input components in `keys` order (for events that fill them in)."""
        return [self.generate_inputs[key] for key in keys]


# How each setting's control looks, beyond what the parameter table says (label, range, default).
CONTROL_LOOKS: dict[str, dict[str, Any]] = {
    "prompt": dict(placeholder="Describe the image, then press Enter", lines=1, max_lines=6, scale=5),
    "negative_prompt": dict(lines=1, max_lines=4, elem_id="negative"),
}


def control_for(param: Param, spec: ModelSpec, elem_id: str | None = None, render: bool = False) -> Any:
    """The Gradio control of one setting, from the parameter table, with `spec`'s steps and sizes (unrendered unless
    `render`; `elem_id` defaults to the Generate tab's)."""
    looks = {"elem_id": param.name, **CONTROL_LOOKS.get(param.name, {}), "render": render}
    if elem_id is not None:
        looks["elem_id"] = elem_id
    if param.kind == "text":
        return gr.Textbox(label=param.label, **looks)
    if param.kind == "choice":
        return gr.Dropdown(list(param.choices), value=param.choices[0], label=param.label, **looks)
    if param.kind == "layers":
        own = ", ".join(map(str, spec.skip_layers))
        return gr.Textbox("", label=param.label, placeholder=f"the model's own: {own}", info=param.help, **looks)
    rng = param.range_for(spec)
    if param.kind == "seed":
        return unchecked(
            gr.Number(label=param.label, value=0, precision=0, minimum=rng.minimum, maximum=rng.maximum, **looks)
        )
    return slider(rng, label=param.label, **looks)

"""What every tab shares: the app's config, the loaded model's limits, per-user stop signals, the Generate tab's
inputs and the `gr.Tabs` (so that other tabs can send settings to it), and the small helpers the tabs all use.

Each tab module has the same shape: `build_*_tab(ctx)` calls a layout function (components only), then a wiring
function that connects module-level handlers to the components, binding the context with `bind`."""

from __future__ import annotations

import html
import inspect
import logging
import re
import string
import threading
import typing
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from sd35ui.core import storage
from sd35ui.core.generate import GenerationOutOfMemory
from sd35ui.core.pipeline import LoadOptions, PipelineError, get_pipeline, model_spec
from sd35ui.core.quoting import safe_text
from sd35ui.core.settings import GENERATE_KEYS, ModelSpec, Param, Range
from sd35ui.core.workers import LocalWorker, Worker, WorkerPool

log = logging.getLogger("sd35ui")


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
    """Per-user stop signals, keyed by the Gradio session: one user's Stop never stops another's job. A job gets its
    signal when it starts (`start`) and gives it back when it ends (`finish`); a Stop that comes while the job still
    waits in the queue is kept under the job's queue event id, and the job starts stopped."""

    def __init__(self) -> None:
        # session -> the stop signals of its running jobs (more than one where --devices runs jobs side by side)
        self._events: dict[str, list[threading.Event]] = {}
        self._early: dict[str, set[str]] = {}  # session -> event ids of its jobs stopped before they started
        self._lock = threading.Lock()

    def start(self, session: str, job: str | None = None) -> threading.Event:
        """The stop signal of `session`'s job that is starting now (`job`: its queue event id), already set when
        Stop came while it waited."""
        with self._lock:
            event = threading.Event()
            early = self._early.get(session, set())
            if job in early:
                early.discard(job)
                event.set()  # stops before the first step
            if not early:
                self._early.pop(session, None)
            self._events.setdefault(session, []).append(event)
            return event

    def stop(self, session: str, queued: Callable[[], Collection[str]] = tuple) -> None:
        """Stop `session`'s running jobs within one step; if none is running, each job `queued()` names (the event
        ids of the session's jobs in the queue) as soon as it starts. One lock covers the look and the mark, so a
        job that starts meanwhile is stopped either way."""
        with self._lock:
            running = list(self._events.get(session, ()))
            if not running:
                jobs = set(queued())
                if jobs:  # replaces the last Stop's: an id the queue no longer holds has started or is gone
                    self._early[session] = jobs
                else:
                    self._early.pop(session, None)
        for event in running:
            event.set()

    def finish(self, session: str, event: threading.Event) -> None:
        with self._lock:
            running = self._events.get(session, [])
            if event in running:
                running.remove(event)
            if not running:
                self._events.pop(session, None)


# Every ASCII punctuation mark but `&` and `;` (which spell the entities html.escape writes); escaping `:` and `/`
# also stops bare URLs from becoming links.
_MARKDOWN_SPECIAL = re.compile("([" + re.escape(string.punctuation.replace("&", "").replace(";", "")) + "])")


def escape_markdown(text: str) -> str:
    """User text shown in a Markdown component, as plain text: HTML escaped (no tags, no entities) and Markdown's
    punctuation backslash-escaped (no links, images or emphasis). Gradio's sanitiser would still let `<img>` and
    links through. Written by hand: neither gradio nor the standard library escapes Markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", "  \n")


def escape_tags(message: str) -> str:
    """A message for a toast (gr.Error, gr.Warning, gr.Info), which Gradio renders as HTML with only scripts
    removed: every `<` and `>` escaped, so no tag (an `<img>` that fetches a URL, a `<form>`) can form whatever text
    reached the message. Text the message quotes is escaped already where it was written (`sd35ui.core.quoting`);
    escaping only the angle brackets leaves its entities as they are, where escaping `&` again would show `&lt;`."""
    return str(message).replace("<", "&lt;").replace(">", "&gt;")


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "cli"


def user_error(exc: BaseException) -> gr.Error:
    """The toast for an exception a handler caught; its message escaped for the toast's HTML (`escape_tags`)."""
    if isinstance(exc, storage.SaveError):
        return gr.Error(escape_tags(exc.strerror), title="Not saved")
    if isinstance(exc, ValueError):
        return gr.Error(escape_tags(str(exc)), title="Invalid input")
    if isinstance(exc, GenerationOutOfMemory):
        return gr.Error(escape_tags(str(exc)), title="Out of GPU memory")
    if isinstance(exc, PipelineError):
        return gr.Error(escape_tags(str(exc)), title="Model could not be loaded")
    # another library's words, which may quote anything: capped and escaped like a quoted value
    problem = f"{type(exc).__name__}: {safe_text(str(exc))}"
    return gr.Error(f"Generation failed: {problem}. The server is still running; try again.")


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


def queued_jobs(app: gr.Blocks, session: str) -> set[str]:
    """The event ids of this session's events in the queue, waiting or started: Gradio holds each from the moment it
    is queued until it ends, so this also covers a job taken from the queue that has not called `StopRegistry.start`
    yet. Private Gradio API, as above."""
    queue = getattr(app, "_queue", None)
    if queue is None:
        return set()
    events = list(queue.event_ids_to_events.items())  # a copy: the queue's own thread adds and drops events
    return {event_id for event_id, event in events if event.session_hash == session}


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


_LOG_LIMIT = 500  # characters of a refusal's message in the log


def told_the_user(error: gr.Error, handler: str) -> None:
    """Log `error` in one line and have Gradio print no traceback for it, if it stands alone: a handler raises a
    `gr.Error` on its own (`raise gr.Error(...)`, `raise user_error(exc) from None`) to tell the user what to change
    or what happened (invalid input, nothing picked, stopped), which is no server fault, and Gradio would print a
    25-line traceback for each (it does for every exception whose `print_exception` is true). One raised from
    another exception (`raise user_error(exc) from exc`, or inside an `except` without `from`) wraps a fault: Gradio
    prints both tracebacks, as before."""
    chained = error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__)
    if chained or not error.print_exception:
        return
    error.print_exception = False
    # One line whatever the message quotes: characters that are not printable (a newline) written as escapes
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(error.message)[:_LOG_LIMIT])
    log.info("%s refused: %s: %s", handler, error.title, message)


def bind(fn: Callable[..., Any], /, **bound: Any) -> Callable[..., Any]:
    """`fn` with its keyword-only parameters `bound` filled in, as Gradio must see it: the same name, docstring
    (the API and MCP description), type hints (which mark gr.Request, gr.SelectData ...) and signature less the
    bound parameters (the API's parameters), and still a generator function if `fn` is one (so Gradio streams its
    updates). `functools.partial` would show Gradio none of these. A `gr.Error` telling the user of a mistake is
    logged in one line, not as a traceback (`told_the_user`)."""
    signature = inspect.signature(fn)
    for name in bound:
        if signature.parameters[name].kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{fn.__name__}: only keyword-only parameters can be bound, not {name!r}")
    hints = typing.get_type_hints(fn)  # evaluated in fn's own module, as Gradio would
    if inspect.isgeneratorfunction(fn):

        def handler(*args: Any, **kwargs: Any) -> Any:
            try:
                return (yield from fn(*args, **kwargs, **bound))
            except gr.Error as exc:
                told_the_user(exc, fn.__name__)
                raise

    else:

        def handler(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs, **bound)
            except gr.Error as exc:
                told_the_user(exc, fn.__name__)
                raise

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

    def stop(self, session: str) -> None:
        """What every Stop does (the Generate and Compare buttons, /stop): stop this session's running jobs within
        one step, or, if none is running, its jobs still waiting in the queue as soon as they start."""
        self.stops.stop(session, lambda: queued_jobs(self.app, session) if self.app is not None else set())

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

"""Making a contact sheet from the Compare tab's or the API's values: `sheet_spec_from_ui` validates them into a
sheet spec (through `sheet.make_spec`, the one way a spec is made), `make_sheet` (the /contact_sheet handler) runs
a `SheetRun` and streams its progress and cells to the page, saving each cell as it comes. Laid out and wired by
`sd35ui.app.compare_tab`; parsing, planning and running a sheet live in `sd35ui.core.sheet`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from sd35ui.app.context import AppContext, escape_tags, session_of, user_error
from sd35ui.app.explorer import cell_caption
from sd35ui.core import explore, sheet, storage, workers
from sd35ui.core.generate import GenerationOutOfMemory, loop_length
from sd35ui.core.quoting import quoted
from sd35ui.core.settings import PARAM, PARAMS, GenerationSettings, check_flag


def _seed(value: Any) -> Any:
    """-1 or empty means "draw one seed for the whole sheet" (A1111's convention)."""
    if value is None or value == "":
        return None
    try:
        return None if float(value) == -1 else value
    except (TypeError, ValueError):
        return value  # left for validation to report


def sheet_spec_from_ui(
    model_spec: Any,
    prompt: Any,
    negative_prompt: Any,
    x_axis: Any,
    x_values: Any,
    y_axis: Any,
    y_values: Any,
    steps: Any,
    guidance: Any,
    width: Any,
    height: Any,
    seed: Any,
    show_times: Any = False,
    margin: Any = 0,
    legend: Any = True,
    swap: Any = False,
    shift: Any = PARAM["shift"].range.default,
    sampler: Any = PARAM["sampler"].choices[0],
    outer: tuple[tuple[Any, Any], ...] = (),
    **later: Any,
) -> sheet.SheetSpec:
    """The one place Compare-tab and API values become a validated, size-checked sheet spec. `outer`: the Z and W
    axes as (type, values)."""
    texts = [("X axis", x_axis), ("X values", x_values), ("Y axis", y_axis), ("Y values", y_values)]
    for which, (axis_type, values) in zip("ZW", outer):
        texts += [(f"{which} axis", axis_type), (f"{which} values", values)]
    for name, value in texts:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be text, got {type(value).__name__}.")
    try:
        margin = int(float(margin or 0))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"The margin must be a whole number of pixels, got {quoted(margin)}.") from None
    base = GenerationSettings.validated(
        model_spec,
        prompt=prompt,
        negative_prompt=negative_prompt,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        seed=_seed(seed),
        shift=shift,
        sampler=sampler,
        **later,  # the settings added after these (Param.api_tail), by name
    )
    spec = sheet.make_spec(
        base,
        x_axis or "",
        x_values or "",
        y_axis,
        y_values,
        show_times=bool(show_times),
        margin=margin,
        legend=bool(legend),
        swap=bool(swap),
        model=model_spec,
        outer=outer,
    )
    sheet.check_sheet(spec)
    return spec


# --- Making a sheet -------------------------------------------------------------------------------------------------


class SheetRun:
    """One sheet being made: a worker thread runs the cells and posts ("step" | "cell" | "error" | "done", payload)
    events; the handler's thread turns them into progress and updates (`stream`), saving each cell as it comes."""

    def __init__(self, ctx: AppContext, spec: sheet.SheetSpec, progress: Any, resume: bool = True) -> None:
        self.ctx = ctx
        self.spec = spec
        self.resume = resume
        self.progress = progress
        self.sheet_path = storage.new_path("sheet", spec.base.seed, ctx.config.outputs)
        self.plan = sheet.plan_sheet(spec)
        # Loop iterations, as the step callbacks count them (Heun: 2n - 1 a cell), not steps
        self.total_steps = sum(loop_length(c.settings) for c in self.plan)
        self.steps_done = 0
        self.events: queue.Queue = queue.Queue()
        self.made: list[dict[str, Any]] = []  # the cells' captions, paths and settings, in gallery order
        self.gallery: list[tuple[str, str]] = []
        self.finished: list[sheet.CellResult] = []

    def start(self, stop: threading.Event) -> None:
        threading.Thread(target=self._work, args=(stop,), name="sd35ui-sheet", daemon=True).start()

    def _work(self, stop: threading.Event) -> None:
        try:
            reuse = explore.reusable_cells(self.ctx.config.outputs) if self.resume else None
            # One pipeline here: `run_sheet` (per-cell pipeline lock). Several, or Ray actors: cells spread over them.
            run = sheet.run_sheet if self.ctx.local_pipeline else workers.run_sheet_on
            on = self.ctx.pool.workers[0].pipe if self.ctx.local_pipeline else self.ctx.pool
            result = run(
                on,
                self.spec,
                on_progress=lambda i, n, s, t: self.events.put(("step", (i, n, s, t))),
                stop=stop,
                on_cell=lambda done: self.events.put(("cell", done)),
                reuse=reuse,
            )
            self.events.put(("done", result))
        except BaseException as exc:  # reported to the user by `stream`; the server goes on
            self.events.put(("error", exc))

    def stream(self, stop: threading.Event, event_id: str | None) -> Iterator[tuple[Any, ...]]:
        """Progress for every step, an update for every cell, and the final update once the sheet is saved."""
        self.progress(0, desc=f"{self.spec.n_cells} cells")
        while True:
            kind, payload = self.events.get()
            if kind == "step":
                i, n, s, t = payload
                self.steps_done += 1
                done = min(self.steps_done, self.total_steps)  # a cell lost with a worker is made again
                self.progress((done, self.total_steps), desc=f"Cell {i + 1} of {n} · step {s}/{t}")
                if self.ctx.client_gone(event_id):
                    stop.set()  # the tab was closed or the client went away: free the GPU
            elif kind == "cell":
                if payload.reused:  # read back, not made: its steps will not be counted, so count them here
                    self.steps_done += loop_length(payload.settings)
                yield self.add_cell(payload)
            elif kind == "error":
                raise payload
            else:
                yield self.finish(payload)
                return

    def add_cell(self, done: sheet.CellResult) -> tuple[Any, ...]:
        path = sheet.save_cell(done, self.sheet_path)  # saved as it is made: nothing lost
        caption = cell_caption(self.spec, done.cell)
        self.made.append({"caption": caption, "path": str(path), "settings": done.settings.to_dict()})
        self.gallery.append((str(path), caption))
        self.finished.append(done)
        spec = self.spec
        left_s = sheet.estimate_seconds(self.plan, self.finished)
        eta = f" · about {left_s:.0f} s left" if left_s is not None and len(self.made) < spec.n_cells else ""
        text = f"Cell {len(self.made)} of {spec.n_cells} done · seed {spec.base.seed}{eta}"
        choices = [m["caption"] for m in self.made]
        so_far = sheet.SheetResult(spec, done.result.model, list(self.finished), stopped=True)
        return (
            gr.skip(),
            gr.Gallery(value=list(self.gallery), columns=spec.cols if not spec.swap else spec.rows),
            text,
            gr.skip(),
            list(self.made),
            gr.Dropdown(choices=choices),
            gr.Dropdown(choices=choices),
            so_far,
        )

    def finish(self, result: sheet.SheetResult) -> tuple[Any, ...]:
        """Save the sheet and the zip; the last update."""
        spec = self.spec
        sheet_file, _, zip_file = sheet.save_sheet(result, sheet_path=self.sheet_path)
        stopped = f" · stopped: {len(result.cells)} of {spec.n_cells} cells kept" if result.stopped else ""
        reused = f" · {result.reused} reused from earlier (same settings, model and recipe)" if result.reused else ""
        if result.first_steps_shared:
            reused += f" · {result.first_steps_shared} first steps shared between cells"
        text = f"{len(result.cells)} cells in {result.seconds:.1f} s · seed {spec.base.seed}{reused}{stopped}"
        choices = [m["caption"] for m in self.made]
        return (
            str(sheet_file),
            list(self.gallery),
            text,
            str(zip_file),
            list(self.made),
            gr.Dropdown(choices=choices, value=choices[0] if choices else None),
            gr.Dropdown(choices=choices, value=choices[-1] if choices else None),
            result,
        )


def make_sheet(
    prompt: str,
    negative_prompt: str,
    x_axis: str,
    x_values: str,
    y_axis: str,
    y_values: str,
    steps: float,
    guidance: float,
    width: float,
    height: float,
    seed: float,
    show_times: bool = True,
    margin: float = 0,
    legend: bool = True,
    swap: bool = False,
    shift: float = PARAM["shift"].range.default,
    sampler: str = PARAM["sampler"].choices[0],
    schedule: str = PARAM["schedule"].choices[0],
    slg_scale: float = PARAM["slg_scale"].range.default,
    skip_layers: str | None = None,
    slg_start: float = PARAM["slg_start"].range.default,
    slg_stop: float = PARAM["slg_stop"].range.default,
    t5_prompt: str = PARAM["t5_prompt"].choices[0],
    z_axis: str = "None",
    z_values: str = "",
    w_axis: str = "None",
    w_values: str = "",
    resume: bool = True,
    request: gr.Request = None,
    progress: gr.Progress = gr.Progress(),
    *,
    ctx: AppContext,
):
    # The docstring (the API's description of each parameter) is set below the function.
    axes = (x_axis, x_values, y_axis, y_values)
    fixed = (steps, guidance, width, height, seed, show_times, margin, legend, swap, shift, sampler)
    later = dict(schedule=schedule, slg_scale=slg_scale, skip_layers=skip_layers, slg_start=slg_start)
    later.update(slg_stop=slg_stop, t5_prompt=t5_prompt)
    try:
        outer = ((z_axis, z_values), (w_axis, w_values))
        spec = sheet_spec_from_ui(ctx.spec, prompt, negative_prompt, *axes, *fixed, outer=outer, **later)
        reuse = check_flag("resume", resume)
    except ValueError as exc:
        raise gr.Error(escape_tags(str(exc)), title="Invalid sheet") from None
    session = session_of(request)
    event_id = LocalContext.event_id.get(None)  # this job's queue event: a Stop pressed while it waited names it
    run = SheetRun(ctx, spec, progress, resume=reuse)
    stop_event = ctx.stops.start(session, event_id)
    try:
        run.start(stop_event)
        yield from run.stream(stop_event, event_id)
    except GenerationOutOfMemory as exc:
        raise gr.Error(f"{exc} The finished cells are saved in {run.sheet_path.parent}.", title="Out of memory")
    except gr.Error:
        raise
    except Exception as exc:
        raise user_error(exc) from exc
    finally:
        stop_event.set()  # a closed tab ends the generator: stop the worker within one step
        ctx.stops.finish(session, stop_event)


make_sheet.__doc__ = """Make a contact sheet: one image per combination of X and Y values, in a labelled grid.

    Args:
        prompt: what every image should show.
        negative_prompt: what they should not show (may be empty).
        x_axis: the setting varied across columns: Steps, Guidance, Seed, Shift, Sampler, Schedule type, SLG scale,
            Skip layers, SLG start, SLG stop, T5, Prompt S/R, Negative S/R or Size.
        x_values: its values: a list "3, 4.5, 6", a range by step "10-40(+10)" or by count "3-7.5[4]"; for
            Prompt S/R the first value is the text to find in the prompt and every value replaces it (Negative S/R:
            in the negative prompt); Size takes "1024x1024, 1344x768" or aspect ratios "1:1, 16:9"; Skip layers
            takes quoted lists '"7, 8, 9", "7"'.
        y_axis: the setting varied down rows, or "None" for a single strip.
        y_values: its values, in the same forms.
        steps: denoising steps (1-50) for every cell unless Steps is an axis.
        guidance: guidance scale (1.0-10.0) unless Guidance is an axis.
        width: image width in pixels, a multiple of 16.
        height: image height in pixels, a multiple of 16.
        seed: one seed for the whole sheet (0-2147483647), or -1 for a random one; ignored if Seed is an axis.
        show_times: caption every cell with its generation time.
        margin: pixels between cells.
        legend: draw axis labels and the title line.
        swap: swap the axes (X down the side, Y across the top).{later}

    Returns:
        The sheet PNG (axes and fixed settings in its metadata), the cells, a status line and a zip of all.
    """.format(
    later="".join(  # settings added since (Param.api_tail), from the parameter table
        f"\n        {p.name}: {p.help}"
        + (f"; one of {', '.join(p.choices)}" if p.choices else "")
        + "; unless on an axis."
        for p in PARAMS
        if p.api_tail
    )
)

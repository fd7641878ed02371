"""The Compare tab: steps x guidance contact sheets that fill in as cells finish, and a side-by-side view.

`build_compare_tab(ctx)` = `layout` (components only) + `wire` (module-level handlers bound to the context). Parsing,
planning and running a sheet live in `sd35ui.core.sheet`, drawing it in `sd35ui.core.grid`; `make_sheet` only
validates (`sheet_spec_from_ui`), streams a `SheetRun`'s progress and cells, and reports.
"""

from __future__ import annotations

import html
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from sd35ui.app import explorer as explorer_ui
from sd35ui.app import zerogpu
from sd35ui.app.context import (
    AppContext,
    bind,
    control_for,
    escape_markdown,
    escape_tags,
    session_of,
    slider,
    unchecked,
    user_error,
)
from sd35ui.core import explore, sheet, storage, workers
from sd35ui.core.generate import GenerationOutOfMemory, loop_length
from sd35ui.core.quoting import quoted
from sd35ui.core.settings import GENERATE_KEYS, PARAM, PARAMS, RANGES, GenerationSettings, ModelSpec, check_flag

HELP = f"""Values: {sheet.FORMAT_HELP}. **Prompt S/R**: the first value is text to find in the prompt, each value
replaces it (`fox, cat, owl`). The seed is fixed for the whole sheet (-1 draws one at random) unless Seed is an
axis. Click a cell to open its exact settings in the Generate tab."""


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


cell_caption = explorer_ui.cell_caption


# --- Layout ---------------------------------------------------------------------------------------------------------


@dataclass
class CompareTab:
    """The Compare tab's components."""

    prompt: gr.Textbox
    run: gr.Button
    stop: gr.Button
    x_axis: gr.Dropdown
    x_values: gr.Textbox
    y_axis: gr.Dropdown
    y_values: gr.Textbox
    negative: gr.Textbox
    steps: gr.Slider
    guidance: gr.Slider
    width: gr.Slider
    height: gr.Slider
    seed: gr.Number
    copy: gr.Button
    show_times: gr.Checkbox
    legend: gr.Checkbox
    swap: gr.Checkbox
    margin: gr.Number
    status: gr.Markdown
    cells: gr.Gallery
    picture: gr.Image
    bundle: gr.File
    cell_list: gr.State  # [{"caption", "path", "settings"}] in gallery order
    later: dict[str, Any]  # the controls of settings added to the API since (Param.api_tail), by name
    outer: list[Any]  # Z axis, Z values, W axis, W values
    resume: gr.Checkbox
    explorer: explorer_ui.Explorer

    def axis_inputs(self) -> list[Any]:
        """`preview`'s inputs: what decides the sheet's size."""
        return [self.x_axis, self.x_values, self.y_axis, self.y_values, *self.fixed_inputs(), *self.outer]

    def fixed_inputs(self) -> list[Any]:
        return [self.steps, self.guidance, self.width, self.height, self.seed]

    def settings_inputs(self) -> list[Any]:
        """This tab's control of each setting, in PARAMS order."""
        controls = {"prompt": self.prompt, "negative_prompt": self.negative, **self.later}
        return [controls.get(p.name) or getattr(self, p.name) for p in PARAMS]

    def sheet_inputs(self) -> list[Any]:
        """/contact_sheet's inputs, in API order."""
        layout = [self.show_times, self.margin, self.legend, self.swap]
        axes = [self.x_axis, self.x_values, self.y_axis, self.y_values, *self.fixed_inputs()]
        return [self.prompt, self.negative, *axes, *layout, *self.later.values(), *self.outer, self.resume]


def _prompt_row(spec: ModelSpec) -> dict[str, Any]:
    with gr.Row(equal_height=True):
        prompt = gr.Textbox(
            label="Prompt",
            value=spec.examples[0] if spec.examples else "",  # one click makes a sheet
            lines=1,
            max_lines=6,
            scale=5,
            elem_id="sheet-prompt",
            placeholder="The prompt every cell shares (Prompt S/R replaces part of it)",
        )
        run = gr.Button("Make sheet", variant="primary", scale=1, elem_id="sheet-btn")
        stop = gr.Button("Stop", variant="stop", scale=0, elem_id="sheet-stop-btn")
    x_default, x_values_default, y_default, y_values_default = spec.sheet_axes
    with gr.Row():
        x_axis = gr.Dropdown(list(sheet.AXIS_CHOICES), value=x_default, label="X axis", elem_id="x-axis")
        x_values = gr.Textbox(value=x_values_default, label="X values", elem_id="x-values")
        y_axis = gr.Dropdown(["None", *sheet.AXIS_CHOICES], value=y_default, label="Y axis", elem_id="y-axis")
        y_values = gr.Textbox(value=y_values_default, label="Y values", elem_id="y-values")
    with gr.Accordion("More axes: one sub-sheet per value (Z, W)", open=False, elem_id="outer-axes"):
        with gr.Row():
            outer = []
            for which in ("z", "w"):
                label = which.upper()
                outer.append(
                    gr.Dropdown(
                        ["None", *sheet.AXIS_CHOICES], value="None", label=f"{label} axis", elem_id=f"{which}-axis"
                    )
                )
                outer.append(gr.Textbox(value="", label=f"{label} values", elem_id=f"{which}-values"))
        resume = gr.Checkbox(
            label="Reuse cells already made with the same settings (resume a stopped sheet)",
            value=True,
            elem_id="sheet-resume",
        )
    gr.Markdown(HELP)
    return dict(
        prompt=prompt,
        run=run,
        stop=stop,
        x_axis=x_axis,
        x_values=x_values,
        y_axis=y_axis,
        y_values=y_values,
        outer=outer,
        resume=resume,
    )


def _settings(spec: ModelSpec) -> dict[str, Any]:
    size = spec.size_range()
    with gr.Accordion("Fixed settings (everything not on an axis)", open=False):
        negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="sheet-negative")
        with gr.Row():
            steps = slider(spec.steps_range(), elem_id="sheet-steps")
            guidance = slider(RANGES["guidance"], elem_id="sheet-guidance")
        with gr.Row():
            width = slider(size, label="Width", elem_id="sheet-width")
            height = slider(size, label="Height", elem_id="sheet-height")
            seed = unchecked(
                gr.Number(
                    label="Seed (-1: one random seed for the sheet)", value=-1, precision=0, elem_id="sheet-seed"
                )
            )
        later = {p.name: control_for(p, spec, f"sheet-{p.name}", render=True) for p in PARAMS if p.api_tail}
        copy = gr.Button("Copy settings from the Generate tab", size="sm")
    with gr.Accordion("Layout", open=False):
        with gr.Row():
            show_times = gr.Checkbox(label="Show time per cell", value=True, elem_id="sheet-times")
            legend = gr.Checkbox(label="Labels and title", value=True, elem_id="sheet-legend")
            swap = gr.Checkbox(label="Swap axes", value=False, elem_id="sheet-swap")
            margin = unchecked(
                gr.Number(label="Margin between cells (px)", value=0, precision=0, elem_id="sheet-margin")
            )
    return dict(
        negative=negative,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        seed=seed,
        copy=copy,
        show_times=show_times,
        legend=legend,
        swap=swap,
        margin=margin,
        later=later,
    )


def _results() -> dict[str, Any]:
    status = gr.Markdown(elem_id="sheet-status")
    cells = gr.Gallery(
        label="Cells (click one to open it in the Generate tab)",
        columns=4,
        height="auto",
        format="png",
        elem_id="sheet-cells",
        allow_preview=False,
    )
    picture = gr.Image(
        label="Contact sheet",
        type="filepath",
        format="png",
        interactive=False,
        elem_id="sheet",
        buttons=["download", "fullscreen"],
    )
    bundle = gr.File(label="Download all: the sheet and every cell, each with its settings (zip)", elem_id="zip")
    cell_list = gr.State([])
    return dict(
        status=status,
        cells=cells,
        picture=picture,
        bundle=bundle,
        cell_list=cell_list,
    )


def layout(spec: ModelSpec) -> CompareTab:
    """The tab's components; call inside the app's `gr.Tabs`."""
    with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
        return CompareTab(**_prompt_row(spec), **_settings(spec), **_results(), explorer=explorer_ui.layout())


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


# --- Handlers -------------------------------------------------------------------------------------------------------


def preview(*values: Any, ctx: AppContext) -> str:
    """The cell count of the sheet the axes make, before anything runs (or what is wrong with them)."""
    try:
        *inner, z_axis, z_values, w_axis, w_values = values
        outer = ((z_axis, z_values), (w_axis, w_values))
        spec = sheet_spec_from_ui(ctx.spec, "preview", "", *inner, outer=outer)
    except ValueError as exc:
        return f"⚠️ {escape_markdown(html.unescape(str(exc)))}"  # plain text, escaped once for Markdown
    shape = " x ".join(str(len(axis.values)) for axis in spec.axes()) if len(spec.axes()) > 1 else "one row"
    return f"{spec.n_cells} cells ({shape})."


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


def stop_sheet(request: gr.Request, *, ctx: AppContext) -> None:
    """Stop this user's running sheet or image within one step (or a waiting one as soon as it starts): the same
    Stop as the Generate tab's (`AppContext.stop`)."""
    ctx.stop(session_of(request))


def open_in_generate(made: list[dict[str, Any]], evt: gr.SelectData) -> list[Any]:
    """The settings of the clicked cell, one value per Generate-tab input (GENERATE_KEYS), and that tab selected."""
    if not made or evt.index is None or evt.index >= len(made):
        return [gr.skip()] * (len(GENERATE_KEYS) + 1)
    values = {**made[evt.index]["settings"], "randomize_seed": False}
    return [*(values[key] for key in GENERATE_KEYS), gr.Tabs(selected="generate")]


def inputs_from_sheet(result: sheet.SheetResult | None) -> list[Any]:
    """The Compare tab's inputs (`CompareTab.sheet_inputs` order) set to a loaded sheet's, to rerun or vary it."""
    if result is None:
        return [gr.skip()] * len(sheet.SHEET_KEYS)
    spec, base = result.spec, result.spec.base
    axes = [spec.x.label, spec.x.text(), spec.y.label if spec.y else "None", spec.y.text() if spec.y else ""]
    outer = [part for axis in spec.outer for part in (axis.label, axis.text())]
    outer += ["None", ""] * (sheet.MAX_OUTER - len(spec.outer))
    fixed = [base.steps, base.guidance, base.width, base.height, base.seed]
    layout = [spec.show_times, spec.margin, spec.legend, spec.swap]
    later = [getattr(base, p.name) for p in PARAMS if p.api_tail]
    return [base.prompt, base.negative_prompt, *axes, *fixed, *layout, *later, *outer, True]


def copy_from_generate(*values: Any) -> list[Any]:
    """The Generate tab's values (GENERATE_KEYS order) for this tab's settings (PARAMS order); a random seed there
    is a random seed (-1) here."""
    given = dict(zip(GENERATE_KEYS, values, strict=True))
    if given.pop("randomize_seed"):
        given["seed"] = -1
    return [given[p.name] for p in PARAMS]


# --- Wiring ---------------------------------------------------------------------------------------------------------


def wire(ctx: AppContext, tab: CompareTab) -> None:
    axis_inputs = tab.axis_inputs()
    preview_ = bind(preview, ctx=ctx)
    tab.status.value = preview_(*(c.value for c in axis_inputs))  # the page opens showing the default sheet's size
    for component in (tab.x_axis, tab.x_values, tab.y_axis, tab.y_values, *tab.outer):
        # One at a time, in order: two quick edits answered out of order would leave the older count showing.
        component.change(
            preview_,
            axis_inputs,
            tab.status,
            api_visibility="private",
            concurrency_limit=1,
            concurrency_id="sheet-preview",
            trigger_mode="always_last",
            show_progress="hidden",
        )
    explorer = tab.explorer
    gr.on(
        triggers=[tab.run.click, tab.prompt.submit],
        fn=zerogpu.gpu(zerogpu.sheet_duration)(bind(make_sheet, ctx=ctx)),
        inputs=tab.sheet_inputs(),
        outputs=[
            tab.picture,
            tab.cells,
            tab.status,
            tab.bundle,
            tab.cell_list,
            explorer.pick_a,
            explorer.pick_b,
            explorer.state,
        ],
        api_name="contact_sheet",
        concurrency_id="gpu",
        concurrency_limit=ctx.config.concurrency,
    ).then(explorer_ui.setup, explorer.state, explorer.setup_outputs(), api_visibility="private")
    explorer_ui.wire(
        ctx,
        explorer,
        then=lambda event: event.then(inputs_from_sheet, explorer.state, tab.sheet_inputs(), api_visibility="private"),
    )
    ctx.explorer, ctx.sheet_inputs = explorer, tab.sheet_inputs()  # History opens saved sheets here
    tab.stop.click(bind(stop_sheet, ctx=ctx), None, None, queue=False, api_visibility="private")
    targets = ctx.generate_targets()
    tab.cells.select(open_in_generate, [tab.cell_list], [*targets, ctx.tabs], api_visibility="private")
    tab.copy.click(copy_from_generate, targets, tab.settings_inputs(), api_visibility="private")


def build_compare_tab(ctx: AppContext) -> CompareTab:
    """Add the Compare tab; call inside the app's `gr.Tabs`, after the Generate tab (a clicked cell opens there)."""
    tab = layout(ctx.spec)
    wire(ctx, tab)
    return tab

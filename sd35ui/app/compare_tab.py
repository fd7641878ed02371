"""The Compare tab: steps x guidance contact sheets that fill in as cells finish, and a side-by-side view.

`build_compare_tab(ctx)` = `layout` (components only) + `wire` (module-level handlers bound to the context). Making a
sheet (`make_sheet`, `sheet_spec_from_ui`) is in `sd35ui.app.sheet_job`; parsing, planning and running it in
`sd35ui.core.sheet`, drawing it in `sd35ui.core.grid`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from sd35ui.app import explorer as explorer_ui
from sd35ui.app import zerogpu
from sd35ui.app.context import (
    AppContext,
    bind,
    control_for,
    escape_markdown,
    session_of,
    slider,
    unchecked,
)
from sd35ui.app.sheet_job import make_sheet, sheet_spec_from_ui
from sd35ui.core import sheet
from sd35ui.core.settings import GENERATE_KEYS, PARAMS, RANGES, ModelSpec

HELP = f"""Values: {sheet.FORMAT_HELP}. **Prompt S/R**: the first value is text to find in the prompt, each value
replaces it (`fox, cat, owl`). The seed is fixed for the whole sheet (-1 draws one at random) unless Seed is an
axis. Click a cell to open its exact settings in the Generate tab."""


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

"""The Compare tab: steps x guidance contact sheets that fill in as cells finish, and a side-by-side view.

Layout and wiring only: parsing, planning and running a sheet live in `sd35ui.core.sheet`, drawing it in
`sd35ui.core.grid`.
"""

from __future__ import annotations

import html
import queue
import re
import string
import threading
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from sd35ui.app import zerogpu
from sd35ui.core import sheet, storage
from sd35ui.core.generate import GenerationOutOfMemory
from sd35ui.core.pipeline import get_pipeline
from sd35ui.core.settings import RANGES, GenerationSettings

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
) -> sheet.SheetSpec:
    """The one place Compare-tab and API values become a validated, size-checked sheet spec."""
    for name, value in (("X axis", x_axis), ("X values", x_values), ("Y axis", y_axis), ("Y values", y_values)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be text, got {type(value).__name__}.")
    try:
        margin = int(float(margin or 0))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"The margin must be a whole number of pixels, got {margin!r}.") from None
    base = GenerationSettings.validated(
        model_spec,
        prompt=prompt,
        negative_prompt=negative_prompt,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        seed=_seed(seed),
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
    )
    sheet.check_sheet(spec)
    return spec


# Every ASCII punctuation mark but `&` and `;` (which spell the entities html.escape writes); escaping `:` and `/`
# also stops bare URLs from becoming links.
_MARKDOWN_SPECIAL = re.compile("([" + re.escape(string.punctuation.replace("&", "").replace(";", "")) + "])")


def escape_markdown(text: str) -> str:
    """User text shown in a Markdown component, as plain text: HTML escaped (no tags, no entities) and Markdown's
    punctuation backslash-escaped (no links, images or emphasis). Gradio's sanitiser would still let `<img>` and
    links through. Written by hand: neither gradio nor the standard library escapes Markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", "  \n")


def cell_caption(spec: sheet.SheetSpec, cell: sheet.Cell) -> str:
    parts = [spec.x.labels()[cell.col]]
    if spec.y is not None:
        parts.append(spec.y.labels()[cell.row])
    return " · ".join(parts)


def build_compare_tab(ctx: Any) -> None:
    """Add the Compare tab; call inside the app's `gr.Tabs`. `ctx` is the app's shared context (see ui.py)."""
    spec_of_model = ctx.spec
    size = spec_of_model.size_range()

    with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
        with gr.Row(equal_height=True):
            prompt = gr.Textbox(
                label="Prompt",
                value=spec_of_model.examples[0] if spec_of_model.examples else "",  # one click makes a sheet
                lines=1,
                max_lines=6,
                scale=5,
                elem_id="sheet-prompt",
                placeholder="The prompt every cell shares (Prompt S/R replaces part of it)",
            )
            run = gr.Button("Make sheet", variant="primary", scale=1, elem_id="sheet-btn")
            stop = gr.Button("Stop", variant="stop", scale=0, elem_id="sheet-stop-btn")
        x_default, x_values_default, y_default, y_values_default = spec_of_model.sheet_axes
        with gr.Row():
            x_axis = gr.Dropdown(list(sheet.AXIS_CHOICES), value=x_default, label="X axis", elem_id="x-axis")
            x_values = gr.Textbox(value=x_values_default, label="X values", elem_id="x-values")
            y_axis = gr.Dropdown(["None", *sheet.AXIS_CHOICES], value=y_default, label="Y axis", elem_id="y-axis")
            y_values = gr.Textbox(value=y_values_default, label="Y values", elem_id="y-values")
        gr.Markdown(HELP)
        with gr.Accordion("Fixed settings (everything not on an axis)", open=False):
            negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="sheet-negative")
            with gr.Row():
                steps = ctx.slider(spec_of_model.steps_range(), elem_id="sheet-steps")
                guidance = ctx.slider(RANGES["guidance"], elem_id="sheet-guidance")
            with gr.Row():
                width = ctx.slider(size, label="Width", elem_id="sheet-width")
                height = ctx.slider(size, label="Height", elem_id="sheet-height")
                seed = ctx.unchecked(
                    gr.Number(
                        label="Seed (-1: one random seed for the sheet)", value=-1, precision=0, elem_id="sheet-seed"
                    )
                )
            copy = gr.Button("Copy settings from the Generate tab", size="sm")
        with gr.Accordion("Layout", open=False):
            with gr.Row():
                show_times = gr.Checkbox(label="Show time per cell", value=True, elem_id="sheet-times")
                legend = gr.Checkbox(label="Labels and title", value=True, elem_id="sheet-legend")
                swap = gr.Checkbox(label="Swap axes", value=False, elem_id="sheet-swap")
                margin = ctx.unchecked(
                    gr.Number(label="Margin between cells (px)", value=0, precision=0, elem_id="sheet-margin")
                )
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
        cell_list = gr.State([])  # [{"caption", "path", "settings"}] in gallery order
        with gr.Accordion("Side by side", open=False, elem_id="side-by-side"):
            with gr.Row():
                pick_a = gr.Dropdown([], label="Left", elem_id="pick-a")
                pick_b = gr.Dropdown([], label="Right", elem_id="pick-b")
            with gr.Row():
                left = gr.Image(label="Left", type="filepath", format="png", interactive=False, elem_id="left")
                right = gr.Image(label="Right", type="filepath", format="png", interactive=False, elem_id="right")

    def preview(*values: Any) -> str:
        try:
            spec = sheet_spec_from_ui(spec_of_model, "preview", "", *values)
        except ValueError as exc:
            return f"⚠️ {escape_markdown(str(exc))}"
        shape = f"{spec.cols} x {spec.rows}" if spec.y is not None else "one row"
        return f"{spec.n_cells} cells ({shape})."

    axis_inputs = [x_axis, x_values, y_axis, y_values, steps, guidance, width, height, seed]
    status.value = preview(*(c.value for c in axis_inputs))  # the page opens showing the default sheet's size
    for component in (x_axis, x_values, y_axis, y_values):
        component.change(preview, axis_inputs, status, api_visibility="private", queue=False)

    @zerogpu.gpu(zerogpu.sheet_duration)
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
        request: gr.Request = None,
        progress: gr.Progress = gr.Progress(),
    ):
        """Make a contact sheet: one image per combination of X and Y values, in a labelled grid.

        Args:
            prompt: what every image should show.
            negative_prompt: what they should not show (may be empty).
            x_axis: the setting varied across columns: Steps, Guidance, Seed or Prompt S/R.
            x_values: its values: a list "3, 4.5, 6", a range by step "10-40(+10)" or by count "3-7.5[4]"; for
                Prompt S/R the first value is the text to find in the prompt and every value replaces it.
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
            swap: swap the axes (X down the side, Y across the top).

        Returns:
            The sheet PNG (axes and fixed settings in its metadata), the cells, a status line and a zip of all.
        """
        try:
            spec = sheet_spec_from_ui(
                spec_of_model,
                prompt,
                negative_prompt,
                x_axis,
                x_values,
                y_axis,
                y_values,
                steps,
                guidance,
                width,
                height,
                seed,
                show_times,
                margin,
                legend,
                swap,
            )
        except ValueError as exc:
            raise gr.Error(str(exc), title="Invalid sheet") from None
        session = ctx.session_of(request)
        stop_event = ctx.stops.start(session)
        events: queue.Queue = queue.Queue()
        sheet_path = storage.new_path("sheet", spec.base.seed, ctx.config.outputs)

        def worker() -> None:
            try:
                pipe = get_pipeline(ctx.options)
                result = sheet.run_sheet(
                    pipe,
                    spec,
                    on_progress=lambda i, n, s, t: events.put(("step", (i, n, s, t))),
                    stop=stop_event,
                    on_cell=lambda done: events.put(("cell", done)),
                )
                events.put(("done", result))
            except BaseException as exc:  # reported to the user below; the server goes on
                events.put(("error", exc))

        event_id = LocalContext.event_id.get(None)
        threading.Thread(target=worker, name="sd35ui-sheet", daemon=True).start()
        made: list[dict[str, Any]] = []
        finished: list[sheet.CellResult] = []
        plan = sheet.plan_sheet(spec)
        gallery: list[tuple[str, str]] = []
        total_steps = sum(c.settings.steps for c in plan)
        steps_done = 0
        progress(0, desc=f"{spec.n_cells} cells")
        try:
            while True:
                kind, payload = events.get()
                if kind == "step":
                    i, n, s, t = payload
                    steps_done += 1
                    progress((steps_done, total_steps), desc=f"Cell {i + 1} of {n} · step {s}/{t}")
                    if ctx.client_gone(event_id):
                        stop_event.set()  # the tab was closed or the client went away: free the GPU
                elif kind == "cell":
                    path = sheet.save_cell(payload, sheet_path)  # saved as it is made: nothing lost
                    caption = cell_caption(spec, payload.cell)
                    made.append({"caption": caption, "path": str(path), "settings": payload.settings.to_dict()})
                    gallery.append((str(path), caption))
                    finished.append(payload)
                    left_s = sheet.estimate_seconds(plan, finished)
                    eta = f" · about {left_s:.0f} s left" if left_s is not None and len(made) < spec.n_cells else ""
                    text = f"Cell {len(made)} of {spec.n_cells} done · seed {spec.base.seed}{eta}"
                    choices = [m["caption"] for m in made]
                    yield (
                        gr.skip(),
                        gr.Gallery(value=list(gallery), columns=spec.cols if not spec.swap else spec.rows),
                        text,
                        gr.skip(),
                        list(made),
                        gr.Dropdown(choices=choices),
                        gr.Dropdown(choices=choices),
                    )
                elif kind == "error":
                    raise payload
                else:
                    result: sheet.SheetResult = payload
                    sheet_file, _, zip_file = sheet.save_sheet(result, sheet_path=sheet_path)
                    stopped = f" · stopped: {len(result.cells)} of {spec.n_cells} cells kept" if result.stopped else ""
                    text = f"{len(result.cells)} cells in {result.seconds:.1f} s · seed {spec.base.seed}{stopped}"
                    choices = [m["caption"] for m in made]
                    yield (
                        str(sheet_file),
                        list(gallery),
                        text,
                        str(zip_file),
                        list(made),
                        gr.Dropdown(choices=choices, value=choices[0] if choices else None),
                        gr.Dropdown(choices=choices, value=choices[-1] if choices else None),
                    )
                    return
        except GenerationOutOfMemory as exc:
            raise gr.Error(f"{exc} The finished cells are saved in {sheet_path.parent}.", title="Out of memory")
        except gr.Error:
            raise
        except Exception as exc:
            raise ctx.user_error(exc) from exc
        finally:
            stop_event.set()  # a closed tab ends the generator: stop the worker within one step
            ctx.stops.finish(session, stop_event)

    sheet_inputs = [
        prompt,
        negative,
        x_axis,
        x_values,
        y_axis,
        y_values,
        steps,
        guidance,
        width,
        height,
        seed,
        show_times,
        margin,
        legend,
        swap,
    ]
    gr.on(
        triggers=[run.click, prompt.submit],
        fn=make_sheet,
        inputs=sheet_inputs,
        outputs=[picture, cells, status, bundle, cell_list, pick_a, pick_b],
        api_name="contact_sheet",
        concurrency_id="gpu",
        concurrency_limit=ctx.config.concurrency,
    )

    def stop_sheet(request: gr.Request) -> None:
        ctx.stops.stop(ctx.session_of(request))

    stop.click(stop_sheet, None, None, queue=False, api_visibility="private")

    generate_inputs = ctx.generate_inputs
    targets = [generate_inputs[k] for k in ctx.GENERATE_KEYS]

    def open_in_generate(made: list[dict[str, Any]], evt: gr.SelectData) -> list[Any]:
        if not made or evt.index is None or evt.index >= len(made):
            return [gr.skip()] * (len(targets) + 1)
        s = made[evt.index]["settings"]
        values = [
            s["prompt"],
            s["negative_prompt"],
            s["steps"],
            s["guidance"],
            s["width"],
            s["height"],
            s["seed"],
            False,
        ]
        return [*values, gr.Tabs(selected="generate")]

    cells.select(open_in_generate, [cell_list], [*targets, ctx.tabs], api_visibility="private")

    def copy_from_generate(*values: Any) -> list[Any]:
        p, n, st, g, w, h, sd, randomize = values
        return [p, n, st, g, w, h, -1 if randomize else sd]

    copy.click(
        copy_from_generate, targets, [prompt, negative, steps, guidance, width, height, seed], api_visibility="private"
    )

    def show(made: list[dict[str, Any]], caption: str | None) -> Any:
        for m in made:
            if m["caption"] == caption:
                return gr.Image(value=m["path"], label=f"{caption} · seed {m['settings']['seed']}")
        return gr.skip()

    pick_a.change(show, [cell_list, pick_a], left, api_visibility="private")
    pick_b.change(show, [cell_list, pick_b], right, api_visibility="private")

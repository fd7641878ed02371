"""The Compare tab's explorer: re-arrange the sheet just made (or one loaded from its PNG) without generating
anything, see what each step along a numeric axis changes and what it costs, and compare two cells A/B.

`layout()` adds the components (inside the Compare tab), `wire(ctx, tab, explorer)` connects them. The sheet being
explored lives in a `gr.State` (server side: the `SheetResult` with its cell images); every view is drawn from it by
`sd35ui.core.explore.rearrange`, so it is pixel for pixel the sheet made with those axes from the start.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from sd35ui.app.context import AppContext, bind, escape_markdown, escape_tags
from sd35ui.core import distance, explore, sheet

SLOTS = 4  # X, Y and two outer axes
ROLES = ("X", "Y", "Outer")


@dataclass
class Explorer:
    """The explorer's components."""

    state: gr.State  # the SheetResult explored (None before the first sheet)
    roles: list[gr.Radio]  # one per axis slot: where the axis goes
    shown: list[gr.CheckboxGroup]  # one per axis slot: its values to show
    view: gr.Image
    note: gr.Markdown
    changes: gr.LinePlot
    seconds: gr.LinePlot
    pick_a: gr.Dropdown
    pick_b: gr.Dropdown
    slider: gr.ImageSlider
    heat: gr.Image
    ab_note: gr.Markdown
    ab_settings: gr.Markdown  # A's and B's settings side by side, the differing ones in bold
    open_a: gr.Button  # A's settings into the Generate tab
    load: gr.File

    def arrangement_inputs(self) -> list[Any]:
        return [self.state, *self.roles, *self.shown]

    def setup_outputs(self) -> list[Any]:
        return [*self.roles, *self.shown, self.view, self.note, self.changes, self.seconds, self.pick_a, self.pick_b]


def layout() -> Explorer:
    """The explorer's components; call inside the Compare tab, under the sheet."""
    state = gr.State(None)
    with gr.Accordion("Explore the sheet: re-arrange, hide values, compare cells", open=True, elem_id="explorer"):
        note = gr.Markdown("Make a sheet, or load one, to explore it here.", elem_id="explorer-note")
        roles, shown = [], []
        for slot in range(SLOTS):
            with gr.Row():
                roles.append(
                    gr.Radio(list(ROLES), label=f"Axis {slot + 1}", visible=False, elem_id=f"explore-role-{slot}")
                )
                shown.append(gr.CheckboxGroup([], label="Show", visible=False, elem_id=f"explore-show-{slot}"))
        view = gr.Image(
            label="Re-arranged sheet (made from the saved cells; nothing is generated)",
            type="pil",
            format="png",
            interactive=False,
            elem_id="explorer-view",
            buttons=["download", "fullscreen"],
        )
        with gr.Row():
            changes = gr.LinePlot(
                x="value",
                y="difference",
                color="axis",
                title="How much the picture changes to the next value (percent mean absolute difference)",
                elem_id="explorer-changes",
            )
            seconds = gr.LinePlot(
                x="value", y="seconds", color="axis", title="Seconds per cell", elem_id="explorer-seconds"
            )
        with gr.Row():
            pick_a = gr.Dropdown([], label="A", elem_id="pick-a")
            pick_b = gr.Dropdown([], label="B", elem_id="pick-b")
        with gr.Row():
            slider = gr.ImageSlider(label="A / B (drag)", type="pil", elem_id="ab-slider")
            heat = gr.Image(label="Where A and B differ (brightest: most)", type="pil", elem_id="ab-heat")
        ab_note = gr.Markdown(elem_id="ab-note")
        ab_settings = gr.Markdown(elem_id="ab-settings")
        open_a = gr.Button("Open A in the Generate tab", size="sm", elem_id="ab-open")
        load = gr.File(label="Load a sheet PNG made by sd35ui", file_types=[".png"], elem_id="load-sheet")
    ab = (pick_a, pick_b, slider, heat, ab_note, ab_settings, open_a)
    return Explorer(state, roles, shown, view, note, changes, seconds, *ab, load)


# --- Handlers -------------------------------------------------------------------------------------------------------


def cell_caption(spec: sheet.SheetSpec, cell: sheet.Cell) -> str:
    """A cell's name in the gallery and the A/B pickers: its axis labels ("Guidance: 3 · Steps: 10")."""
    return sheet.cell_name(spec, cell, " · ")


def cell_names(result: sheet.SheetResult) -> list[str]:
    """A name per made cell, for the A/B pickers, in the order they were made."""
    return [cell_caption(result.spec, done.cell) for done in sorted(result.cells, key=lambda d: d.cell.index)]


def setup(result: sheet.SheetResult | None) -> list[Any]:
    """Show one slot per axis (its place and every value), the sheet as made, the change plots and the pickers."""
    if result is None:
        return [gr.skip()] * (2 * SLOTS + 6)
    axes = result.spec.axes()
    order, _ = explore.arrangement(result.spec)
    role_of = {order[0]: "X", **({order[1]: "Y"} if order[1] != -1 else {})}
    roles, shown = [], []
    for slot in range(SLOTS):
        if slot < len(axes):
            labels = [sheet.format_value(v) for v in axes[slot].values]
            roles.append(gr.Radio(value=role_of.get(slot, "Outer"), label=axes[slot].label, visible=True))
            shown.append(
                gr.CheckboxGroup(choices=labels, value=labels, label=f"Show: {axes[slot].label}", visible=True)
            )
        else:
            roles.append(gr.Radio(visible=False))
            shown.append(gr.CheckboxGroup(visible=False))
    names = cell_names(result)
    reused = f", {result.reused} reused from earlier" if result.reused else ""
    note = (
        f"{len(result.cells)} of {result.spec.n_cells} cells{reused}. Put any axis on X, Y or outer (one sub-sheet "
        "per value) and hide values: the picture re-composes from the saved cells."
    )
    changes, seconds = plots(result)
    return [
        *roles,
        *shown,
        result.image(),
        note,
        changes,
        seconds,
        gr.Dropdown(choices=names, value=names[0] if names else None),
        gr.Dropdown(choices=names, value=names[-1] if names else None),
    ]


def plots(result: sheet.SheetResult) -> tuple[Any, Any]:
    """The change and time plots' data: one line per numeric axis (`sheet.axis_changes`)."""
    import pandas as pd

    rows_d, rows_t = [], []
    for label, change in sheet.axis_changes(result).items():
        for value, diff in zip(change["values"], change["distance_to_next"]):
            if diff is not None:
                rows_d.append({"axis": label, "value": value, "difference": diff})
        for value, secs in zip(change["values"], change["seconds"]):
            if secs is not None:
                rows_t.append({"axis": label, "value": value, "seconds": secs})
    return pd.DataFrame(rows_d, columns=["axis", "value", "difference"]), pd.DataFrame(
        rows_t, columns=["axis", "value", "seconds"]
    )


def recompose(result: sheet.SheetResult | None, *values: Any) -> Any:
    """The sheet under the chosen places and shown values (`explore.rearrange`); a message for a choice that cannot
    be drawn (two X axes, an axis with nothing shown)."""
    if result is None:
        return gr.skip(), gr.skip()
    roles, shown = values[:SLOTS], values[SLOTS:]
    axes = result.spec.axes()
    try:
        order = arrangement_order([roles[a] for a in range(len(axes))], [a.label for a in axes])
        keep = {}
        for a, axis in enumerate(axes):
            labels = [sheet.format_value(v) for v in axis.values]
            keep[a] = [i for i, label in enumerate(labels) if label in (shown[a] or [])]
        moved = explore.rearrange(result, order, keep)
    except ValueError as exc:
        return gr.skip(), f"⚠️ {escape_markdown(html.unescape(str(exc)))}"  # plain text, escaped once
    shape = " x ".join(str(len(a.values)) for a in moved.spec.axes())
    return moved.image(), f"{len(moved.cells)} cells shown ({shape})."


def arrangement_order(roles: list[str | None], labels: list[str]) -> list[int]:
    """`explore.rearrange`'s order from each axis's place: exactly one X, at most one Y, the rest outer (in
    order)."""
    xs = [a for a, role in enumerate(roles) if role == "X"]
    ys = [a for a, role in enumerate(roles) if role == "Y"]
    if len(xs) != 1:
        named = ", ".join(labels[a] for a in xs) or "none"
        raise ValueError(f"Put exactly one axis on X (now: {named}).")
    if len(ys) > 1:
        raise ValueError(f"Put at most one axis on Y (now: {', '.join(labels[a] for a in ys)}).")
    outer = [a for a, role in enumerate(roles) if role not in ("X", "Y")]
    if len(outer) > sheet.MAX_OUTER:
        raise ValueError(f"At most {sheet.MAX_OUTER} axes can be outer; put one on Y.")
    return [xs[0], ys[0] if ys else -1, *outer]


def settings_table(first: sheet.CellResult, second: sheet.CellResult) -> str:
    """A's and B's settings as a Markdown table, the settings that differ in bold."""
    a, b = first.settings.to_dict(), second.settings.to_dict()
    rows = ["| setting | A | B |", "|---|---|---|"]
    for key in a:
        va, vb = (escape_markdown(sheet.format_value(v)) or '""' for v in (a[key], b[key]))
        rows.append(f"| **{key}** | **{va}** | **{vb}** |" if a[key] != b[key] else f"| {key} | {va} | {vb} |")
    rows.append(f"| time | {first.seconds:.2f} s | {second.seconds:.2f} s |")
    return "\n".join(rows)


def compare(result: sheet.SheetResult | None, a: str | None, b: str | None) -> tuple[Any, Any, str, str]:
    """A/B of two cells: the slider, the difference heat map, the distance in numbers and both cells' settings."""
    if result is None or not a or not b:
        return gr.skip(), gr.skip(), "", ""
    by_name = dict(zip(cell_names(result), sorted(result.cells, key=lambda d: d.cell.index)))
    if a not in by_name or b not in by_name:
        return gr.skip(), gr.skip(), "", ""
    table = settings_table(by_name[a], by_name[b])
    first, second = by_name[a].image, by_name[b].image
    if first.size != second.size:
        return (first, second), None, "The two cells differ in size, so there is no difference map.", table
    heat = distance.difference_map(first, second)
    shown = heat.info.get(distance.DIFFERENCE_KEY, 0.0)
    text = (
        f"A: {escape_markdown(a)} · B: {escape_markdown(b)} · they differ by "
        f"{distance.image_distance(first, second):.2f}% (mean absolute difference); white in the map = "
        f"{shown:.1f}%"
    )
    return (first, second), heat, text, table


def open_a(result: sheet.SheetResult | None, a: str | None) -> list[Any]:
    """Cell A's settings, one value per Generate-tab input, and that tab selected."""
    from sd35ui.core.settings import GENERATE_KEYS

    cells = sorted(result.cells, key=lambda d: d.cell.index) if result is not None else []
    by_name = dict(zip(cell_names(result), cells)) if result is not None else {}
    if a not in by_name:
        raise gr.Error("Pick a cell as A first.", title="No cell")
    values = {**by_name[a].settings.to_dict(), "randomize_seed": False}
    return [*(values[key] for key in GENERATE_KEYS), gr.Tabs(selected="generate")]


def load(path: str | None, request: gr.Request = None, *, ctx: AppContext) -> Any:
    """A sheet PNG (ours) into the explorer, with its cells where their files are beside it."""
    if not path:
        return gr.skip()
    try:
        return explore.load_sheet(Path(path))
    except ValueError as exc:
        raise gr.Error(escape_tags(str(exc)), title="Not a sheet") from None


# --- Wiring ---------------------------------------------------------------------------------------------------------


def wire(ctx: AppContext, explorer: Explorer, then: Callable[[Any], Any] | None = None) -> None:
    """Connect the explorer; `then(event)` chains more onto loading a sheet (the Compare tab fills its inputs)."""
    private = dict(api_visibility="private")
    for control in (*explorer.roles, *explorer.shown):
        control.input(recompose, explorer.arrangement_inputs(), [explorer.view, explorer.note], queue=False, **private)
    for pick in (explorer.pick_a, explorer.pick_b):
        pick.change(
            compare,
            [explorer.state, explorer.pick_a, explorer.pick_b],
            [explorer.slider, explorer.heat, explorer.ab_note, explorer.ab_settings],
            **private,
        )
    explorer.open_a.click(open_a, [explorer.state, explorer.pick_a], [*ctx.generate_targets(), ctx.tabs], **private)
    loaded = explorer.load.upload(bind(load, ctx=ctx), explorer.load, explorer.state, **private).then(
        setup, explorer.state, explorer.setup_outputs(), **private
    )
    if then is not None:
        then(loaded)

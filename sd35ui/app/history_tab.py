"""The History tab: every saved result, newest first, from the outputs folder (so it survives restarts); open one
large with its settings and send them to the Generate tab, or drop any PNG (ours or A1111-style) to load its
settings. `build_history_tab(ctx)` = `layout` (components only) + `wire` (module-level handlers bound to the
context); listing, thumbnails and reading settings live in `sd35ui.core.history`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from sd35ui.app.context import AppContext, bind, escape_tags
from sd35ui.core import history
from sd35ui.core.quoting import QUOTE_LIMIT, safe_text
from sd35ui.core.settings import ModelSpec

HELP = """Every image and contact sheet is saved in the outputs folder as it is made, with its settings inside the
PNG. Click one to see it large, then **Send to Generate** to make it again or vary it. Drop a PNG saved by sd35ui or
by an A1111-compatible tool to load its settings."""


def show_page(
    root: Path, number: Any, include_cells: Any = False
) -> tuple[list[tuple[str, str]], list[str], str, int]:
    """One gallery page: (thumbnail, caption) items, the full-size paths in the same order, a position line and
    the page number actually shown. Files that cannot be read are left out and counted."""
    try:
        number = int(number or 0)
    except (TypeError, ValueError, OverflowError):
        number = 0
    page = history.page_of(history.list_results(root, include_cells=bool(include_cells)), number)
    items: list[tuple[str, str]] = []
    paths: list[str] = []
    unreadable = 0
    for entry in page.entries:
        try:
            thumb = history.thumbnail(entry, root)
        except ValueError:  # a damaged or foreign file
            unreadable += 1
            continue
        try:
            prompt = history.read_metadata(entry.path)[0]["settings"].prompt
        except ValueError:
            prompt = None
        items.append((str(thumb), history.caption(entry, prompt if isinstance(prompt, str) else None)))
        paths.append(str(entry.path))
    position = page.describe()
    if unreadable:
        position += f" · {unreadable} file(s) on this page could not be read"
    return items, paths, position, page.number


def describe(root: Path, path: str | None, spec: ModelSpec) -> tuple[str | None, str]:
    """(the image to show large, its settings as text) for a result file inside `root`."""
    if not path or not history.is_within(Path(path), root):
        return None, ""
    try:
        loaded = history.load_settings(Path(path), spec)
    except ValueError as exc:
        return path, html.unescape(str(exc))  # a Textbox shows text, not HTML: the quoted parts as they are
    lines = [f"File: {Path(path).resolve().relative_to(Path(root).resolve())}"]
    if loaded.model:
        lines.append(f"Model: {loaded.model}")
    lines += ["", loaded.parameters]
    notes = (
        ("Send to Generate changes these, so that the settings go together:", loaded.changed),
        ("Before generating again with this app's model:", loaded.notes),
    )
    for heading, items in notes:
        if items:  # the notes quote the file's text escaped for HTML; a Textbox shows it as it is
            lines += ["", heading, *(f"- {html.unescape(item)}" for item in items)]
    return path, "\n".join(lines)


def generate_updates(loaded: history.LoadedSettings) -> list[Any]:
    """One value per Generate-tab input (in history.GENERATE_KEYS order); gr.skip() keeps what is there."""
    return [loaded.values[key] if key in loaded.values else gr.skip() for key in history.GENERATE_KEYS]


def _announce(loaded: history.LoadedSettings, name: str) -> None:
    """Toasts saying what was loaded from the file called `name` (the sender's name for it: escaped), what was
    changed so that the settings go together, and what to change before generating."""
    kind = "sd35ui" if loaded.source == "sd35ui" else "A1111-style"
    missing = [k for k in history.GENERATE_KEYS if k not in loaded.values and k != "randomize_seed"]
    kept = f" Not in the file, so unchanged: {', '.join(missing)}." if missing else ""
    loaded_text = f"Loaded the {kind} settings of {safe_text(name, QUOTE_LIMIT)} into the Generate tab.{kept}"
    gr.Info(escape_tags(loaded_text), title="Settings loaded")
    if loaded.changed:
        gr.Warning(escape_tags(" ".join(loaded.changed)), title="Changed on loading: settings that do not go together")
    if loaded.notes:
        gr.Warning(escape_tags(" ".join(loaded.notes)), title="Change before generating")


# --- Layout ---------------------------------------------------------------------------------------------------------


@dataclass
class HistoryTab:
    """The History tab's components."""

    tab: gr.Tab
    refresh: gr.Button
    newer: gr.Button
    older: gr.Button
    cells: gr.Checkbox
    position: gr.Markdown
    gallery: gr.Gallery
    large: gr.Image
    details: gr.Textbox
    send: gr.Button
    open_sheet: gr.Button
    drop: gr.File
    page: gr.Number  # a component, not State: the API can pass it
    paths: gr.State  # the full-size paths of the gallery's items
    selected: gr.State  # the path shown large

    def page_outputs(self) -> list[Any]:
        return [self.gallery, self.paths, self.position, self.page]


def _details() -> dict[str, Any]:
    large = gr.Image(
        label="Selected",
        type="filepath",
        format="png",  # the file itself, settings included, for download
        interactive=False,
        buttons=["download", "fullscreen"],
        elem_id="history-image",
    )
    details = gr.Textbox(label="Settings", lines=8, interactive=False, buttons=["copy"], elem_id="history-settings")
    send = gr.Button("Send to Generate", variant="primary", interactive=False, elem_id="history-send")
    open_sheet = gr.Button(
        "Open this sheet in the Compare explorer", interactive=False, visible=False, elem_id="history-open-sheet"
    )
    drop = gr.File(label="Load settings from a PNG", file_types=[".png"], type="filepath", elem_id="history-drop")
    return dict(large=large, details=details, send=send, open_sheet=open_sheet, drop=drop)


def layout() -> HistoryTab:
    """The tab's components; call inside the app's `gr.Tabs`."""
    with gr.Tab("History", id="history", elem_id="tab-history") as tab:
        gr.Markdown(HELP)
        with gr.Row(equal_height=True):
            refresh = gr.Button("Refresh", scale=0, elem_id="history-refresh")
            newer = gr.Button("◀ Newer", scale=0, elem_id="history-newer")
            older = gr.Button("Older ▶", scale=0, elem_id="history-older")
            cells = gr.Checkbox(label="Show contact-sheet cells", value=False, scale=0, elem_id="history-cells")
            position = gr.Markdown(elem_id="history-position")
        with gr.Row():
            with gr.Column(scale=3):
                gallery = gr.Gallery(
                    label="Results, newest first",
                    columns=6,
                    height=640,
                    object_fit="contain",
                    allow_preview=False,
                    interactive=False,
                    elem_id="history-gallery",
                )
            with gr.Column(scale=2):
                details = _details()
        page = gr.Number(value=0, precision=0, visible=False)
        page.preprocess = lambda payload: payload  # show_page reads any value; Gradio's check fails on NaN
        paths = gr.State([])
        selected = gr.State(None)
    return HistoryTab(
        tab, refresh, newer, older, cells, position, gallery, **details, page=page, paths=paths, selected=selected
    )


# --- Handlers -------------------------------------------------------------------------------------------------------


def list_page(number: Any, include_cells: Any, *, ctx: AppContext) -> tuple[Any, ...]:
    """One page of saved results (thumbnails), newest first; page 0 is the newest."""
    return show_page(Path(ctx.config.outputs), number, include_cells)


def step_page(root: Path, number: Any, include_cells: Any, delta: int) -> tuple[Any, ...]:
    try:
        number = int(number) + delta
    except (TypeError, ValueError, OverflowError):
        number = 0
    return show_page(root, number, include_cells)


def open_item(shown: list[str], evt: gr.SelectData, *, ctx: AppContext) -> tuple[Any, ...]:
    index = evt.index if isinstance(evt.index, int) else -1
    path = shown[index] if 0 <= index < len(shown) else None
    image, text = describe(Path(ctx.config.outputs), path, ctx.spec)
    is_sheet = path is not None and history.entry_kind(Path(path)) == "sheet"
    return (
        image,
        text,
        path,
        gr.Button(interactive=image is not None),
        gr.Button(interactive=is_sheet, visible=is_sheet),
    )


def send_selected(path: str | None, *, ctx: AppContext) -> list[Any]:
    if not path or not history.is_within(Path(path), Path(ctx.config.outputs)):
        raise gr.Error("Pick a result in the gallery first.", title="Nothing selected")
    try:
        loaded = history.load_settings(Path(path), ctx.spec)
    except ValueError as exc:
        raise gr.Error(escape_tags(str(exc)), title="No settings") from None
    _announce(loaded, Path(path).name)
    return [*generate_updates(loaded), gr.Tabs(selected="generate")]


def load_png(file: str | None, *, ctx: AppContext) -> list[Any]:
    """Load the generation settings embedded in a PNG (saved by sd35ui or an A1111-compatible tool) into the
    Generate tab's inputs."""
    if not file:
        return [*[gr.skip()] * len(history.GENERATE_KEYS), gr.skip()]
    name = Path(file).name
    try:
        loaded = history.load_settings(Path(file), ctx.spec)
    except ValueError as exc:
        raise gr.Error(escape_tags(str(exc)), title="No settings loaded") from None
    _announce(loaded, name)
    return [*generate_updates(loaded), gr.Tabs(selected="generate")]


# --- Wiring ---------------------------------------------------------------------------------------------------------


def wire(ctx: AppContext, tab: HistoryTab) -> None:
    root = Path(ctx.config.outputs)
    targets = [*ctx.generate_targets(history.GENERATE_KEYS), ctx.tabs]
    # Browsing runs outside the queue: it reads small files, and must work while GPU jobs fill the queue.
    page_outputs = tab.page_outputs()
    browse = dict(outputs=page_outputs, api_visibility="private", queue=False)
    tab.refresh.click(bind(list_page, ctx=ctx), [tab.page, tab.cells], page_outputs, api_name="history", queue=False)
    tab.tab.select(lambda c: show_page(root, 0, c), [tab.cells], **browse)
    tab.cells.change(lambda c: show_page(root, 0, c), [tab.cells], **browse)
    tab.newer.click(lambda n, c: step_page(root, n, c, -1), [tab.page, tab.cells], **browse)
    tab.older.click(lambda n, c: step_page(root, n, c, +1), [tab.page, tab.cells], **browse)
    gallery_outputs = [tab.large, tab.details, tab.selected, tab.send, tab.open_sheet]
    tab.gallery.select(bind(open_item, ctx=ctx), [tab.paths], gallery_outputs, api_visibility="private", queue=False)
    tab.send.click(
        bind(send_selected, ctx=ctx), [tab.selected], targets, api_visibility="private", concurrency_limit=None
    )
    if ctx.explorer is not None:  # a saved sheet back into the Compare tab's explorer, and its axes into its inputs
        from sd35ui.app import compare_tab, explorer

        private = dict(api_visibility="private")
        tab.open_sheet.click(bind(explorer.load, ctx=ctx), [tab.selected], ctx.explorer.state, **private).then(
            explorer.setup, ctx.explorer.state, ctx.explorer.setup_outputs(), **private
        ).then(compare_tab.inputs_from_sheet, ctx.explorer.state, ctx.sheet_inputs, **private).then(
            lambda: gr.Tabs(selected="compare"), None, ctx.tabs, **private
        )
    tab.drop.upload(
        bind(load_png, ctx=ctx),
        [tab.drop],
        targets,
        api_name="load_settings",
        # Its own small limit: never waits behind GPU jobs, and a flood of dropped files cannot take every worker.
        concurrency_limit=2,
        concurrency_id="load_settings",
    )


def build_history_tab(ctx: AppContext) -> HistoryTab:
    """Add the History tab; call inside the app's `gr.Tabs`, after the Generate tab (whose inputs, keyed as
    history.GENERATE_KEYS, receive loaded settings; the Tabs switch to its id "generate")."""
    history.remove_stale_temp_files(Path(ctx.config.outputs))  # left by a writer that was killed mid-write
    tab = layout()
    wire(ctx, tab)
    return tab

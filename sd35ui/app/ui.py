"""The Gradio Blocks app: the page header and the three tabs, each built by its module from the shared context
(`context.AppContext`): Generate (`generate_tab`), Compare (`compare_tab`) and History (`history_tab`). Serving it
(queue, cache bounds, login gate) is `server.launch`."""

from __future__ import annotations

import gradio as gr

from sd35ui.app.compare_tab import build_compare_tab
from sd35ui.app.context import AppConfig, AppContext
from sd35ui.app.generate_tab import build_generate_tab
from sd35ui.app.history_tab import build_history_tab
from sd35ui.app.server import launch
from sd35ui.core.pipeline import model_banner

__all__ = ["AppConfig", "create_app", "launch"]


def create_app(config: AppConfig | None = None) -> gr.Blocks:
    ctx = AppContext.create(config or AppConfig())
    banner = model_banner(ctx.options)
    with gr.Blocks(title="sd35ui · Stable Diffusion 3.5 Medium") as app:
        ctx.app = app
        gr.Markdown("# sd35ui · Stable Diffusion 3.5 Medium")
        if banner:
            gr.Markdown(f"⚠️ **{banner}**", elem_id="model-banner")
        with gr.Tabs(elem_id="tabs") as tabs:
            ctx.tabs = tabs
            build_generate_tab(ctx)  # first: the other tabs send settings to its inputs
            build_compare_tab(ctx)
            build_history_tab(ctx)
        ctx.run_deferred()  # the Generate tab's events: registered last, as they always were
        app.sd35ui = ctx  # for tests: the shared context
    return app

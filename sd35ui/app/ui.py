"""The Gradio Blocks app: the page header and the three tabs, each built by its module from the shared context
(`context.AppContext`): Generate (`generate_tab`), Compare (`compare_tab`) and History (`history_tab`). Serving it
(queue, cache bounds, login gate) is `server.launch`."""

from __future__ import annotations

from typing import Any

import gradio as gr

from sd35ui.app.compare_tab import build_compare_tab
from sd35ui.app.context import AppConfig, AppContext
from sd35ui.app.generate_tab import build_generate_tab
from sd35ui.app.history_tab import build_history_tab
from sd35ui.app.server import launch
from sd35ui.core.pipeline import model_banner
from sd35ui.core.settings import PARAMS
from sd35ui.core.sheet import SHEET_ADDED

__all__ = ["AppConfig", "create_app", "launch"]

TAIL_PARAMS = sum(1 for p in PARAMS if p.api_tail)


class App(gr.Blocks):
    """gr.Blocks that takes calls written before the settings added since (`Param.api_tail`): Gradio's REST routes
    refuse a call with fewer values than the event has inputs (gradio_client fills defaults in, curl does not), so
    such a call's missing trailing values are filled with those controls' defaults here, before Gradio checks them.
    Written by hand because Gradio 6.31 has no option for it; only the settings added since are ever filled."""

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        missing = len(block_fn.inputs) - len(inputs)
        added = {"generate": TAIL_PARAMS, "contact_sheet": TAIL_PARAMS + SHEET_ADDED}.get(block_fn.api_name, 0)
        if 0 < missing <= added:
            inputs = [*inputs, *(block.value for block in block_fn.inputs[len(inputs) :])]
        return await super().preprocess_data(block_fn, inputs, *args, **kwargs)


def create_app(config: AppConfig | None = None) -> gr.Blocks:
    ctx = AppContext.create(config or AppConfig())
    banner = model_banner(ctx.options)
    with App(title="sd35ui · Stable Diffusion 3.5 Medium") as app:
        ctx.app = app
        gr.Markdown("# sd35ui · Stable Diffusion 3.5 Medium")
        if banner:
            gr.Markdown(f"⚠️ **{banner}**", elem_id="model-banner")
        if len(ctx.pool) > 1:  # --devices / --ray: say where the images are made
            names = ", ".join(worker.name for worker in ctx.pool.workers)
            gr.Markdown(f"Running on {len(ctx.pool)} pipelines ({names}).", elem_id="workers-banner")
        with gr.Tabs(elem_id="tabs") as tabs:
            ctx.tabs = tabs
            build_generate_tab(ctx)  # first: the other tabs send settings to its inputs
            build_compare_tab(ctx)
            build_history_tab(ctx)
        ctx.run_deferred()  # the Generate tab's events: registered last, as they always were
        app.sd35ui = ctx  # for tests: the shared context
    return app

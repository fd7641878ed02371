"""A fresh app on the tiny model for the tests that need their own server (launch options the shared `app_server`
fixture does not have: a login, cache limits, MCP): used by tests/app/test_hardening.py and the browser login test."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from sd35ui.core.pipeline import LoadOptions

# A small /contact_sheet call on the tiny model: 2 x 2 cells of 64 px (tests/app/test_compare_app.py and others).
SHEET = dict(
    prompt="a red circle",
    negative_prompt="",
    x_axis="Guidance",
    x_values="1, 4.5",
    y_axis="Steps",
    y_values="2, 3",
    steps=4,
    guidance=4.5,
    width=64,
    height=64,
    seed=9,
)


@contextmanager
def serve(tmp_path: Path, **launch_kwargs):
    """A fresh app on the tiny model, with its own outputs folder, on a free loopback port."""
    from sd35ui.app.ui import AppConfig, create_app, launch

    config = AppConfig(load=LoadOptions(model="tiny-random"), outputs=tmp_path / "outputs")
    app = create_app(config)
    launch(app, config, host="127.0.0.1", prevent_thread_lock=True, quiet=True, **launch_kwargs)
    try:
        yield app
    finally:
        app.close()

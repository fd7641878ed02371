"""Helpers for the tests that talk to a live app on the tiny model: `serve`, the one way a test starts a server (the
shared `app_server` fixture of tests/app/conftest.py, and each test or module that needs launch options or an
AppConfig of its own: a login, cache limits, MCP, a queue of one, several workers); the settings of a small image,
a long one and a small sheet; waiting for a job to run or to queue; raw HTTP requests sent exactly as written."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sd35ui.core import history
from sd35ui.core.pipeline import LoadOptions

# A small /generate call on the tiny model: 2 steps of 64 px, a fixed seed.
ARGS = dict(
    prompt="a red circle", negative_prompt="", steps=2, guidance=4.5, width=64, height=64, seed=5, randomize_seed=False
)
LONG = {**ARGS, "steps": 50, "width": 256, "height": 256}  # tens of seconds on 2 cores: always stopped by the test

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
def serve(folder: Path, *, config: Mapping[str, Any] | None = None, **launch_kwargs: Any) -> Iterator[tuple]:
    """A fresh app, served on a free loopback port until the block ends; yields (app, its AppConfig).

    `config`: AppConfig values (queue_size, concurrency, workers, load, outputs); by default the tiny random model
    and `folder`/outputs for the results. `launch_kwargs` go to `sd35ui.app.ui.launch` (auth, mcp, cache limits)."""
    from sd35ui.app.ui import AppConfig, create_app, launch

    values = {"load": LoadOptions(model="tiny-random"), "outputs": folder / "outputs", **(config or {})}
    app_config = AppConfig(**values)
    app = create_app(app_config)
    launch(app, app_config, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True, **launch_kwargs)
    try:
        yield app, app_config
    finally:
        app.close()


def wait_until_running(job, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while job.status().code.name != "PROGRESS":  # running, past its first step
        assert not job.done(), job.result()
        assert time.monotonic() < deadline, job.status()
        time.sleep(0.05)


def wait_until_queued(job, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while (status := job.status()).code.name != "IN_QUEUE" or status.rank is None:
        assert time.monotonic() < deadline, status
        time.sleep(0.02)
    return status


def result_files(root: Path) -> list[Path]:
    return [e.path for e in history.list_results(root, include_cells=True)]


def get(url: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """A GET that sends `path` exactly as written (no normalisation of `..` or of %-escapes)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def post(url: str, path: str, body: dict) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()

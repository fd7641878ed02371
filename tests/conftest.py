"""Shared fixtures: offline environment, the tiny pipeline (real classes, random weights), a running app."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub: no network at test time, and caches in a throwaway folder.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("SD35UI_CACHE", str(Path(tempfile.gettempdir()) / "sd35ui-test-cache"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_options():
    from sd35ui.core.pipeline import LoadOptions

    return LoadOptions(model="tiny-random")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_options):
    from sd35ui.core.pipeline import get_pipeline

    return get_pipeline(tiny_options)


@pytest.fixture(scope="session")
def tiny_spec():
    from sd35ui.core.pipeline import model_spec

    return model_spec("tiny-random")


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, tiny_options):
    """The real app on the tiny model, served on a free loopback port for gradio_client."""
    from sd35ui.app.ui import AppConfig, create_app, launch

    outputs = tmp_path_factory.mktemp("outputs")
    config = AppConfig(load=tiny_options, outputs=outputs, queue_size=8)
    app = create_app(config)
    launch(app, config, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
    yield app, config
    app.close()


@pytest.fixture()
def client(app_server):
    from gradio_client import Client

    app, _ = app_server
    return Client(app.local_url, verbose=False)


@pytest.fixture(scope="session")
def cli():
    """Run `python -m sd35ui COMMAND ARGS` as a user would, on the random tiny model; returns the finished process
    (exit code, stdout, stderr as text)."""
    import subprocess
    import sys

    def run(command: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "sd35ui", command, "--model", "tiny-random", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    return run

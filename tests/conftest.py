"""Shared fixtures of every layer: offline environment, the tiny pipeline (real classes, random weights), its size
limits, a copy of its folder to damage. Each layer's own fixtures are in its folder's conftest.py: the running app in
app/, the command line in pipeline/; the browser tests' in browser/browser_support.py.

The layers: unit/ (pure, no model, seconds), pipeline/ (the tiny pipeline, no server), app/ (a live Gradio server),
browser/ (Chromium through Playwright). Helpers shared across layers (docs_support, png_support, app_support) sit in
this folder, which pyproject.toml puts on sys.path (`pythonpath`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub: no network at test time, and caches in a throwaway folder.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("SD35UI_CACHE", str(Path(tempfile.gettempdir()) / "sd35ui-test-cache"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

LAYERS = ("unit", "pipeline", "app", "browser")  # the order a full run takes: fastest first


def layer_rank(item: pytest.Item) -> int:
    """The position of the item's layer folder in LAYERS; anything else runs last."""
    tests = Path(__file__).parent
    folder = item.path.relative_to(tests).parts[0] if item.path.is_relative_to(tests) else ""
    return LAYERS.index(folder) if folder in LAYERS else len(LAYERS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Layer by layer, whatever order the paths were given in (a stable sort: each file keeps its order). This also
    # matters for one cache: the browser tests load the trained "tiny" model, which takes the place of the session's
    # `tiny_pipe` in `get_pipeline`'s one-pipeline cache, and test_pipeline.py checks `tiny_pipe` is the cached one.
    items.sort(key=layer_rank)
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


@pytest.fixture()
def model_copy(tmp_path, tiny_options):
    """A copy of the tiny model folder on disk, to damage."""
    from sd35ui.models.tiny import tiny_model_path

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_path(tiny_options.model), folder)
    return folder

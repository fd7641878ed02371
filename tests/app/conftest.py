"""Fixtures of the app layer: the real app on the tiny model, served on a loopback port, and a client for it."""

from __future__ import annotations

import pytest


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

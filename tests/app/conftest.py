"""Fixtures of the app layer: the real app on the tiny model, served on a loopback port, and a client for it."""

from __future__ import annotations

import pytest
from app_support import serve


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, tiny_options):
    """The real app on the tiny model, served on a free loopback port for gradio_client; yields (app, config)."""
    with serve(tmp_path_factory.mktemp("app"), config=dict(load=tiny_options, queue_size=8)) as served:
        yield served


@pytest.fixture()
def client(app_server):
    from gradio_client import Client

    app, _ = app_server
    return Client(app.local_url, verbose=False)

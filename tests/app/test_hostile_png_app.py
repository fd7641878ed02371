"""Hostile PNGs dropped on "Load settings from a PNG" of the live app: each gives loaded settings or a
clear message, at once, and the server keeps serving. The PNGs are built in tests/png_support.py; reading them
without a server is tested in tests/unit/test_hostile_png.py."""

from __future__ import annotations

import threading

import png_support
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from png_support import CORPUS, check_loaded

from sd35ui.core import history

corpus = png_support.corpus  # the shared pytest fixture
SKIP = {"__type__": "update"}  # what /load_settings returns for an input it leaves unchanged
GENERIC = "has raised an exception"  # Gradio's words for a crash


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", CORPUS)
def test_hostile_png_through_the_live_app(client, corpus, name):
    expected = CORPUS[name][1]
    job = client.submit(handle_file(str(corpus[name])), api_name="/load_settings")
    if isinstance(expected, str):
        with pytest.raises(AppError, match=expected) as caught:
            job.result(timeout=30)
        assert GENERIC not in str(caught.value) and "recursion" not in str(caught.value)
    else:
        outputs = job.result(timeout=30)
        values = {k: v for k, v in zip(history.GENERATE_KEYS, outputs) if v != SKIP}
        check_loaded(values, expected)
    _, position, _ = client.predict(0, False, api_name="/history")  # the server keeps serving
    assert "newest first" in position or "No results" in position


@pytest.mark.timeout(120)
def test_hostile_settings_are_answered_while_history_is_served(client, corpus):
    """Six dropped PNGs at once (three times the event's concurrency limit): the 1 MB line is refused and the
    longest lines allowed are read, each before a timeout, and /history answers meanwhile."""
    names = ["1 MB line without a colon", "long line without a colon, allowed", "unterminated quoted values"] * 2
    jobs = [client.submit(handle_file(str(corpus[name])), api_name="/load_settings") for name in names]
    served = []
    browse = threading.Thread(target=lambda: served.append(client.predict(0, False, api_name="/history")))
    browse.start()
    browse.join(timeout=30)
    assert served, "/history did not answer while the hostile PNGs were read"
    for name, job in zip(names, jobs):
        if isinstance(CORPUS[name][1], str):
            with pytest.raises(AppError, match="too long"):
                job.result(timeout=30)
        else:
            assert job.result(timeout=30)[0] == CORPUS[name][1]["prompt"]

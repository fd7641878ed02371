"""Forged sheet PNGs dropped on Compare > "Load a sheet PNG" of the live app, the way a hostile user sends them (the
upload route, then the queue, as the browser does): each is refused at once with a titled message, before anything
is planned or drawn, and the server goes on answering (unchecked, a 418-byte PNG with 12 outer axes spun a core
and grew the server by 900 MB). A real sheet still loads the same way."""

from __future__ import annotations

import time

import pytest
from app_support import SHEET
from load_sheet_support import drop, load_index
from png_support import FORGED_SHEETS, forged_sheet, sheet_description


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", FORGED_SHEETS)
def test_a_forged_sheet_is_refused_at_once_and_the_server_goes_on(app_server, client, tmp_path, name):
    app, _ = app_server
    changes, expected = FORGED_SHEETS[name]
    path = forged_sheet(tmp_path / "forged.png", {**sheet_description(), **changes}, size=(1, 1))
    started = time.perf_counter()
    answer = drop(app.local_url.rstrip("/"), load_index(app), path)
    assert time.perf_counter() - started < 10
    assert answer["success"] is False and answer["output"]["title"] == "Not a sheet"
    assert expected in answer["output"]["error"]
    _, position, _ = client.predict(0, False, api_name="/history")  # the server keeps serving
    assert "newest first" in position or "No results" in position


@pytest.mark.timeout(180)
def test_a_sheet_made_by_the_app_loads_back_through_the_same_route(app_server, client):
    app, _ = app_server
    from pathlib import Path

    sheet_file, *_ = client.predict(**SHEET, api_name="/contact_sheet")
    answer = drop(app.local_url.rstrip("/"), load_index(app), Path(sheet_file), session="friendly")
    assert answer["success"] is True

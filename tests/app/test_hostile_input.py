"""Hostile input to live apps on the tiny model, and what the app says and saves: a full or unwritable outputs disk,
text no tokenizer can read, axis bounds that overflow, user text echoed into Markdown, file modes and yes/no values
sent as text, all as real requests. The checks that need no server are in tests/unit/test_hostile_input_unit.py."""

from __future__ import annotations

import os
import shutil

import pytest
from app_support import ARGS, serve
from gradio_client import Client
from gradio_client.exceptions import AppError
from test_fuzz import Api

from sd35ui.app.compare_tab import sheet_spec_from_ui
from sd35ui.core import history


def replace_with_file(folder) -> None:
    """Make `folder` unwritable for everyone, root included: a regular file where the folder was."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.write_text("not a folder")


def test_history_still_lists_results_when_thumbnails_cannot_be_written(tmp_path):
    with serve(tmp_path) as (app, config):
        client = Client(app.local_url, verbose=False, download_files=False)
        client.predict(**ARGS, api_name="/generate")
        replace_with_file(config.outputs / history.THUMBS_DIR)  # as with a full or read-only disk
        items, position, _ = client.predict(0, False, api_name="/history")
        assert position.startswith("1–1 of 1")
        assert items[0]["image"]["path"].endswith(".png")  # the result itself stands in for its thumbnail
        assert items[0]["caption"].endswith("a red circle")


def test_an_image_that_cannot_be_saved_is_still_delivered_with_a_clear_warning(tmp_path):
    with serve(tmp_path) as (app, config):
        client = Client(app.local_url, verbose=False)
        replace_with_file(config.outputs)  # nothing can be written there any more
        job = client.submit(**ARGS, api_name="/generate")
        path, seed, _ = job.result(timeout=120)
        assert seed == ARGS["seed"] and os.path.getsize(path) > 0
        assert history.read_metadata(path)[0]["settings"].seed == ARGS["seed"]  # with its settings inside
        assert config.outputs.is_file()  # and nothing was written where it could not be


def test_a_sheet_whose_cells_cannot_be_saved_says_so_without_server_paths(tmp_path):
    with serve(tmp_path) as (app, config):
        client = Client(app.local_url, verbose=False)
        replace_with_file(config.outputs)
        with pytest.raises(AppError) as error:
            client.predict(
                "a red circle", "", "Steps", "1, 2", "None", "", 2, 4.5, 64, 64, 5, api_name="/contact_sheet"
            )
        message = str(error.value)
        assert "could not be saved" in message and "--outputs" in message
        assert str(tmp_path) not in message and "Generation failed" not in message
        client.predict(**{**ARGS, "steps": 1}, api_name="/generate")  # still serving


def test_a_lone_surrogate_through_the_api_is_a_message_not_a_tokenizer_error(app_server):
    app, _ = app_server
    values = {**ARGS, "prompt": "a red \ud800 circle"}  # JSON carries it as "\\ud800"; gradio_client cannot send it
    ok, message = Api(None, app.local_url).raw("generate", list(values.values()))
    assert not ok and "invalid character (U+D800" in message and "TextEncodeInput" not in message


def test_randomize_seed_false_as_text_keeps_the_seed_through_the_api(app_server):
    app, _ = app_server
    client = Client(app.local_url, verbose=False)
    _, seed, _ = client.predict(**{**ARGS, "randomize_seed": "false", "seed": 1234}, api_name="/generate")
    assert seed == 1234


HOSTILE_MARKDOWN = ["<img src=x onerror=alert(1)>", "[click](http://example.invalid)", "**bold** _it_", "http://x.y"]


@pytest.mark.parametrize("text", HOSTILE_MARKDOWN)
def test_compare_status_line_escapes_what_the_user_typed(app_server, tiny_spec, text):
    app, _ = app_server
    compare = next(fn for fn in app.fns.values() if fn.name == "preview")
    status = compare.fn("Steps", text, "None", "", 2, 4.5, 64, 64, 5, "None", "", "None", "")
    assert status.startswith("⚠️") and "<img" not in status and "](" not in status
    with pytest.raises(ValueError):  # the same text is refused when the sheet is made
        sheet_spec_from_ui(tiny_spec, "a red circle", "", "Steps", text, "None", "", 2, 4.5, 64, 64, 5)

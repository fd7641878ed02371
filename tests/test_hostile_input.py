"""Regression tests for the hostile-input holes of issue 14 that are about what the app says and saves: a full or
unwritable outputs disk, text no tokenizer can read, axis bounds that overflow, user text echoed into Markdown,
file modes and yes/no values sent as text. Live apps on the tiny model, real requests."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from test_fuzz import Api
from test_reliability import ARGS, serve

from sd35ui.app.compare_tab import escape_markdown, sheet_spec_from_ui
from sd35ui.core import history, sheet, storage
from sd35ui.core.settings import GenerationSettings, check_flag


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


def test_saved_results_are_readable_by_others_like_any_file_the_user_writes(tmp_path):
    path = storage.save_png(*_tiny_image(), tmp_path / "a.png")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == storage.FILE_MODE and mode & stat.S_IRGRP and mode & stat.S_IROTH


def _tiny_image():
    from PIL import Image

    return Image.new("RGB", (8, 8), "red"), None


@pytest.mark.parametrize("text", ["a \ud800 fox", "\udfff", "fox \udc00"])
def test_a_lone_surrogate_is_refused_with_a_message(text):
    with pytest.raises(ValueError, match="invalid character .*U\\+D[89A-F][0-9A-F]{2}"):
        GenerationSettings.validated(prompt=text)
    with pytest.raises(ValueError, match="Negative prompt contains an invalid character"):
        GenerationSettings.validated(prompt="a fox", negative_prompt=text)


def test_a_lone_surrogate_through_the_api_is_a_message_not_a_tokenizer_error(app_server):
    app, _ = app_server
    values = {**ARGS, "prompt": "a red \ud800 circle"}  # JSON carries it as "\\ud800"; gradio_client cannot send it
    ok, message = Api(None, app.local_url).raw("generate", list(values.values()))
    assert not ok and "invalid character (U+D800" in message and "TextEncodeInput" not in message


@pytest.mark.parametrize(
    "values", ["1-" + "9" * 400 + "(+1)", "1-" + "9" * 400 + "[4]", "9" * 400 + "-1(-1)", "1e400", "1-1e16[3]"]
)
def test_axis_bounds_that_overflow_are_refused_with_a_message(values):
    with pytest.raises(ValueError, match="X axis \\(Steps\\)") as error:
        sheet.parse_axis("Steps", values)
    assert "infinity" not in str(error.value) and "NaN" not in str(error.value)


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), (None, False), (0, False), (1, True), ("false", False), ("False", False)]
    + [("true", True), ("0", False), ("1", True), ("no", False), ("yes", True), ("", False)],
)
def test_yes_no_values_sent_as_text_mean_what_they_say(value, expected):
    assert check_flag("randomize_seed", value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, -1, [], {}, 0.5])
def test_other_yes_no_values_are_refused(value):
    with pytest.raises(ValueError, match="Randomize seed must be true or false"):
        check_flag("randomize_seed", value)


def test_randomize_seed_false_as_text_keeps_the_seed_through_the_api(app_server):
    app, _ = app_server
    client = Client(app.local_url, verbose=False)
    _, seed, _ = client.predict(**{**ARGS, "randomize_seed": "false", "seed": 1234}, api_name="/generate")
    assert seed == 1234


HOSTILE_MARKDOWN = ["<img src=x onerror=alert(1)>", "[click](http://example.invalid)", "**bold** _it_", "http://x.y"]


@pytest.mark.parametrize("text", HOSTILE_MARKDOWN)
def test_escaped_text_renders_as_the_same_plain_text(text):
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render(escape_markdown(text))
    assert "<img" not in html and "<a " not in html and "<strong>" not in html and "<em>" not in html
    plain = html.removeprefix("<p>").removesuffix("</p>\n")
    assert plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text


@pytest.mark.parametrize("text", HOSTILE_MARKDOWN)
def test_compare_status_line_escapes_what_the_user_typed(app_server, tiny_spec, text):
    app, _ = app_server
    compare = next(fn for fn in app.fns.values() if fn.name == "preview")
    status = compare.fn("Steps", text, "None", "", 2, 4.5, 64, 64, 5)
    assert status.startswith("⚠️") and "<img" not in status and "](" not in status
    with pytest.raises(ValueError):  # the same text is refused when the sheet is made
        sheet_spec_from_ui(tiny_spec, "a red circle", "", "Steps", text, "None", "", 2, 4.5, 64, 64, 5)

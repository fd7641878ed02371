"""Hostile input checked without a server: file modes, text no tokenizer can read, axis bounds that overflow, yes/no
values sent as text, user text echoed into Markdown. The same input sent to live apps is in
tests/app/test_hostile_input.py."""

from __future__ import annotations

import os
import stat

import pytest

from sd35ui.app.context import escape_markdown
from sd35ui.core import sheet, storage
from sd35ui.core.settings import GenerationSettings, check_flag


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


HOSTILE_MARKDOWN = ["<img src=x onerror=alert(1)>", "[click](http://example.invalid)", "**bold** _it_", "http://x.y"]


@pytest.mark.parametrize("text", HOSTILE_MARKDOWN)
def test_escaped_text_renders_as_the_same_plain_text(text):
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render(escape_markdown(text))
    assert "<img" not in html and "<a " not in html and "<strong>" not in html and "<em>" not in html
    plain = html.removeprefix("<p>").removesuffix("</p>\n")
    assert plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text

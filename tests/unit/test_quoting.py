"""How messages quote text they did not write (`sd35ui.core.quoting`), and the messages that quote a dropped PNG's
text, a file's name or a typed value: Gradio's toasts render a message as HTML, so a sampler of
`<img src=//host/b>` made the browser fetch that URL. Every such message holds the text escaped (no `<` at all)
and at most QUOTE_LIMIT characters of it."""

from __future__ import annotations

import html
import json
import sys

import pytest
from png_support import (
    HTML_AXIS,
    HTML_KEY,
    HTML_SAMPLER,
    HTML_SCHEDULE,
    html_axis_sheet,
    html_key_png,
    html_settings_png,
    itxt,
    png,
)

from sd35ui.core import explore, history, sheet
from sd35ui.core.quoting import QUOTE_LIMIT, quoted, safe_text
from sd35ui.core.settings import PARAM, GenerationSettings, check_flag, check_layers

IMG = "<img src=//planted.invalid/b>"


def assert_quotes_escaped(message: str, raw: str, limit: int = QUOTE_LIMIT) -> None:
    """`message` holds no tag, and holds `raw` (or its first `limit` - 1 characters) HTML-escaped."""
    assert "<" not in message and ">" not in message, message
    shown = raw if len(raw) <= limit else raw[: limit - 1]
    assert html.escape(shown, quote=False) in message, message


# --- the quoting function -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Euler", "'Euler'"),
        (IMG, "'&lt;img src=//planted.invalid/b&gt;'"),
        ("a & b", "'a &amp; b'"),
        ("&lt;", "'&amp;lt;'"),  # an entity in the text shows as the entity, not as "<"
        ("two\nlines\x1b[31m", "'two\\nlines\\x1b[31m'"),  # control characters written as escapes
        ("evil\u202etxt.png", "'evil\\u202etxt.png'"),  # a right-to-left override would reverse what follows
        ("zero\u200bwidth", "'zero\\u200bwidth'"),
        ("\ud800", "'\\ud800'"),  # half of a UTF-16 pair: no encoder can write it
        ("ünïcode 猫", "'ünïcode 猫'"),  # printable text stays as it is
        (3.5, "3.5"),
        (float("inf"), "inf"),
        (None, "None"),
        (True, "True"),
        (10**30, "1" + "0" * 30),
        (10**80, "a number over 10**80"),
        ([IMG], "['&lt;img src=//planted.invalid/b&gt;']"),
        ({"<b>": 1}, "{'&lt;b&gt;': 1}"),
    ],
)
def test_quoted_is_escaped_and_readable(value, expected):
    assert quoted(value) == expected


def test_quoted_text_is_cut_to_its_limit():
    assert quoted("x" * 80) == f"'{'x' * 80}'"
    assert quoted("x" * 81) == f"'{'x' * 79}…'"
    assert quoted("x" * 4 * 2**20, 10) == f"'{'x' * 9}…'"  # 4 MB of a text chunk: cut before it is looked at
    assert quoted("\x00" * 50, 10) == "'\\x00\\x00\\…'"  # the limit counts what is shown
    assert quoted("<" * 100, 5) == "'&lt;&lt;&lt;&lt;…'"  # cut before escaping: never half an entity


def test_quoted_values_python_cannot_write():
    deep: list = []
    for _ in range(sys.getrecursionlimit() + 10):
        deep = [deep]
    assert quoted(deep) == "a deeply nested value"
    assert quoted(10**5000) == "a number over 10**80"  # repr() refuses an int of 4300 digits or more
    assert quoted([10**5000]) == "a value too long to show"
    assert quoted(list(range(10**5))).endswith("…") and len(quoted(list(range(10**5)))) == QUOTE_LIMIT


def test_safe_text_quotes_another_librarys_words_without_marks():
    assert safe_text(f"unexpected keyword argument '{IMG}'") == (
        "unexpected keyword argument '&lt;img src=//planted.invalid/b&gt;'"
    )
    assert len(safe_text("y" * 10**6)) == 300


# --- the messages that quote user and file text ---------------------------------------------------------------------

BASE = GenerationSettings(prompt="a red fox", negative_prompt="blurry")

# message -> a function raising the ValueError, and the text it quotes
RAISED = {
    "an axis type": (lambda: sheet.axis_kind(HTML_AXIS), HTML_AXIS),
    "an axis value that is no number": (lambda: sheet.parse_axis("Guidance", IMG), IMG),
    "an empty value between commas": (lambda: sheet.parse_axis("Steps", f"10,,{IMG}"), f"10,,{IMG}"),
    "a size": (lambda: sheet.parse_axis("Size", f"1024x1024, {IMG}"), IMG),
    "a sampler on an axis": (lambda: sheet.parse_axis("Sampler", f"Euler, {IMG}"), IMG),
    "a layer list on an axis": (lambda: sheet.parse_axis("Skip layers", f'"7, 8", "{IMG[:20]}"'), "&lt;img"),
    "a prompt S/R text": (lambda: sheet.check_axis(sheet.Axis("prompt", (IMG, "x")), BASE, "Y"), IMG),
    "a negative S/R text": (lambda: sheet.check_axis(sheet.Axis("negative", (IMG, "x")), BASE), IMG),
    "a margin": (lambda: sheet.make_spec(BASE, "Steps", "10, 20", None, margin=IMG), IMG),
    "a sampler": (lambda: PARAM["sampler"].choice(IMG), IMG),
    "a number": (lambda: GenerationSettings.validated(prompt="p", steps=IMG), IMG),
    "a layer": (lambda: check_layers("skip_layers", f"7 {IMG}", sheet._ANY_LAYERS), "&lt;img"),
    "a yes or no": (lambda: check_flag("resume", IMG), IMG),
    "a setting's name": (lambda: GenerationSettings.validated(prompt="p", **{IMG: 1}), IMG),
}


@pytest.mark.parametrize("name", RAISED)
def test_a_message_quotes_typed_or_file_text_escaped(name):
    raises, raw = RAISED[name]
    with pytest.raises(ValueError) as caught:
        raises()
    if raw.startswith("&"):  # only part of the text is quoted (a word of it)
        assert "<" not in str(caught.value) and raw in str(caught.value), caught.value
    else:
        assert_quotes_escaped(str(caught.value), raw)


def test_a_sheet_png_whose_axis_type_is_a_password_form(tmp_path):
    with pytest.raises(ValueError, match="X axis: unknown type '&lt;form action=") as caught:
        explore.load_sheet(html_axis_sheet(tmp_path / "sheet.png"))
    assert_quotes_escaped(str(caught.value), HTML_AXIS)


@pytest.mark.parametrize("a1111", [False, True], ids=["sd35ui JSON", "A1111 text"])
def test_a_png_whose_sampler_and_schedule_are_html_loads_with_escaped_notes(tmp_path, a1111):
    loaded = history.load_settings(html_settings_png(tmp_path / "html.png", a1111=a1111))
    assert "sampler" not in loaded.values and "schedule" not in loaded.values
    sampler, schedule = loaded.notes
    assert_quotes_escaped(sampler, HTML_SAMPLER)
    assert_quotes_escaped(schedule, HTML_SCHEDULE)


def test_a_png_whose_settings_key_is_html_is_refused_with_the_key_escaped(tmp_path):
    with pytest.raises(ValueError, match="could not be understood") as caught:
        history.load_settings(html_key_png(tmp_path / "key.png"))
    assert_quotes_escaped(str(caught.value), HTML_KEY)


def test_a_png_named_in_html_is_named_escaped(tmp_path):
    path = tmp_path / "<img src=planted-name>.png"
    path.write_text("not a PNG")
    with pytest.raises(ValueError, match="is not a PNG") as caught:
        history.read_metadata(path)
    assert_quotes_escaped(str(caught.value), path.name)
    with pytest.raises(ValueError, match="is not a PNG") as caught:
        history.read_text_chunks(path)  # how a sheet PNG is read
    assert_quotes_escaped(str(caught.value), path.name)


def test_a_damaged_text_chunk_with_an_html_keyword(tmp_path):
    path = tmp_path / "chunk.png"
    path.write_bytes(png(after=[itxt(IMG, b"\xff\xfe not UTF-8")]))
    with pytest.raises(ValueError, match="not valid UTF-8") as caught:
        history.load_settings(path)
    assert_quotes_escaped(str(caught.value), IMG)


def test_a_note_on_a_long_value_is_capped(tmp_path):
    path = tmp_path / "long.png"
    sampler = IMG * 1000
    path.write_bytes(png([itxt("sd35ui", json.dumps({"settings": {"prompt": "p", "sampler": sampler}}))]))
    (note,) = history.load_settings(path).notes
    assert_quotes_escaped(note, sampler)
    assert len(note) < 400

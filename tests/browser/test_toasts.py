"""Toasts in a real browser quote a PNG's text as text, never as HTML. Gradio renders a toast's message as
HTML and its sanitiser removes only scripts: a dropped PNG whose sampler was `<img src=//host/b>` made the browser
fetch that URL, and a sheet whose axis type was a form showed a working password form. Each test drops (or opens)
a forged PNG from tests/png_support.py, waits for the toast to show the file's text literally, and checks that no
element of it was made and nothing was fetched from the planted URLs."""

from __future__ import annotations

import browser_support as support
import pytest
from browser_support import SKIP_REASON, browser_available, drop_file, open_tab
from png_support import (
    HTML_AXIS,
    HTML_KEY,
    HTML_NAME,
    HTML_SAMPLER,
    HTML_SCHEDULE,
    HTML_TAGS,
    PLANTED,
    PLANTED_NAME,
    html_axis_sheet,
    html_key_png,
    html_settings_png,
    itxt,
    ours,
    png,
)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not browser_available(), reason=SKIP_REASON)]
browser, browser_app, page = support.browser, support.browser_app, support.page  # the shared pytest fixtures

# The elements a forged PNG's HTML would make: pointing at the planted host, or (a file's name) at /planted-name.
# Not any URL with "planted" in it: History's gallery shows the file named HTML_NAME by a URL of its own path.
PLANTED_ELEMENTS = f'[src*="{PLANTED}"], [href*="{PLANTED}"], [action*="{PLANTED}"], [src="{PLANTED_NAME}"]'


def planted(url: str) -> bool:
    return PLANTED in url or url.split("?")[0].endswith(f"/{PLANTED_NAME}")


@pytest.fixture()
def fetched(page) -> list[str]:
    """The URLs the page requests from now on that a forged PNG planted."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url) if planted(request.url) else None)
    return urls


def expect_toast_showing(page, fetched: list[str], level: str, text: str) -> None:
    """Wait for a toast of `level` ("error", "warning" or "info": Gradio 6 titles toasts by level), then check that
    nothing was fetched from a planted URL, no toast holds an element the file's text could have made and no element
    anywhere points at a planted URL, and that a toast shows `text` (the file's HTML) literally, as characters."""
    from playwright.sync_api import expect

    expect(page.locator(f"[data-testid=toast-body].{level}").first).to_be_visible()
    page.wait_for_timeout(500)  # an <img> made by the toast would have been fetched by now
    assert fetched == []
    toasts = page.get_by_test_id("toast-body")
    made = {tag: toasts.locator(tag).count() for tag in HTML_TAGS}
    assert made == dict.fromkeys(HTML_TAGS, 0), f"elements in the toasts: {made}"
    assert page.locator(PLANTED_ELEMENTS).count() == 0
    expect(toasts.get_by_test_id("toast-text").filter(has_text=text).first).to_be_visible()


def test_dropping_a_png_whose_sampler_and_schedule_are_html_on_history(page, fetched, tmp_path):
    open_tab(page, "History")
    drop_file(page, "#history-drop button", html_settings_png(tmp_path / "html.png"))
    expect_toast_showing(page, fetched, "warning", HTML_SAMPLER)
    expect_toast_showing(page, fetched, "warning", HTML_SCHEDULE)


def test_dropping_a_png_whose_settings_key_is_html_on_history(page, fetched, tmp_path):
    open_tab(page, "History")
    drop_file(page, "#history-drop button", html_key_png(tmp_path / "key.png"))
    expect_toast_showing(page, fetched, "error", HTML_KEY)


def test_loading_a_sheet_whose_axis_type_is_a_password_form_in_compare(page, fetched, tmp_path):
    open_tab(page, "Compare")
    drop_file(page, "#load-sheet button", html_axis_sheet(tmp_path / "sheet.png"))
    expect_toast_showing(page, fetched, "error", HTML_AXIS[:40])  # the message quotes its first 79 characters
    assert page.locator("input[type=password]").count() == 0


def test_sending_a_result_named_in_html_from_history(page, fetched, browser_app):
    """Gradio's upload strips `<` and `>` from a dropped file's name, but a PNG put in the outputs folder by someone
    else keeps its name: History lists it, and Send to Generate names it in its toast."""
    folder = browser_app.config.outputs / "elsewhere"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HTML_NAME).write_bytes(png([itxt("sd35ui", ours(steps=3))]))
    open_tab(page, "History")
    page.locator("#history-refresh").click()
    page.locator("#history-gallery button").filter(has_text="a red circle").first.click()
    page.locator("#history-send").click()
    expect_toast_showing(page, fetched, "info", f"settings of {HTML_NAME}")

"""The Compare tab in a real browser: a small contact sheet fills in cell by cell, the finished sheet shows, and
clicking a cell opens its exact settings in the Generate tab. SD35UI_SCREENSHOTS=1 writes the README's picture."""

from __future__ import annotations

import browser_support as support
import pytest
from browser_support import (
    SKIP_REASON,
    browser_available,
    open_accordion,
    open_advanced,
    open_tab,
    screenshot,
    set_number,
)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not browser_available(), reason=SKIP_REASON)]
browser, browser_app, page = support.browser, support.browser_app, support.page  # the shared pytest fixtures


def test_a_sheet_fills_in_and_a_cell_opens_in_generate(page):
    open_tab(page, "Compare")
    open_accordion(page, "Fixed settings", page.locator("#tab-compare").get_by_label("number input for Steps"))
    for label, value in (("Steps", 4), ("Width", 64), ("Height", 64)):
        set_number(page.locator("#tab-compare"), label, value)
    page.locator("#sheet-seed input").fill("5")
    page.locator("#x-values textarea, #x-values input").first.fill("1, 4.5, 7")
    page.locator("#y-values textarea, #y-values input").first.fill("2, 6")
    page.locator("#sheet-prompt textarea").fill("a red circle on a blue background")
    from playwright.sync_api import expect

    expect(page.locator("#sheet-status")).to_contain_text("6 cells (3 x 2).", timeout=30_000)  # shown while typing
    page.locator("#sheet-btn").click()

    cells = page.locator("#sheet-cells img")
    cells.first.wait_for()  # cells appear before the sheet is finished
    page.locator("#sheet img").wait_for(state="attached")
    page.locator("#sheet").scroll_into_view_if_needed()  # the browser loads it (lazily) once it is near the view
    page.locator("#sheet img").wait_for()
    assert cells.count() == 6
    status = page.locator("#sheet-status").inner_text()
    assert "6 cells" in status and "seed 5" in status
    assert page.locator("#zip a, #zip").first.is_visible()
    screenshot(page, "compare", full_page=True)

    cells.nth(4).click()  # row 2, column 2: guidance 4.5, 6 steps
    generate_tab = page.locator("#tab-generate")
    generate_tab.wait_for(state="visible")
    assert page.locator("#prompt textarea").input_value() == "a red circle on a blue background"
    open_advanced(page)
    assert generate_tab.get_by_label("number input for Steps").input_value() == "6"
    assert generate_tab.get_by_label("number input for Guidance scale").input_value() == "4.5"
    assert page.locator("#seed input").input_value() == "5"
    assert not page.locator("#randomize input[type=checkbox]").is_checked()


def test_an_invalid_axis_says_what_is_wrong_while_typing(page):
    open_tab(page, "Compare")
    page.locator("#x-values textarea, #x-values input").first.fill("1-10[100]")
    page.locator("#sheet-status").get_by_text("100 values").wait_for()


def test_typed_axis_values_show_as_plain_text_never_as_html(page):
    open_tab(page, "Compare")
    typed = "<img src=x id=injected> [link](http://example.invalid)"
    page.locator("#x-values textarea, #x-values input").first.fill(typed)
    status = page.locator("#sheet-status")
    status.get_by_text("cannot read").wait_for()
    assert typed in status.inner_text()  # shown as the user typed it
    assert status.locator("img, a").count() == 0 and page.locator("#injected").count() == 0


def test_the_explorer_rearranges_hides_and_compares_without_generating(page, browser_app, tmp_path):
    """After a Steps x Guidance x Sampler sheet: Sampler to X re-composes the picture (no new cell files), hiding
    a value shrinks it, two cells show as an A/B slider with a heat map, and a saved sheet PNG loads back."""
    from playwright.sync_api import expect

    open_tab(page, "Compare")
    tab = page.locator("#tab-compare")
    open_accordion(page, "Fixed settings", tab.get_by_label("number input for Steps"))
    for label, value in (("Width", 32), ("Height", 32)):
        set_number(tab, label, value)
    page.locator("#sheet-seed input").fill("5")
    page.locator("#x-values textarea, #x-values input").first.fill("1, 4.5")
    page.locator("#y-values textarea, #y-values input").first.fill("1, 3")
    open_accordion(page, "More axes", page.locator("#z-values textarea"))
    page.locator("#z-axis input").click()
    page.get_by_role("option", name="Sampler", exact=True).click()
    page.locator("#z-values textarea").fill("Euler, Heun")
    page.locator("#sheet-status").get_by_text("8 cells (2 x 2 x 2).").wait_for()
    page.locator("#sheet-prompt textarea").fill("a red circle on a blue background")
    page.locator("#sheet-btn").click()
    page.locator("#sheet img").wait_for(state="attached", timeout=120_000)
    expect(page.locator("#explore-role-2")).to_be_visible(timeout=30_000)
    outputs = browser_app.config.outputs
    files = len(list(outputs.rglob("*.png")))
    view = page.locator("#explorer-view img")
    view.wait_for(state="attached")
    before = view.get_attribute("src")
    page.locator("#explore-role-2").get_by_label("X").check()  # Sampler across
    page.locator("#explore-role-0").get_by_label("Outer").check()  # Guidance, X before, to the outer place
    expect(page.locator("#explorer-note")).to_contain_text("8 cells shown (2 x 2 x 2)")
    expect(view).not_to_have_attribute("src", before)
    page.locator("#explore-show-1").get_by_label("3").uncheck()  # hide Steps 3
    expect(page.locator("#explorer-note")).to_contain_text("4 cells shown")
    assert len(list(outputs.rglob("*.png"))) == files  # nothing generated or saved
    expect(page.locator("#ab-note")).to_contain_text("they differ by")
    page.locator("#ab-heat").scroll_into_view_if_needed()
    expect(page.locator("#ab-slider img").first).to_be_visible()
    expect(page.locator("#ab-heat img")).to_be_visible()
    expect(page.locator("#ab-settings")).to_contain_text("sampler")  # A and B's settings, side by side
    screenshot(page, "explorer", full_page=True)
    page.locator("#ab-open").click()  # A into the Generate tab
    page.locator("#tab-generate").wait_for(state="visible")
    expect(page.locator("#prompt textarea")).to_have_value("a red circle on a blue background")


def test_history_reopens_a_sheet_in_the_explorer(page):
    """A sheet made earlier in this module, picked in History, opens in the Compare tab's explorer with its axes."""
    from playwright.sync_api import expect

    open_tab(page, "History")
    sheets = page.locator("#history-gallery button").filter(has_text="Sheet")
    sheets.first.click()
    page.locator("#history-open-sheet").click()
    expect(page.locator("#explore-role-0")).to_be_visible(timeout=30_000)
    expect(page.locator("#explorer-note")).to_contain_text("cells")
    assert page.locator("#x-values textarea, #x-values input").first.input_value() != ""

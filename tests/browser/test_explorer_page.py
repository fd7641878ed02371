"""The sheet explorer (index.html beside a sheet's cells) in Chromium, opened from disk with all network blocked: the
layout follows the axis controls, values hide, cells zoom, fit and open large with their settings, two cells compare
A/B with a slider and as a difference, and the labels stay in view while scrolling. SD35UI_SCREENSHOTS=1 writes the
pictures of its synthetic sheet to assets/explorer-test-<name>.png."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import browser_support as support
import pytest
from browser_support import ASSETS, SKIP_REASON, browser_available, screenshots_wanted
from PIL import Image, ImageDraw, ImageFont

from sd35ui.core.distance import image_distance
from sd35ui.core.explorer_page import write_explorer

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not browser_available(), reason=SKIP_REASON)]
browser = support.browser  # the shared pytest fixture: Debian's Chromium, once per module

VIEWPORT = {"width": 1000, "height": 720}  # the README pictures' size
TIMEOUT_MS = 10_000
CELL = 128  # pixels; the page enlarges them by a whole factor (to 256) as the sheet picture does
SERVED = "http://sheet.invalid"  # a name that never resolves: the one test that serves the page fulfils it itself
AXES = [
    {"name": "Steps", "values": [10, 20], "labels": ["Steps: 10", "Steps: 20"]},
    {"name": "Guidance", "values": [3, 7.5], "labels": ["Guidance: 3", "Guidance: 7.5"]},
    {"name": "Sampler", "values": ["Euler", "Heun"], "labels": ["Sampler: Euler", "Sampler: Heun"]},
]
NOT_MADE = "1,1,1"  # the sheet was stopped before its last cell
BACKGROUNDS = {(0, 0): (214, 226, 247), (1, 0): (250, 222, 200), (0, 1): (120, 150, 210), (1, 1): (200, 120, 80)}
SHAPES = {0: (40, 70, 160), 1: (160, 60, 30)}  # by steps


def file_name(i: int, j: int, k: int) -> str:
    return f"cell #{i}{j}{k}.png"  # a space and a '#': the page must encode file names into addresses


def draw_cell(i: int, j: int, k: int) -> Image.Image:
    """A cell anyone can tell apart: colour by guidance and sampler, a disc growing with steps, its settings."""
    steps, guidance, sampler = AXES[0]["values"][i], AXES[1]["values"][j], AXES[2]["values"][k]
    image = Image.new("RGB", (CELL, CELL), BACKGROUNDS[(j, k)])
    draw = ImageDraw.Draw(image)
    radius = 22 + 14 * i
    draw.ellipse((84 - radius, 84 - radius, 84 + radius, 84 + radius), fill=SHAPES[i])
    draw.text((8, 6), f"{steps} steps\ncfg {guidance}\n{sampler}", fill=(20, 20, 20), font=ImageFont.load_default(14))
    return image


@pytest.fixture(scope="module")
def sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped 2 x 2 x 2 sheet (Steps x Guidance x Sampler, 7 of 8 cells made) and its index.html."""
    folder = tmp_path_factory.mktemp("explorer")
    cells = []
    for i in range(2):
        for j in range(2):
            for k in range(2):
                if f"{i},{j},{k}" == NOT_MADE:
                    continue
                draw_cell(i, j, k).save(folder / file_name(i, j, k))
                settings = {
                    "prompt": "a disc </script><!-- on a plain background",
                    "steps": AXES[0]["values"][i],
                    "guidance": AXES[1]["values"][j],
                    "sampler": AXES[2]["values"][k],
                    "seed": 5,
                }
                cell = {"file": file_name(i, j, k), "coords": [i, j, k], "settings": settings, "seconds": 0.5 + i}
                cells.append(cell | {"width": CELL, "height": CELL})
    manifest = {
        "title": "a disc on a plain background\nseed 5, 64x64",
        "model": "tiny (built-in demo model)",
        "axes": AXES,
        "cells": cells,
        "arrangement": {"x": 1, "y": 0, "outer": [2]},
    }
    write_explorer(folder, manifest)
    return folder


@dataclass
class Explorer:
    page: Any
    attempted: list[str] = field(default_factory=list)  # every URL the page asked for
    errors: list[str] = field(default_factory=list)  # JavaScript errors


@contextmanager
def open_page(browser: Any, url: str, serve: Path | None = None) -> Iterator[Explorer]:
    """Open `url` in a fresh context with every request blocked except file:// (or, with `serve`, except the
    SERVED origin, answered from that folder), recording what was asked for."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    explorer = Explorer(context.new_page())

    def gate(route: Any) -> None:
        asked = route.request.url
        explorer.attempted.append(asked)
        if serve is not None and asked.startswith(SERVED + "/"):
            route.fulfill(path=str(serve / asked.removeprefix(SERVED + "/").replace("%20", " ").replace("%23", "#")))
        elif serve is None and asked.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    explorer.page.route("**/*", gate)
    explorer.page.on("pageerror", lambda error: explorer.errors.append(str(error)))
    try:
        explorer.page.goto(url)
        explorer.page.locator("body[data-ready=true]").wait_for()
        yield explorer
    finally:
        context.close()


@pytest.fixture()
def explorer(browser: Any, sheet: Path) -> Iterator[Explorer]:
    """The explorer opened from disk, offline (each test ends with `assert_offline`)."""
    with open_page(browser, (sheet / "index.html").as_uri()) as opened:
        yield opened


def assert_offline(explorer: Explorer) -> None:
    assert explorer.attempted, "no request was seen: the route is not recording"
    assert [url for url in explorer.attempted if not url.startswith("file://")] == []
    assert explorer.errors == []


def save_picture(page: Any, name: str) -> None:
    """assets/explorer-test-<name>.png of this test's synthetic sheet, when SD35UI_SCREENSHOTS=1 (the README's
    pictures of the page are of a real tiny-model sheet: assets/make_explorer_shots.py)."""
    if screenshots_wanted():
        ASSETS.mkdir(exist_ok=True)
        page.screenshot(path=str(ASSETS / f"explorer-test-{name}.png"))


def cell_order(page: Any) -> list[str]:
    return page.locator("#grids .cell").evaluate_all("(cells) => cells.map((cell) => cell.dataset.coords)")


def texts(page: Any, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(selector).all_inner_texts()]


def first_grid_loaded(page: Any) -> None:
    page.wait_for_function(
        """() => [...document.querySelectorAll('.subgrid:first-child img')]
            .every((img) => img.complete && img.naturalWidth === 128)"""
    )


def rect(page: Any, selector: str) -> dict[str, float]:
    return page.locator(selector).first.evaluate("(node) => node.getBoundingClientRect().toJSON()")


def clip(page: Any) -> str:
    return page.locator("#ab-a").evaluate("(img) => img.style.clipPath")


def test_the_default_view_is_the_manifests_arrangement_and_loads_only_local_files(explorer):
    page = explorer.page
    first_grid_loaded(page)
    # X = Guidance across, Y = Steps down, one sub-grid per sampler; coords are (steps, guidance, sampler)
    assert texts(page, ".subgrid-title") == ["Sampler: Euler", "Sampler: Heun"]
    assert texts(page, ".subgrid:first-child .col-label") == ["Guidance: 3", "Guidance: 7.5"]
    assert texts(page, ".subgrid:first-child .row-label") == ["Steps: 10", "Steps: 20"]
    assert cell_order(page) == [f"{i},{j},{k}" for k in range(2) for i in range(2) for j in range(2)]
    missing = page.locator(f'.cell[data-coords="{NOT_MADE}"]')
    assert missing.get_attribute("class") == "cell missing" and missing.inner_text() == "not made"
    assert page.locator("#summary").inner_text() == "7 of 8 cells made"
    assert page.locator("#title").inner_text() == "a disc on a plain background\nseed 5, 64x64"
    assert rect(page, ".cell")["width"] == 2 * CELL  # enlarged by a whole factor, to at least 192 px
    save_picture(page, "default")
    assert any(url.endswith("/cell%20%23010.png") for url in explorer.attempted)
    assert_offline(explorer)


def test_swapping_x_and_y_transposes_every_sub_grid(explorer):
    page = explorer.page
    page.locator("#swap-xy").click()
    assert texts(page, ".subgrid:first-child .col-label") == ["Steps: 10", "Steps: 20"]
    assert texts(page, ".subgrid:first-child .row-label") == ["Guidance: 3", "Guidance: 7.5"]
    assert cell_order(page) == [f"{i},{j},{k}" for k in range(2) for j in range(2) for i in range(2)]
    assert page.locator("#role-0").input_value() == "x" and page.locator("#role-1").input_value() == "y"
    first_grid_loaded(page)
    save_picture(page, "swapped")
    assert_offline(explorer)


def test_an_axis_made_x_trades_roles_with_the_old_x(explorer):
    page = explorer.page
    page.locator("#role-2").select_option("x")  # Sampler across: Guidance, the old X, takes its place outside
    assert texts(page, ".subgrid-title") == ["Guidance: 3", "Guidance: 7.5"]
    assert texts(page, ".subgrid:first-child .col-label") == ["Sampler: Euler", "Sampler: Heun"]
    assert cell_order(page)[:4] == ["0,0,0", "0,0,1", "1,0,0", "1,0,1"]
    page.locator("#role-0").select_option("outer")  # Steps out as well: one row per sub-grid, four sub-grids
    assert page.locator("#role-0").input_value() == "outer" and page.locator(".row-label").count() == 0
    assert texts(page, ".subgrid-title") == [
        "Guidance: 3 \u00b7 Steps: 10",
        "Guidance: 3 \u00b7 Steps: 20",
        "Guidance: 7.5 \u00b7 Steps: 10",
        "Guidance: 7.5 \u00b7 Steps: 20",
    ]
    page.locator("#role-2").select_option("outer")  # the only X cannot leave without a successor: Guidance takes X
    assert [page.locator(f"#role-{axis}").input_value() for axis in range(3)] == ["outer", "x", "outer"]
    assert_offline(explorer)


def test_a_hidden_value_takes_its_column_away_and_comes_back(explorer):
    page = explorer.page
    page.locator("#show-1-0").uncheck()  # Guidance 3
    assert texts(page, ".subgrid:first-child .col-label") == ["Guidance: 7.5"]
    assert cell_order(page) == ["0,1,0", "1,1,0", "0,1,1", NOT_MADE]
    page.locator("#show-2-1").uncheck()  # Sampler Heun: its sub-grid goes
    assert texts(page, ".subgrid-title") == ["Sampler: Euler"]
    page.locator("#show-1-1").uncheck()  # every Guidance value hidden
    assert page.locator("#empty").inner_text() == "Nothing to show: every value of Guidance is hidden."
    for box in ("#show-1-0", "#show-1-1", "#show-2-1"):
        page.locator(box).check()
    assert len(cell_order(page)) == 8
    assert_offline(explorer)


def test_zoom_sets_the_cell_width_and_fit_makes_the_grid_fit_the_window(explorer):
    page = explorer.page
    page.locator("#zoom").fill("512")
    assert rect(page, ".cell")["width"] == 512 and page.locator("#zoom-value").inner_text() == "512 px"
    viewport_width = page.locator("#viewport").evaluate("(node) => node.clientWidth")
    assert rect(page, "table.grid")["width"] > viewport_width
    page.locator("#fit").check()
    assert rect(page, "table.grid")["width"] <= viewport_width
    assert rect(page, ".cell")["width"] > 2 * CELL  # fitting fills the width, too
    page.set_viewport_size({"width": 800, "height": 720})
    page.wait_for_function("document.querySelector('table.grid').getBoundingClientRect().width < 500")
    assert_offline(explorer)


def test_a_cell_opens_large_with_its_settings_and_closes(explorer):
    page = explorer.page
    overlay = page.locator("#overlay")
    page.locator('.cell[data-coords="0,1,1"]').click()  # 10 steps, guidance 7.5, Heun
    overlay.wait_for(state="visible")
    assert page.locator("#overlay-heading").inner_text() == "Steps: 10 \u00b7 Guidance: 7.5 \u00b7 Sampler: Heun"
    rows = page.locator("#overlay-settings tr").evaluate_all(
        "(rows) => rows.map((row) => [...row.cells].map((cell) => cell.textContent))"
    )
    assert ["sampler", "Heun"] in rows and ["guidance", "7.5"] in rows and ["steps", "10"] in rows
    assert ["prompt", "a disc </script><!-- on a plain background"] in rows  # shown as text
    assert ["file", file_name(0, 1, 1)] in rows and ["time", "0.50 s"] in rows
    page.wait_for_function("document.getElementById('overlay-image').naturalWidth === 128")
    page.keyboard.press("Escape")
    overlay.wait_for(state="hidden")
    page.locator('.cell[data-coords="1,0,0"]').click()
    overlay.wait_for(state="visible")
    page.mouse.click(5, 5)  # the backdrop
    overlay.wait_for(state="hidden")
    page.locator(f'.cell[data-coords="{NOT_MADE}"]').click()  # a cell not made has nothing to open
    assert overlay.is_hidden()
    assert_offline(explorer)


def test_two_cells_compare_a_b_with_a_slider_and_as_a_difference(explorer):
    page = explorer.page
    page.locator("#ab-mode").click()
    page.locator('.cell[data-coords="0,0,0"]').click()
    assert page.locator('.cell[data-pick="A"]').get_attribute("data-coords") == "0,0,0"
    assert page.locator("#ab-status").inner_text() == "Click cell B."
    page.locator('.cell[data-coords="1,1,0"]').click()
    page.locator("#compare").wait_for(state="visible")
    assert page.locator("#ab-a").get_attribute("src") == "cell%20%23000.png"
    assert page.locator("#ab-b").get_attribute("src") == "cell%20%23110.png"
    page.wait_for_function("['ab-a', 'ab-b'].every((id) => document.getElementById(id).naturalWidth === 128)")
    differing = page.locator("#ab-settings tr[data-differs] th").all_inner_texts()
    assert differing == ["steps", "guidance", "time", "file"]

    assert clip(page) == "inset(0px 50% 0px 0px)"  # A shows left of the slider, B right of it
    page.locator("#ab-slider").fill("20")
    assert clip(page) == "inset(0px 80% 0px 0px)"
    stage = rect(page, "#ab-stage")
    y = stage["top"] + stage["height"] / 2
    page.mouse.move(stage["left"] + stage["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(stage["left"] + stage["width"] * 0.75, y, steps=4)
    page.mouse.up()
    assert float(page.locator("#ab-slider").input_value()) == pytest.approx(75, abs=1)
    assert clip(page).startswith("inset(0px 25")
    # from file:// the browser withholds the pixels, so there is no number, and the page says why
    page.wait_for_function("document.getElementById('ab-distance').dataset.state === 'blocked'")
    assert "opened from disk" in page.locator("#ab-distance").inner_text()
    page.locator("#ab-slider").fill("50")
    save_picture(page, "ab")

    page.locator("#ab-view-difference").click()
    assert page.locator("#ab-a").evaluate("(img) => getComputedStyle(img).mixBlendMode") == "difference"
    assert clip(page) == "none" and page.locator("#ab-slider").is_hidden()
    page.locator("#ab-amplify").select_option("4")
    assert page.locator("#ab-images").evaluate("(node) => node.style.filter") == "brightness(4)"
    page.keyboard.press("Escape")
    page.locator("#compare").wait_for(state="hidden")
    assert page.locator(".cell[data-pick]").count() == 0
    assert_offline(explorer)


def test_shift_click_compares_without_a_b_mode(explorer):
    page = explorer.page
    page.locator('.cell[data-coords="0,0,0"]').click(modifiers=["Shift"])
    assert page.locator("#overlay").is_hidden()
    page.locator('.cell[data-coords="0,0,1"]').click(modifiers=["Shift"])
    page.locator("#compare").wait_for(state="visible")
    assert page.locator("#ab-settings tr[data-differs] th").all_inner_texts() == ["sampler", "file"]
    assert_offline(explorer)


def test_labels_stay_in_view_while_scrolling(explorer):
    page = explorer.page
    page.locator("#zoom").fill("400")  # wider and taller than the window
    view = rect(page, "#viewport")
    page.locator("#viewport").evaluate("(node) => node.scrollTo(300, 250)")
    page.wait_for_function("document.getElementById('viewport').scrollTop === 250")
    heading, column, row, cell = (rect(page, s) for s in (".subgrid-title", ".col-label", ".row-label", ".cell"))
    assert heading["top"] == pytest.approx(view["top"], abs=1)  # the sub-grid's heading, then its column labels
    assert column["top"] == pytest.approx(heading["bottom"], abs=1)
    assert row["left"] == pytest.approx(view["left"], abs=1)  # the row labels at the left edge
    assert cell["top"] < column["bottom"] and cell["left"] < row["right"]  # while the cells went under them
    assert_offline(explorer)


def test_served_over_http_the_difference_is_the_same_number_as_python(browser, sheet):
    """Served (here by the test itself: nothing leaves the machine), the page may read pixels: its number is
    `image_distance`."""
    with open_page(browser, f"{SERVED}/index.html", serve=sheet) as explorer:
        page = explorer.page
        page.locator('.cell[data-coords="0,0,0"]').click(modifiers=["Shift"])
        page.locator('.cell[data-coords="1,1,0"]').click(modifiers=["Shift"])
        page.wait_for_function("document.getElementById('ab-distance').dataset.state === 'number'")
        shown = float(page.locator("#ab-distance").get_attribute("data-percent"))
        expected = image_distance(Image.open(sheet / file_name(0, 0, 0)), Image.open(sheet / file_name(1, 1, 0)))
        assert shown == pytest.approx(expected, abs=1e-9)
        assert f"{expected:.2f} %" in page.locator("#ab-distance").inner_text()
        assert [url for url in explorer.attempted if not url.startswith(SERVED + "/")] == []
        assert explorer.errors == []

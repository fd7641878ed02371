"""The app in a real browser (Debian's Chromium through Playwright) on the tiny model: generate with Enter and
with the button, progress, download with settings inside, Stop, a validation message, and loading settings by
dropping a PNG on the History tab. SD35UI_SCREENSHOTS=1 also writes the README's screenshots into assets/."""

from __future__ import annotations

import re
import time

import browser_support as support
import pytest
from browser_support import (
    SKIP_REASON,
    browser_available,
    drop_file,
    open_advanced,
    open_tab,
    screenshot,
    set_number,
    set_settings,
    toast_text,
    type_prompt,
    wait_for_image,
    wait_for_progress,
)

from sd35ui.core import metadata, storage
from sd35ui.core.settings import GenerationSettings

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not browser_available(), reason=SKIP_REASON)]
browser, browser_app, page = support.browser, support.browser_app, support.page  # the shared pytest fixtures


def test_enter_in_the_prompt_generates(page):
    set_settings(page, steps=4, width=64, height=64, seed=7)
    type_prompt(page, "a red circle").press("Enter")
    wait_for_image(page)
    assert page.locator("#info textarea").input_value().startswith("Seed 7 · 64x64 · 4 steps · guidance 4.5")
    assert page.locator("#seed-used input").input_value() == "7"


def test_button_shows_step_progress_then_the_image(page):
    set_settings(page, steps=20, width=128, height=128)
    type_prompt(page, "a yellow triangle on a black background")
    page.locator("#generate-btn").click()
    assert re.fullmatch(r"Step \d+/20", wait_for_progress(page, total=20))
    screenshot(page, "progress")
    src = wait_for_image(page)
    assert src.endswith(".png")
    info = page.locator("#info textarea").input_value()
    assert "128x128 · 20 steps" in info
    seed = int(page.locator("#seed-used input").input_value())  # randomized, and reported
    assert f"Seed {seed} " in info
    page.get_by_text("Advanced settings").click()  # close it: the picture shows the simple view
    screenshot(page, "generate")


def test_presets_and_sliders_follow_each_other(page):
    from playwright.sync_api import expect

    open_advanced(page)
    steps = page.get_by_label("number input for Steps")
    page.get_by_label("Quick draft").check()
    expect(steps).to_have_value("20")
    set_number(page, "Steps", 37)  # no preset is 37 steps
    expect(page.get_by_label("Quick draft")).not_to_be_checked()
    for value in (20, 50, 20, 50):  # quick moves end on the last one
        steps.fill(str(value))
        steps.press("Enter")
    expect(page.get_by_label("High quality")).to_be_checked()
    page.wait_for_timeout(1000)  # time for any stray reply to land
    expect(steps).to_have_value("50")
    expect(page.get_by_label("High quality")).to_be_checked()


def test_downloaded_image_carries_its_settings(page, tmp_path):
    set_settings(page, steps=4, width=64, height=48, seed=1234, negative="blurry")
    page.get_by_label("Precise").check()  # the guidance preset sets the slider to 7.5
    type_prompt(page, "a white square on a green background")
    page.locator("#generate-btn").click()
    wait_for_image(page)
    with page.expect_download() as download:
        page.locator("#result").get_by_role("button", name="Download").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    read = metadata.read_png_metadata(str(saved))
    assert read["source"] == "sd35ui" and read["model"] == "tiny"
    assert read["settings"] == GenerationSettings(
        prompt="a white square on a green background",
        negative_prompt="blurry",
        steps=4,
        guidance=7.5,
        width=64,
        height=48,
        seed=1234,
    )


def test_stop_ends_a_long_generation_within_a_step(page, browser_app):
    before = set(browser_app.config.outputs.rglob("*.png"))
    set_settings(page, steps=50, width=256, height=256)
    type_prompt(page, "a long one")
    page.locator("#generate-btn").click()
    wait_for_progress(page, total=50)
    pressed = time.monotonic()
    page.locator("#stop-btn").click()
    assert "Stopped before the image was finished" in toast_text(page)
    assert time.monotonic() - pressed < 15  # one step of 256x256 takes well under a second, even on a busy CPU
    assert page.locator("#result img").count() == 0
    assert set(browser_app.config.outputs.rglob("*.png")) == before, "a stopped job saves nothing"


def test_width_not_a_multiple_of_16_shows_its_message(page):
    open_advanced(page)
    set_number(page, "Width", 100)
    type_prompt(page, "a red circle").press("Enter")
    message = toast_text(page)
    assert "Width must be a multiple of 16, got 100. Use 96 or 112 instead" in message
    assert "Traceback" not in message
    screenshot(page, "error")
    assert page.locator("#result img").count() == 0


def test_dropping_a_png_on_history_loads_its_settings(page, tmp_path):
    settings = GenerationSettings(
        prompt="a green triangle on a white background",
        negative_prompt="text",
        steps=12,
        guidance=3.5,
        width=96,
        height=80,
        seed=4242,
    )
    png = tmp_path / "from-elsewhere.png"
    from PIL import Image

    storage.save_png(Image.new("RGB", (96, 80), "white"), metadata.png_info(settings, "tiny-random"), png)

    open_tab(page, "History")
    drop_file(page, "#history-drop button", png)
    assert "Loaded the sd35ui settings of from-elsewhere.png" in toast_text(page)
    prompt = page.locator("#prompt textarea")
    prompt.wait_for(state="visible")  # back on the Generate tab
    assert prompt.input_value() == settings.prompt
    open_advanced(page)
    assert page.locator("#negative textarea").input_value() == "text"
    values = {label: page.get_by_label(f"number input for {label}").input_value() for label in ("Steps", "Width")}
    assert values == {"Steps": "12", "Width": "96"}
    assert page.get_by_label("number input for Height").input_value() == "80"
    assert float(page.get_by_label("number input for Guidance scale").input_value()) == 3.5
    assert page.locator("#seed input").input_value() == "4242"
    assert not page.locator("#randomize input[type=checkbox]").is_checked()
    screenshot(page, "settings-loaded", full_page=True)


def test_model_controls_recommended_guidance_aspect_ratio_and_prompt_length(page):
    """SD3.5 Medium's own controls on the page: the token count follows typing and names the words cut; an aspect
    ratio sets width and height (and typing a size picks its ratio); one click sets the recommended skip-layer
    guidance, and the image it makes says so."""
    from playwright.sync_api import expect

    type_prompt(page, "a red circle")
    counted = re.compile(r"Tokens: CLIP \d+/\d+ · T5 \d+/\d+")
    expect(page.locator("#token-count")).to_contain_text(counted, timeout=60_000)  # the first loads the model
    type_prompt(page, "a red circle on a blue background " * 12 + "with a purple moon")
    expect(page.locator("#token-count")).to_contain_text("CLIP reads only the first")
    expect(page.locator("#token-count")).to_contain_text("moon")
    type_prompt(page, "a red circle")
    expect(page.locator("#token-count")).not_to_contain_text("reads only")
    open_advanced(page)
    preset = page.locator("#size-preset input")
    preset.click()
    page.get_by_role("option", name=re.compile(r"^16:9 · ")).click()
    expect(page.get_by_label("number input for Width")).to_have_value("80")
    expect(page.get_by_label("number input for Height")).to_have_value("48")
    set_number(page, "Width", 64)
    set_number(page, "Height", 64)
    expect(preset).to_have_value(re.compile(r"^1:1 · 64x64"))
    expect(page.locator("#slg-note")).to_contain_text("works only with guidance above 1")
    page.locator("#slg-recommended").click()
    expect(page.get_by_label("number input for Skip-layer guidance")).to_have_value("2.5")
    layers = page.locator("#skip_layers textarea")
    expect(layers).to_have_value(re.compile(r"^\d"))
    assert layers.get_attribute("placeholder") == f"the model's own: {layers.input_value()}"  # the tiny model's
    set_settings(page, steps=10, seed=3)
    page.locator("#generate-btn").click()
    wait_for_image(page)
    expect(page.locator("#info textarea")).to_have_value(re.compile(r"skip-layer guidance 2\.5"))
    screenshot(page, "model-controls", full_page=True)

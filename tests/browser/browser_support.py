"""Helpers for the browser tests: the app on the tiny model, Debian's Chromium driven by Playwright, README
screenshots. Reuse them in another test module by importing the fixtures:

    import browser_support as support
    from browser_support import SKIP_REASON, browser_available

    pytestmark = [pytest.mark.browser, pytest.mark.skipif(not browser_available(), reason=SKIP_REASON)]
    browser, browser_app, page = support.browser, support.browser_app, support.page  # the shared pytest fixtures

Playwright never downloads a browser here (`playwright install` cannot reach its CDN): it launches
/usr/bin/chromium from Debian (`apt-get install -y chromium`). Set SD35UI_SCREENSHOTS=1 to write
assets/screenshot-<name>.png from the tests that take them.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from app_support import serve

CHROMIUM = "/usr/bin/chromium"
# Headless, without a sandbox (we run as root in CI) and without anything that reaches the network on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 900}
ASSETS = Path(__file__).resolve().parents[2] / "assets"
SKIP_REASON = f"needs Playwright (pip) and Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)"
GENERATION_TIMEOUT_MS = 60_000  # the tiny model is fast, but the CI machine's 2 cores are shared


def browser_available() -> bool:
    return Path(CHROMIUM).is_file() and importlib.util.find_spec("playwright") is not None


def screenshots_wanted() -> bool:
    return os.environ.get("SD35UI_SCREENSHOTS") == "1"


def screenshot(page: Any, name: str, **kwargs: Any) -> Path | None:
    """Save assets/screenshot-<name>.png when SD35UI_SCREENSHOTS=1 (the README's pictures come from here)."""
    if not screenshots_wanted():
        return None
    ASSETS.mkdir(exist_ok=True)
    path = ASSETS / f"screenshot-{name}.png"
    page.wait_for_timeout(800)  # let toasts and accordions finish their animations
    page.screenshot(path=str(path), **kwargs)
    return path


@dataclass
class BrowserApp:
    app: Any  # the gr.Blocks
    config: Any  # its AppConfig (config.outputs is this module's own folder)
    url: str


@pytest.fixture(scope="module")
def browser_app(tmp_path_factory: pytest.TempPathFactory):
    """The real app on the built-in (trained) tiny model, on a free loopback port, with its own outputs folder."""
    from sd35ui.core.pipeline import LoadOptions

    # the trained demo model, so the screenshots show what it draws
    with serve(tmp_path_factory.mktemp("browser"), config=dict(load=LoadOptions(model="tiny"))) as (app, config):
        yield BrowserApp(app, config, app.local_url)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, started once per module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, browser_app):
    """A fresh page (its own Gradio session) with the app loaded; downloads allowed."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(GENERATION_TIMEOUT_MS)
    tab = context.new_page()
    tab.goto(browser_app.url)
    tab.locator("#prompt textarea").wait_for()
    yield tab
    context.close()


def wait_for_sliders(page: Any) -> None:
    """Wait until every visible slider has finished mounting.

    Gradio 6 mounts a closed accordion's or hidden tab's components only when they are first shown, and a slider's
    number box is visible a moment before Svelte has bound it to the slider's value: text typed in that moment is
    overwritten by the default (seen as 1 run in 10 on 2 busy cores). The slider's last mount step sets the
    `--range_progress` style on its range input, so wait for that on all of them.
    """
    page.wait_for_function(
        """() => [...document.querySelectorAll('input[type=range]')]
            .filter((range) => range.offsetParent !== null)
            .every((range) => range.style.getPropertyValue('--range_progress') !== '')"""
    )


def open_tab(page: Any, name: str) -> None:
    """Switch to the tab labelled `name` ("Generate", "Compare", "History")."""
    page.locator("#tabs").get_by_role("tab", name=name).click()
    page.locator(f"#tab-{name.lower()}").wait_for(state="visible")
    wait_for_sliders(page)


def open_accordion(page: Any, title: str, inside: Any) -> None:
    """Open the accordion titled `title`, unless `inside` (a locator for something in it) shows it is open already
    (a click on an open one would close it), and wait for its sliders."""
    if not inside.is_visible():
        page.get_by_text(title).click()
        inside.wait_for(state="visible")
    wait_for_sliders(page)


def open_advanced(page: Any) -> None:
    """Open the Generate tab's "Advanced settings" accordion."""
    open_accordion(page, "Advanced settings", page.locator("#tab-generate").get_by_label("number input for Steps"))


def set_number(scope: Any, label: str, value: float) -> None:
    """Type into the number box of the slider labelled `label` (e.g. "Width") in `scope` (the page, or a part of
    it such as a tab) and commit it."""
    from playwright.sync_api import expect

    box = scope.get_by_label(f"number input for {label}")
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))  # and still there once the events it fired have come back


def set_settings(
    page: Any,
    steps: int | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    negative: str | None = None,
) -> None:
    """Set Generate-tab settings through the UI, as a user would. A seed also unticks "Randomize seed"."""
    open_advanced(page)
    for label, value in (("Steps", steps), ("Width", width), ("Height", height)):
        if value is not None:
            set_number(page, label, value)
    if negative is not None:
        page.locator("#negative textarea").fill(negative)
    if seed is not None:
        page.locator("#randomize input[type=checkbox]").uncheck()
        page.locator("#seed input").fill(str(seed))


def type_prompt(page: Any, prompt: str) -> Any:
    box = page.locator("#prompt textarea")
    box.fill(prompt)
    return box


def wait_for_progress(page: Any, total: int) -> str:
    """Wait until the result shows step progress ("Step i/total") and return that label.

    Waits for any "Step i/n" bar first, so that a job run with other settings fails at once, naming what it ran,
    rather than after a timeout.
    """
    name = re.compile(r"^Step \d+\/\d+$")  # "/" escaped: Playwright hands the pattern to JavaScript
    bar = page.locator("#result").get_by_role("progressbar", name=name).first
    bar.wait_for(state="visible")
    label = bar.get_attribute("aria-label")
    assert label.endswith(f"/{total}"), f"the job runs {label.split('/')[-1]} steps, the test set {total}"
    return label


def wait_for_image(page: Any) -> str:
    """Wait for the result image and return its URL."""
    image = page.locator("#result img")
    image.wait_for(state="visible", timeout=GENERATION_TIMEOUT_MS)
    return image.get_attribute("src")


def toast_text(page: Any) -> str:
    """The text of the newest toast (gr.Error / gr.Warning / gr.Info), waiting for one to appear."""
    toast = page.get_by_test_id("toast-text").last
    toast.wait_for(state="visible")
    return toast.inner_text()


def drop_file(page: Any, selector: str, path: Path, mime: str = "image/png") -> None:
    """Drop a file onto the element at `selector`, as dragging it from the desktop does (a real drop event
    carrying a DataTransfer, not a file-chooser shortcut)."""
    data = list(Path(path).read_bytes())
    transfer = page.evaluate_handle(
        """([bytes, name, mime]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, { type: mime }));
            return transfer;
        }""",
        [data, Path(path).name, mime],
    )
    target = page.locator(selector)
    for event in ("dragenter", "dragover", "drop"):
        target.dispatch_event(event, {"dataTransfer": transfer})

"""The login page in a real browser (`--auth`): the page loads all it needs without the login, and the app behind
it works through the gate. The routes themselves are checked over HTTP in tests/app/test_access.py."""

from __future__ import annotations

import pytest
from app_support import serve

AUTH = ("alice", "s3cret:x")  # as in tests/app/test_access.py


@pytest.mark.browser
def test_in_a_browser_the_login_page_and_the_app_behind_it_work_through_the_gate(tmp_path):
    from browser_support import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON, browser_available, set_settings, wait_for_image

    if not browser_available():
        pytest.skip(SKIP_REASON)
    from playwright.sync_api import sync_playwright

    with serve(tmp_path, auth=AUTH) as (app, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            refused = []
            page.on("response", lambda r: r.status >= 400 and refused.append((r.status, r.url)))
            page.goto(app.local_url)
            page.locator("input[type=password]").wait_for()
            assert refused == [], "the login page loads all it needs without the login"
            page.locator("input[type=text]").fill(AUTH[0])
            page.locator("input[type=password]").fill(AUTH[1])
            page.get_by_role("button", name="Login").click()
            page.locator("#prompt textarea").wait_for()
            set_settings(page, steps=2, width=64, height=64, seed=3)
            page.locator("#prompt textarea").fill("a red circle")
            page.locator("#prompt textarea").press("Enter")
            wait_for_image(page)
            assert refused == [], "queue, progress and the result's file all pass the gate with the login cookie"
        finally:
            browser.close()

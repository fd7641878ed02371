"""The README's pictures of the explorer page: a real sheet of the built-in tiny model, opened from disk with the
network blocked, in Debian's Chromium. Run from the repository root:

    .venv/bin/python -m sd35ui sheet --model tiny --prompt "a yellow triangle on a black background" \\
        --x "guidance=1,3,4.5,7" --y "steps=2,5,10" --z "sampler=Euler,Heun" --seed 3 \\
        --out /tmp/explorer/sheet.png --cells-dir /tmp/explorer
    .venv/bin/python assets/make_explorer_shots.py /tmp/explorer
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

from browser_support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

ASSETS = Path(__file__).resolve().parent


def main(folder: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
        page.goto((folder / "index.html").resolve().as_uri())
        page.wait_for_selector("body[data-ready=true]")
        page.screenshot(path=str(ASSETS / "explorer-default.png"))
        page.locator("#role-2").select_option("x")  # Sampler across: Guidance becomes the sub-grids
        page.wait_for_timeout(300)
        page.screenshot(path=str(ASSETS / "explorer-swapped.png"))
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        cells = page.locator(".cell:not(.missing)")
        cells.nth(0).click(modifiers=["Shift"])  # A
        cells.nth(15).click(modifiers=["Shift"])  # B
        page.wait_for_timeout(500)
        page.screenshot(path=str(ASSETS / "explorer-ab.png"))
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Screenshot of the evaluate stage's page ``reports/index.html`` in headless Chromium.

Uses Debian's Chromium (``/usr/bin/chromium``: ``make setup`` installs it) through Playwright; nothing is
downloaded (never ``playwright install``). WebGL runs on SwiftShader, Chromium's software renderer
(:data:`FLAGS`). The page must load without a console or page error, else the script fails (status 1)::

    python scripts/screenshot_report.py                      # reports/index.html -> docs/report_screenshot.png
    python scripts/screenshot_report.py /tmp/rep/reports/index.html /tmp/rep/shot.png --full-page

``docs/report_screenshot.png`` is kept in git: ``reports/`` is one DVC output of the evaluate stage (git-ignored),
which no git-tracked file can sit inside (docs/DESIGN.md §8).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader")  # software WebGL without a GPU
READY = "body[data-ready]"  # set by the viewer once every view is drawn


def launch(playwright, executable: str = CHROMIUM):
    """A headless Chromium browser with :data:`FLAGS` (Playwright's sync API)."""
    if not Path(executable).is_file():
        raise FileNotFoundError(f"{executable}: no Chromium; install it (apt-get install -y chromium, or make setup)")
    return playwright.chromium.launch(executable_path=executable, args=list(FLAGS), headless=True)


def open_page(browser, html: str | Path, width: int = 1400, height: int = 1800, timeout_ms: int = 20000):
    """Opens ``html`` (a file) by its file:// URL and waits for the viewer to finish or fail; returns (page,
    errors), ``errors`` a list that collects every console error, page error and network request (refused), now
    and later."""
    page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

    def offline(route):  # the page must need nothing but itself
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            errors.append(f"network request: {route.request.url}")
            route.abort()

    page.route("**/*", offline)
    page.goto(Path(html).resolve().as_uri())
    deadline = time.monotonic() + timeout_ms / 1000
    while not errors and not page.locator(READY).count():  # ready, or an error: the viewer stopped
        if time.monotonic() > deadline:
            raise TimeoutError(f"{html}: the viewer did not finish within {timeout_ms} ms")
        page.wait_for_timeout(50)
    return page, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", nargs="?", default="reports/index.html", help="the page (default reports/index.html)")
    ap.add_argument("out", nargs="?", default="docs/report_screenshot.png", help="PNG to write")
    ap.add_argument("--width", type=int, default=1400, help="viewport width, CSS pixels")
    ap.add_argument("--height", type=int, default=1200, help="viewport height, CSS pixels")
    ap.add_argument("--full-page", action="store_true", help="the whole page, not just the viewport")
    ap.add_argument("--chromium", default=CHROMIUM, help="Chromium executable")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, args.chromium)
        try:
            page, errors = open_page(browser, args.html, args.width, args.height)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=args.full_page)
        finally:
            browser.close()
    for e in errors:
        print(e, file=sys.stderr)
    print(f"wrote {args.out}" + (f" ({len(errors)} errors)" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

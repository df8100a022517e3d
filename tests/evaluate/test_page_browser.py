"""reports/index.html in a real headless browser: Debian's Chromium (/usr/bin/chromium, installed by
``make setup``) driven by Playwright, WebGL on SwiftShader (the flags of scripts/screenshot_report.py). The page
loads offline without an error, its 3D views draw, the colour toggle recolours them and dragging rotates them.

Skipped where Chromium or Playwright is missing, except on CI (``CI`` set), where that is a failure."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from page_fixture import fake_page_inputs

from pipeline.evaluate.page import page_data, page_html

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("screenshot_report", ROOT / "scripts" / "screenshot_report.py")
shot = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(shot)


def _require_browser():
    missing = [what for what, ok in (("playwright (pip, requirements.txt)", importlib.util.find_spec("playwright")),
                                     (f"Chromium at {shot.CHROMIUM} (make setup)", Path(shot.CHROMIUM).is_file()))
               if not ok]
    if missing and os.environ.get("CI"):
        pytest.fail(f"missing on CI: {', '.join(missing)}")
    if missing:
        pytest.skip(f"missing: {', '.join(missing)}")


@pytest.fixture(scope="module")
def page_file(template, tmp_path_factory):
    kept, inputs, seg, _ = fake_page_inputs(template, 2)
    path = tmp_path_factory.mktemp("page") / "index.html"
    row = {"instances": 2, "mpjpe_mm": 50.0, "flat_mpjpe_mm": 80.0, "ratio": 0.625}
    metrics = {"mpjpe_mm": 50.0, "by_pose_mode": {"walk": row, "sit": {"instances": 0, "mpjpe_mm": None,
                                                                       "flat_mpjpe_mm": None, "ratio": None}},
               "by_visible_share": {"vis50-70": row}}
    path.write_text(page_html(page_data(template, seg, kept, inputs, metrics)))
    return path


def _pixels(page, selector: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB screenshot of one element, its border cut off."""
    png = page.locator(selector).screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[2:-2, 2:-2, ::-1]


def _drawn(img: np.ndarray) -> int:
    """Pixels that differ from the background (the colour at the top-left corner)."""
    return int((np.abs(img.astype(int) - img[0, 0].astype(int)).sum(-1) > 24).sum())


def _changed(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).sum(-1) > 24).sum())


def test_page_renders_toggles_and_rotates_in_chromium(page_file):
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = shot.launch(p)
        try:
            page, errors = shot.open_page(browser, page_file, width=1300, height=1000)
            assert errors == [], errors  # console errors, page errors, network requests
            renderer = page.evaluate("() => { const g = document.createElement('canvas').getContext('webgl2') "
                                     "|| document.createElement('canvas').getContext('webgl'); "
                                     "return g ? g.getParameter(g.VERSION) : null; }")
            assert renderer, "no WebGL context"
            tables = page.locator("table.breakdown")  # where it fails: one table per breakdown, one row per group
            assert tables.count() == 2 and tables.nth(0).locator("tr").count() == 3
            assert tables.nth(0).inner_text().split("\n")[0] == "MPJPE by pose mode"
            assert "sit\t0\t–\t–\t–" in tables.nth(0).inner_text() and "50–70 %" in tables.nth(1).inner_text()
            views = page.locator("canvas.gl")
            assert views.count() == 3  # the template and two instances
            assert page.locator("#gl-0").get_attribute("width") == str(2 * 280)  # prediction | truth

            before = _pixels(page, "#gl-0")
            assert _drawn(before) > 0.05 * before.shape[0] * before.shape[1], "the 3D view is blank"
            halves = np.array_split(before, 2, axis=1)
            assert all(_drawn(h) > 0.03 * h.shape[0] * h.shape[1] for h in halves), "prediction or truth is missing"
            assert _drawn(_pixels(page, "#gl-template")) > 1000
            crops = page.locator("canvas:not(.gl)")
            assert crops.count() == 4 and _drawn(_pixels(page, "canvas:not(.gl) >> nth=1")) > 1000

            assert page.locator("#legend-error").is_visible() and not page.locator("#legend-part").is_visible()
            page.click("#mode-part")
            parts = _pixels(page, "#gl-0")
            assert _changed(before, parts) > 0.02 * before.shape[0] * before.shape[1], "the toggle changed nothing"
            assert page.locator("#legend-part").is_visible() and not page.locator("#legend-error").is_visible()
            assert _changed(_pixels(page, "#gl-1"), before) > 0  # every view follows the toggle

            box = page.locator("#gl-0").bounding_box()
            x, y = box["x"] + box["width"] / 4, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 60, y + 10, steps=5)
            page.mouse.up()
            turned = _pixels(page, "#gl-0")
            assert _changed(parts, turned) > 0.02 * parts.shape[0] * parts.shape[1], "dragging did not rotate"
            assert _drawn(turned) > 0.05 * turned.shape[0] * turned.shape[1]
            page.dblclick("#gl-0")
            np.testing.assert_array_equal(_pixels(page, "#gl-0"), parts)  # double-click: back to the first view

            page.click("#truth-overlay")  # redraws the crops with the true projection
            assert errors == [], errors
        finally:
            browser.close()

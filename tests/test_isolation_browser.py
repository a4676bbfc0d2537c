"""Two users in two real browser contexts (issue 15): B never sees A's photo, encoding,
outputs, custom attributes or typed model, even after uploading the very same photo.

Its own ``python app.py`` (loopback, so typed model specs are allowed there), driven by
Debian's Chromium through playwright, as in test_app_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_app_browser import CHROMIUM_ARGS, TIMEOUT_MS, image_size, img_src, open_tab, upload
from .test_app_browser import browser as browser  # noqa: F401 - the module-scoped fixture
from .test_app_fixtures import ARTIFACTS, EXAMPLES, AppServer, app_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]

assert CHROMIUM_ARGS  # the launch recipe is shared with test_app_browser.py


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    model = app_model(tmp_path_factory.getbasetemp())
    typed = tmp_path_factory.mktemp("typed") / "my-private-model"
    typed.symlink_to(Path(model).resolve())
    app = AppServer(model)
    yield app, str(typed)
    app.stop()


def _page(browser, url: str):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    page.wait_for_selector("#photo input[type=file]", state="attached")
    return context, page


def _model_options(page) -> list[str]:
    page.locator("#model-choice input").click()
    page.get_by_role("option").first.wait_for(state="visible")
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return [o.replace("✓", "").strip() for o in options]  # the chosen one carries a tick


def test_user_b_never_obtains_user_a_data(browser, server) -> None:  # noqa: F811
    app, typed = server
    context_a, a = _page(browser, app.url)
    context_b, b = _page(browser, app.url)
    try:
        # ---- A: a photo, a custom attribute, a model of their own
        upload(a, "photo", EXAMPLES / "face_a.png")
        side = image_size(a, "#aligned-crop")[0]
        a.locator("#render-btn").click()
        image_size(a, "#edited-crop")
        open_tab(a, "Custom attribute")
        upload(a, "custom-pos", [EXAMPLES / "face_a.png", EXAMPLES / "face_c.png"])
        upload(a, "custom-neg", [EXAMPLES / "face_b.png", EXAMPLES / "face_d.png"])
        a.locator("#custom-name textarea, #custom-name input").first.fill("Secretive")
        a.locator("#custom-btn").click()
        a.wait_for_function(
            "() => document.querySelector('#custom-status').innerText.includes('Secretive')"
        )
        open_tab(a, "Edit")
        a.locator("#model-accordion button").first.click()
        box = a.locator("#model-choice input")
        box.click()
        box.press("Control+a")
        box.press("Backspace")
        box.press_sequentially(typed)
        box.press("Enter")
        a.locator("#model-load").click()
        a.wait_for_function(
            "() => document.querySelector('#edit-status').innerText.includes('loaded for this')"
        )
        assert typed in _model_options(a)  # A sees what A typed

        # ---- B, in another browser context: nothing of A's
        assert img_src(b, "#aligned-crop") is None and img_src(b, "#edited-crop") is None
        assert b.locator("#download-encoding").is_disabled()
        assert b.locator("#download-png").is_disabled()
        assert not b.locator("#attr-custom-0").is_visible()
        b.locator("#model-accordion button").first.click()
        assert typed not in _model_options(b)
        # B (re)loading a model refreshes B's choices from the server: still not A's.
        b.locator("#model-load").click()
        b.wait_for_function(
            "() => document.querySelector('#edit-status').innerText.includes('loaded for this')"
        )
        assert typed not in _model_options(b)
        assert "my-private-model" not in b.locator("#studio-header").inner_text()

        # ---- B uploads A's very photo: B's own encoding, still none of A's extras
        upload(b, "photo", EXAMPLES / "face_a.png")
        assert image_size(b, "#aligned-crop")[0] == side
        b.locator("#render-btn").click()
        image_size(b, "#edited-crop")
        assert not b.locator("#attr-custom-0").is_visible()
        assert "Secretive" not in b.locator("body").inner_text()
        assert img_src(b, "#aligned-crop") != img_src(a, "#aligned-crop")
        assert typed not in _model_options(b)
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for name, page in (("a", a), ("b", b)):
            page.screenshot(path=str(ARTIFACTS / f"isolation_{name}.png"), full_page=True)
        context_a.close()
        context_b.close()

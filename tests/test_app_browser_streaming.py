"""In a real browser: a render of a 256-px model streams the forming face, then the final.

The app runs (``python app.py``) on a 256-px random-weight model of tiny width, so each UNet
call is slow enough on a CPU for the previews to be seen, and the page is watched with a
MutationObserver: every image the edited-face component shows and every status line.
"""

from __future__ import annotations

import pytest

from .test_app_browser import (  # noqa: F401 (browser: the fixture)
    TIMEOUT_MS,
    browser,
    image_size,
    set_slider,
)
from .test_app_fixtures import ARTIFACTS, EXAMPLES, AppServer, build_tiny_bundle, tiny256_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WATCH = """() => {
    window.__seen = {images: [], status: []};
    const remember = () => {
        const img = document.querySelector('#edited-crop img');
        if (img && img.src && !window.__seen.images.includes(img.src)) {
            window.__seen.images.push(img.src);
        }
        const status = document.querySelector('#edit-status');
        const text = status ? status.innerText : '';
        if (text && !window.__seen.status.includes(text)) window.__seen.status.push(text);
    };
    new MutationObserver(remember).observe(document.body, {
        subtree: true, childList: true, attributes: true, characterData: true,
    });
    remember();
}"""


@pytest.fixture(scope="module")
def server_256(tmp_path_factory: pytest.TempPathFactory):
    bundle = build_tiny_bundle(tmp_path_factory.mktemp("tiny256") / "bundle", tiny256_config())
    server = AppServer(str(bundle))
    yield server
    server.stop()


def test_render_shows_the_face_forming_with_progress(browser, server_256) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(server_256.url, wait_until="load")
        page.set_input_files("#photo input[type=file]", str(EXAMPLES / "face_b.png"))
        assert image_size(page, "#aligned-crop") == (256, 256)
        image_size(page, "#reconstruction")
        page.wait_for_function("() => !document.querySelector('#render-btn').disabled")
        page.evaluate(WATCH)
        # An edit (the unedited face is already rendered and cached at upload).
        set_slider(page, "attr-Smiling", 0.8)
        page.wait_for_function(
            "() => document.querySelector('#edit-status').innerText.includes('Smiling +0.80')"
        )
        page.wait_for_timeout(500)
        seen = page.evaluate("() => window.__seen")
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "render_streaming_256.png"), full_page=True)
        context.close()
    forming = [s for s in seen["status"] if s.startswith("Rendering: step")]
    # At least two intermediate images before the final one, each announced with its step
    # and the time left.
    assert len(seen["images"]) >= 3, seen
    assert len(forming) >= 2 and all(" left" in s for s in forming), seen["status"]
    assert forming[0].startswith("Rendering: step 2 of"), forming

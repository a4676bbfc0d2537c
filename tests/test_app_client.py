"""The app's named API endpoints through gradio_client, against ``python app.py`` itself.

One Client is one session: /encode keeps the face in that client's gr.State, /edit and
/attributes use it. Two clients never see each other's face.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from .test_app_fixtures import EXAMPLES, bad_inputs, real_photo, shared_server

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = pytest.mark.slow
ENDPOINTS = {"/encode", "/edit", "/interpolate", "/sample", "/attributes"}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_server(tmp_path_factory).url


def client(url: str) -> Client:
    return Client(url, verbose=False, download_files=True)


def encode(c: Client, photo: Path, face: int = 0, quality: str = "preview"):
    return c.predict(handle_file(str(photo)), face, quality, False, api_name="/encode")


def edit(c: Client, strengths: dict, locks=(), targets=None, quality: str = "preview"):
    return c.predict(strengths, list(locks), targets or {}, quality, -1, api_name="/edit")


def test_named_endpoints_are_public_and_nothing_else_leaks(url: str):
    api = client(url).view_api(return_format="dict", print_info=False)
    named = set(api["named_endpoints"])
    assert ENDPOINTS <= named, named
    # Internal UI events (slider renders, face picking...) are private.
    assert not {n for n in named if "render" in n or "photo" in n}, named


def test_encode_attributes_edit_roundtrip(url: str, tmp_path: Path):
    c = client(url)
    photo = real_photo(tmp_path)
    crop, recon, info = encode(c, photo)
    size = Image.open(crop).size
    assert size == Image.open(recon).size == (info["image_size"],) * 2
    assert info["num_faces"] >= 1 and info["face_index"] == 0
    assert info["psnr_db"] is None or info["psnr_db"] > 0
    attributes = c.predict(api_name="/attributes")
    names = [a["name"] for a in attributes["attributes"]]
    assert "Smiling" in names and attributes["face_encoded"]
    assert all(0 <= a["probability"] <= 1 for a in attributes["attributes"])
    groups = {a["name"]: a["group"] for a in attributes["attributes"]}
    assert groups["Smiling"] == "expression" and groups["Blond_Hair"] == "hair"
    edited_crop, edited_photo, result = edit(c, {"Smiling": 0.6, "Eyeglasses": 0.3}, ["Bangs"])
    # Pasted back as a change (the default): the crop is the photo's face at its resolution.
    assert Image.open(edited_crop).size[0] > size[0] and result["paste"] == "change"
    assert Image.open(edited_photo).size == Image.open(photo).size
    whole_crop, _, whole = c.predict(
        {"Smiling": 0.6}, [], {}, "preview", -1, "render", api_name="/edit"
    )
    assert Image.open(whole_crop).size == size and whole["recipe"]["paste"] == "render"
    assert result["recipe"]["strengths"] == {"Smiling": 0.6, "Eyeglasses": 0.3}
    assert result["recipe"]["locks"] == ["Bangs"]
    assert set(result["probabilities_after"]) == set(names)
    # Target mode through the API.
    _, _, targeted = edit(c, {}, targets={"Smiling": 0.9})
    assert targeted["recipe"]["targets"] == {"Smiling": 0.9}
    assert targeted["probabilities_after"]["Smiling"] == pytest.approx(0.9, abs=0.02)


def test_interpolate_and_sample(url: str):
    c = client(url)
    strip, gif = c.predict(
        handle_file(str(EXAMPLES / "face_a.png")),
        handle_file(str(EXAMPLES / "face_b.png")),
        3,
        "preview",
        api_name="/interpolate",
    )
    strip_image = Image.open(strip)
    assert strip_image.width == 3 * strip_image.height
    assert Image.open(gif).format == "GIF"
    gallery, status = c.predict(5, 2, "preview", api_name="/sample")
    assert len(gallery) == 2 and "random face" in status
    assert Image.open(gallery[0]["image"]).size == (strip_image.height,) * 2


def test_two_clients_are_isolated(url: str, tmp_path: Path):
    a, b, fresh = client(url), client(url), client(url)
    photo_a = real_photo(tmp_path)  # 512 x 512
    photo_b = EXAMPLES / "face_b.png"  # 256 x 256
    encode(a, photo_a)
    encode(b, photo_b)
    # Interleaved: A's edit after B's encode is still A's photo.
    _, photo, result_a = edit(a, {"Smiling": 0.2})
    assert Image.open(photo).size == (512, 512)
    _, photo, result_b = edit(b, {"Smiling": -0.2})
    assert Image.open(photo).size == (256, 256)
    assert result_a["recipe"]["strengths"] == {"Smiling": 0.2}
    assert result_b["recipe"]["strengths"] == {"Smiling": -0.2}
    # A client that never encoded has nothing to edit, whatever the others did.
    assert not fresh.predict(api_name="/attributes")["face_encoded"]
    with pytest.raises(Exception, match="call /encode first"):
        edit(fresh, {"Smiling": 0.5})


def test_bad_upload_is_a_clear_api_error(url: str, tmp_path: Path):
    files = bad_inputs(tmp_path)
    c = client(url)
    with pytest.raises(Exception, match="(?i)not an image|cannot be read|unreadable|identify"):
        encode(c, files["not_an_image.png"])
    with pytest.raises(Exception, match="(?i)no face"):
        encode(c, files["no_face.png"])
    # The session is still usable.
    crop, _, _ = encode(c, EXAMPLES / "face_a.png")
    assert Path(crop).is_file()


def test_upload_while_a_render_runs(url: str, tmp_path: Path):
    c = client(url)
    encode(c, real_photo(tmp_path))
    errors: list[BaseException] = []
    jobs = [
        c.submit({"Smiling": 0.1 * k}, [], {}, "balanced", -1, api_name="/edit") for k in (1, 2)
    ]

    def upload() -> None:
        try:
            encode(c, EXAMPLES / "face_c.png")
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    thread = threading.Thread(target=upload)
    thread.start()
    results = [job.result(timeout=300) for job in jobs]
    thread.join(300)
    assert not errors and all(r[1] for r in results)
    # After the new upload the session edits the new photo.
    _, photo, _ = edit(c, {"Smiling": 0.3})
    assert Image.open(photo).size == (256, 256)

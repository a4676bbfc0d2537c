"""Tests for diffae_app.imaging: every odd input a user can upload becomes upright 8-bit RGB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from diffae_app.imaging import (
    NEUTRAL_BACKGROUND,
    ImageError,
    ImageTooLarge,
    UnreadableImage,
    array_to_image,
    image_to_array,
    image_to_tensor,
    load_image,
    tensor_to_image,
)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _quadrants(width: int = 40, height: int = 30) -> Image.Image:
    """Four distinct flat colours, so any flip or rotation is visible."""
    array = np.zeros((height, width, 3), np.uint8)
    array[: height // 2, : width // 2] = (255, 0, 0)
    array[: height // 2, width // 2 :] = (0, 255, 0)
    array[height // 2 :, : width // 2] = (0, 0, 255)
    array[height // 2 :, width // 2 :] = (255, 255, 0)
    return Image.fromarray(array)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but carries no pixel data: what a decompression bomb's
    header looks like, without needing gigabytes to build one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------
# Sources


def test_every_source_kind_gives_the_same_rgb(tmp_path: Path) -> None:
    image = _quadrants()
    data = _encode(image, "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    expected = np.asarray(image)
    for source in (path, str(path), data, bytearray(data), io.BytesIO(data), image, expected):
        loaded = load_image(source)
        assert loaded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(loaded), expected)


def test_pil_input_is_copied_not_shared() -> None:
    image = _quadrants()
    loaded = load_image(image)
    assert loaded is not image
    loaded.paste((0, 0, 0), (0, 0, 5, 5))
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_callers_open_file_is_left_open() -> None:
    stream = io.BytesIO(_encode(_quadrants(), "PNG"))
    load_image(stream)
    assert not stream.closed


def test_callers_animation_keeps_its_current_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    animation = Image.open(io.BytesIO(buffer.getvalue()))
    animation.seek(1)
    assert load_image(animation).getpixel((4, 4)) == (255, 0, 0)
    assert animation.tell() == 1


def test_unsupported_source_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="takes a path"):
        load_image(12345)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillows_reference(orientation: int) -> None:
    image = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(image, "PNG", exif=exif.tobytes())
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    loaded = load_image(data)
    assert loaded.size == expected.size
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(expected))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_loading_an_upright_result_again_does_not_rotate_it_twice(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    once = load_image(_encode(_quadrants(), "PNG", exif=exif.tobytes()))
    again = load_image(once)
    # Saved with the metadata it carries (as a layer that writes the photo out would).
    saved = load_image(_encode(once, "PNG", exif=once.info.get("exif", b"")))
    for other in (again, saved):
        assert other.size == once.size
        np.testing.assert_array_equal(np.asarray(other), np.asarray(once))


def test_tiff_orientation_tag_and_damaged_exif() -> None:
    # TIFF keeps its orientation as a TIFF tag, not in an EXIF block.
    data = _encode(_quadrants(), "TIFF", tiffinfo={0x0112: 6})
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    loaded = load_image(data)
    assert loaded.size == (30, 40)
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(expected))
    # A damaged EXIF block leaves an otherwise good photo usable, unrotated.
    broken = load_image(_encode(_quadrants(), "PNG", exif=b"Exif\x00\x00MM\x00*garbage"))
    np.testing.assert_array_equal(np.asarray(broken), np.asarray(_quadrants().convert("RGB")))


def test_exif_rotated_phone_jpeg_is_upright() -> None:
    # Stored landscape with red on the left; orientation 6 means "rotate 90° clockwise to view",
    # so the upright picture is portrait with red on top.
    array = np.zeros((30, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = load_image(_encode(Image.fromarray(array), "JPEG", quality=95, exif=exif.tobytes()))
    assert loaded.size == (30, 40)
    top, bottom = np.asarray(loaded)[5, 15], np.asarray(loaded)[35, 15]
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


# ------------------------------------------------------------------------------------------
# Colour modes


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = Image.fromarray(np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5), mode="L")
    loaded = np.asarray(load_image(_encode(gray, "PNG")))
    np.testing.assert_array_equal(loaded[..., 0], np.asarray(gray))
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])


def test_bilevel_image_converts() -> None:
    bits = Image.new("1", (8, 8), 1)
    assert load_image(_encode(bits, "PNG")).getpixel((3, 3)) == (255, 255, 255)


def test_rgba_is_composited_on_neutral_grey() -> None:
    array = np.zeros((4, 3, 4), np.uint8)
    array[:, 0] = (255, 0, 0, 255)  # opaque red
    array[:, 1] = (255, 0, 0, 0)  # fully transparent
    array[:, 2] = (255, 0, 0, 128)  # half transparent
    loaded = np.asarray(load_image(_encode(Image.fromarray(array), "PNG")))
    assert tuple(loaded[0, 0]) == (255, 0, 0)
    assert tuple(loaded[0, 1]) == NEUTRAL_BACKGROUND
    assert abs(int(loaded[0, 2, 0]) - 191) <= 1 and abs(int(loaded[0, 2, 1]) - 64) <= 1


def test_custom_background_for_transparency() -> None:
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert load_image(clear, background=(255, 255, 255)).getpixel((1, 1)) == (255, 255, 255)


def test_gray_with_alpha_and_palette_with_transparency() -> None:
    la = Image.new("LA", (4, 4), (200, 0))
    assert load_image(_encode(la, "PNG")).getpixel((0, 0)) == NEUTRAL_BACKGROUND

    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    palette.putpixel((0, 0), 0)
    data = _encode(palette, "PNG", transparency=0)
    loaded = load_image(data)
    assert loaded.getpixel((0, 0)) == NEUTRAL_BACKGROUND
    assert loaded.getpixel((1, 1)) == (255, 0, 0)


def test_palette_gif_converts() -> None:
    image = _quadrants().quantize(colors=4)
    loaded = np.asarray(load_image(_encode(image, "GIF")))
    np.testing.assert_array_equal(loaded, np.asarray(_quadrants()))


def test_cmyk_jpeg_converts_to_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red ink
    loaded = load_image(_encode(cmyk, "JPEG", quality=95))
    red, green, blue = loaded.getpixel((8, 8))
    assert red > 230 and green < 30 and blue < 30


def test_sixteen_bit_grayscale_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 64, 32896, 65535]], np.uint16)
    image = Image.fromarray(values)  # uint16 -> mode "I;16"
    assert image.mode == "I;16"
    loaded = np.asarray(load_image(_encode(image, "PNG")))
    np.testing.assert_array_equal(loaded[0, :, 0], [0, 64, 128, 255])


def test_thirty_two_bit_and_float_modes() -> None:
    wide = Image.fromarray(np.array([[0, 32896, 65535]], np.int32))
    np.testing.assert_array_equal(np.asarray(load_image(wide))[0, :, 1], [0, 128, 255])
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    np.testing.assert_array_equal(np.asarray(load_image(unit))[0, :, 1], [0, 128, 255])


def test_numpy_inputs_of_several_dtypes() -> None:
    np.testing.assert_array_equal(
        np.asarray(load_image(np.full((2, 2), 65535, np.uint16)))[0, 0], (255, 255, 255)
    )
    np.testing.assert_array_equal(
        np.asarray(load_image(np.full((2, 2, 3), 0.5, np.float32)))[0, 0], (128, 128, 128)
    )
    with pytest.raises(UnreadableImage, match="array shape"):
        load_image(np.zeros((2, 2, 2), np.uint8))


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    opened = Image.open(io.BytesIO(buffer.getvalue()))
    assert opened.n_frames == 2
    assert load_image(buffer.getvalue()).getpixel((4, 4)) == (255, 0, 0)


def _display_p3_like_profile() -> bytes:
    """A minimal ICC v2 matrix/TRC monitor profile with Display P3 primaries (D50-adapted) and
    a 2.2 gamma: enough to stand for the wide-gamut photos phones save."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, 0x0233) + b"\0\0"
    text = b"Display P3 (test)\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 79
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
        (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)),
        (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (
        struct.pack(">I", offset + len(data))
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\0" * 48
    )
    return header + struct.pack(">I", len(tags)) + table + data


def test_wide_gamut_photo_is_converted_to_srgb_through_its_profile() -> None:
    from PIL import ImageCms

    icc = _display_p3_like_profile()
    image = Image.new("RGB", (4, 4), (40, 180, 90))
    expected = ImageCms.profileToProfile(
        image,
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
    ).getpixel((0, 0))
    loaded = load_image(_encode(image, "PNG", icc_profile=icc)).getpixel((0, 0))
    assert loaded == expected
    assert loaded != (40, 180, 90)  # P3 green is more saturated than sRGB's


def test_broken_icc_profile_falls_back_to_plain_pixels() -> None:
    image = Image.new("RGB", (4, 4), (50, 100, 150))
    loaded = load_image(_encode(image, "PNG", icc_profile=b"not a profile at all"))
    assert loaded.getpixel((0, 0)) == (50, 100, 150)


def test_srgb_tagged_photo_is_left_bit_exact() -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = _quadrants()
    loaded = load_image(_encode(image, "PNG", icc_profile=srgb))
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(image))


# ------------------------------------------------------------------------------------------
# Refusals, each with a one-line message


def _one_line_error(excinfo: pytest.ExceptionInfo[ImageError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def test_decompression_bomb_header_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge) as excinfo:
        load_image(_png_header_only(12000, 12000))
    assert _one_line_error(excinfo) == (
        "the uploaded data is 12000×12000 = 144 Mpx, over the 50 Mpx limit; downscale it "
        "before uploading"
    )


def test_pillows_own_bomb_error_becomes_image_too_large() -> None:
    with pytest.raises(ImageTooLarge, match="too large to decode safely"):
        load_image(_png_header_only(20000, 20000), max_pixels=10**9)


def test_pixel_limit_is_per_call_and_global_limit_untouched() -> None:
    before = Image.MAX_IMAGE_PIXELS
    image = _quadrants(100, 100)
    with pytest.raises(ImageTooLarge, match="over the 0.0 Mpx limit|over the"):
        load_image(image, max_pixels=5000)
    assert load_image(image, max_pixels=10_000).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == before


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo")
    with pytest.raises(UnreadableImage) as excinfo:
        load_image(path)
    assert _one_line_error(excinfo) == (
        "notes.jpg is not an image Pillow can read (unknown or unsupported format)"
    )


def test_truncated_jpeg(tmp_path: Path) -> None:
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noisy), "JPEG", quality=90)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage) as excinfo:
        load_image(path)
    message = _one_line_error(excinfo)
    assert message.startswith("photo.jpg is not an image Pillow can read (truncated or corrupt")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableImage, match=r"^empty.png is empty \(0 bytes\)$"):
        load_image(empty)
    with pytest.raises(UnreadableImage, match=r"^the uploaded data is empty"):
        load_image(b"")
    with pytest.raises(UnreadableImage, match="^gone.jpg does not exist"):
        load_image(tmp_path / "gone.jpg")


def test_errors_are_value_errors() -> None:
    assert issubclass(ImageError, ValueError)
    assert issubclass(UnreadableImage, ImageError) and issubclass(ImageTooLarge, ImageError)


# ------------------------------------------------------------------------------------------
# Conversions


def test_array_and_tensor_round_trips() -> None:
    image = _quadrants()
    np.testing.assert_array_equal(np.asarray(array_to_image(image_to_array(image))), image)
    tensor = image_to_tensor(image)
    assert tensor.shape == (3, 30, 40) and tensor.dtype == torch.float32
    assert float(tensor.min()) == -1.0 and float(tensor.max()) == 1.0
    np.testing.assert_array_equal(np.asarray(tensor_to_image(tensor[None])), np.asarray(image))
    floats = image_to_array(image).astype(np.float32) / 255.0
    np.testing.assert_array_equal(np.asarray(array_to_image(floats)), np.asarray(image))
    with pytest.raises(ValueError, match="RGB"):
        image_to_array(image.convert("L"))

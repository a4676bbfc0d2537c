"""Robust image loading and small pixel-format helpers shared by the whole app.

Every image that enters DiffAE Studio goes through :func:`load_image`, which turns whatever a
user uploads (phone JPEGs with EXIF rotation, PNGs with transparency, CMYK scans, 16-bit TIFFs,
palette GIFs, animations) into one thing: an 8-bit sRGB ``PIL.Image`` in mode ``"RGB"``,
upright as the camera held it. Anything that cannot become that raises an :class:`ImageError`
whose message is one line a user can act on.

Conventions for the conversion helpers: arrays are ``uint8`` of shape ``(H, W, 3)``; tensors are
``float32`` of shape ``(3, H, W)`` with values in ``[-1, 1]`` (the range the diffusion models
use).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "NEUTRAL_BACKGROUND",
    "ImageError",
    "ImageSource",
    "ImageTooLarge",
    "UnreadableImage",
    "array_to_image",
    "image_to_array",
    "image_to_tensor",
    "load_image",
    "tensor_to_image",
]

#: Largest image :func:`load_image` accepts by default. A 48 Mpx phone photo fits; a
#: decompression bomb (a tiny file that claims gigapixels) does not.
DEFAULT_MAX_PIXELS = 50_000_000

#: Mid grey used under transparent pixels. Neutral so that it biases neither the face detector
#: nor the encoder towards a colour cast.
NEUTRAL_BACKGROUND = (128, 128, 128)

#: Anything :func:`load_image` accepts: a path, encoded file bytes, an open binary file, a PIL
#: image, or an ``(H, W)``/``(H, W, 1|3|4)`` array (uint8, uint16, or float in [0, 1]).
ImageSource: TypeAlias = (
    str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray
)

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_HIGH_BIT_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


class ImageError(ValueError):
    """An input image cannot be used. The message is one line meant for the end user."""


class UnreadableImage(ImageError):
    """The data is missing, empty, not an image, truncated/corrupt, or in an unusable mode."""


class ImageTooLarge(ImageError):
    """The image has more pixels than the caller's limit (decompression-bomb protection)."""


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = NEUTRAL_BACKGROUND,
    name: str | None = None,
) -> Image.Image:
    """Load any supported image as an upright 8-bit RGB ``PIL.Image``.

    Steps: decode (first frame of an animation), refuse images over ``max_pixels`` *before*
    decoding pixels, apply the EXIF orientation (``PIL.ImageOps.exif_transpose``), then convert
    the colour mode to RGB (alpha composited over ``background``, 16-bit and float data scaled
    to 8 bits, CMYK and wide-gamut photos converted to sRGB through their embedded ICC profile
    when they carry one).

    Args:
        source: a path, encoded bytes, an open binary file, a ``PIL.Image`` (never modified), or
            a numpy array ``(H, W)``/``(H, W, C)``, C in {1, 3, 4}, of uint8, uint16 (full
            16-bit range) or float (values in [0, 1]).
        max_pixels: largest accepted width × height. Checked from the file header, so a
            decompression bomb is refused without being decoded.
        background: RGB colour placed under transparent pixels.
        name: how to call the image in error messages; defaults to the file name or "the image".

    Returns:
        A new ``PIL.Image`` in mode ``"RGB"``, fully loaded (independent of any open file).

    Raises:
        ImageTooLarge: more than ``max_pixels`` pixels.
        UnreadableImage: missing/empty file, not an image, truncated or corrupt data, or a
            colour mode that cannot be converted.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    label = name or _describe(source)

    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, label)
        rgb = _upright_rgb(_first_frame_of_callers_image(source, label), background, label)
        # Never hand back the caller's own object: later in-place edits must not reach it.
        return rgb.copy() if rgb is source else rgb
    if isinstance(source, np.ndarray):
        return _upright_rgb(_array_to_pil(source, label, max_pixels), background, label)

    # Leaving the block closes the file only if Pillow opened it from a path; a caller's open
    # file stays open (Image.close() would close it too).
    with _open_encoded(source, label) as opened:
        # The header is read; refuse oversized images before any pixel is decoded.
        _check_size(opened.size, max_pixels, label)
        _load_first_frame(opened, label)
        rgb = _upright_rgb(opened, background, label)
        if rgb is opened:
            # A plain in-memory image, detached from the decoder (animations, MPO photos).
            rgb = opened.copy()
    return rgb


def image_to_array(image: Image.Image) -> np.ndarray:
    """RGB ``PIL.Image`` -> ``uint8`` array of shape ``(H, W, 3)`` (a copy, writable)."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}; use load_image() first")
    return np.array(image, dtype=np.uint8)


def array_to_image(array: np.ndarray) -> Image.Image:
    """``(H, W, 3)`` array -> RGB ``PIL.Image``.

    uint8 is used as is; floating-point arrays are read as [0, 1] and rounded (values outside
    are clipped).
    """
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"expected uint8 or float data, got {array.dtype}")
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB ``PIL.Image`` -> ``float32`` tensor ``(3, H, W)`` in [-1, 1] (0 -> -1, 255 -> 1)."""
    import torch  # Local: loading images must not pay for importing torch.

    array = image_to_array(image)
    tensor = torch.from_numpy(array).permute(2, 0, 1).to(torch.float32)
    return tensor / 127.5 - 1.0


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, 3, H, W)`` tensor in [-1, 1] -> RGB ``PIL.Image`` (clipped, rounded)."""
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(tensor.shape)}")
    import torch

    values = (tensor.detach().to("cpu", torch.float32) + 1.0) * 127.5
    array = values.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))


# --------------------------------------------------------------------------------------------
# Decoding


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name or str(source)
    file_name = getattr(source, "name", None)
    if isinstance(file_name, str):
        return Path(file_name).name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "the uploaded data"
    return "the image"


def _check_size(size: tuple[int, int], max_pixels: int, label: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise UnreadableImage(f"{label} has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{label} is {width}×{height} = {_megapixels(width * height)} Mpx, over the "
            f"{_megapixels(max_pixels)} Mpx limit; downscale it before uploading"
        )


def _megapixels(pixels: int) -> str:
    value = pixels / 1e6
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _open_encoded(source: ImageSource, label: str) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise UnreadableImage(f"{label} does not exist or is not a file ({path})")
        if path.stat().st_size == 0:
            raise UnreadableImage(f"{label} is empty (0 bytes)")
        stream: BinaryIO | str | os.PathLike = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise UnreadableImage(f"{label} is empty (0 bytes)")
        stream = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        stream = source
    else:
        raise TypeError(
            "load_image() takes a path, bytes, a binary file, a PIL image or a numpy array, "
            f"not {type(source).__name__}"
        )

    try:
        # Pillow's own bomb check warns above Image.MAX_IMAGE_PIXELS and raises above twice that.
        # Our per-call limit below is the one that counts, so the warning is noise here; the
        # global limit itself is left untouched.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"{label} is too large to decode safely ({error})") from error
    except UnidentifiedImageError as error:
        raise UnreadableImage(
            f"{label} is not an image Pillow can read (unknown or unsupported format)"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnreadableImage(f"{label} is not an image Pillow can read ({error})") from error

    return image


def _load_first_frame(image: Image.Image, label: str) -> None:
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnreadableImage(
            f"{label} is not an image Pillow can read (truncated or corrupt: {error})"
        ) from error


def _first_frame_of_callers_image(image: Image.Image, label: str) -> Image.Image:
    """Frame 0 of a caller's image, leaving the caller's current frame where it was."""
    current = image.tell() if getattr(image, "n_frames", 1) > 1 else 0
    if current == 0:
        _load_first_frame(image, label)
        return image
    try:
        image.seek(0)
        _load_first_frame(image, label)
        return image.copy()
    finally:
        image.seek(current)


def _upright_rgb(image: Image.Image, background: tuple[int, int, int], label: str) -> Image.Image:
    # Transposed before the colour conversion, which would drop orientation tags kept outside
    # info["exif"] (TIFF tags). exif_transpose returns a copy (the caller's image is never
    # changed) whose EXIF/XMP no longer carry the tag, so loading the result again (every
    # layer calls load_image) does not rotate it a second time.
    try:
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        # A damaged EXIF block must not make an otherwise good photo unusable.
        upright = image
    return _to_rgb(upright, background, label)


def _array_to_pil(array: np.ndarray, label: str, max_pixels: int) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UnreadableImage(
            f"{label} has array shape {tuple(array.shape)}; expected (H, W), (H, W, 3) or (H, W, 4)"
        )
    _check_size((array.shape[1], array.shape[0]), max_pixels, label)
    if array.dtype == np.uint16:
        array = _scale_to_uint8(array.astype(np.float64) / 65535.0)
    elif np.issubdtype(array.dtype, np.floating):
        array = _scale_to_uint8(array.astype(np.float64))
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        raise UnreadableImage(f"{label} has unsupported array dtype {array.dtype}")
    array = np.ascontiguousarray(array)
    return Image.fromarray(array)


def _scale_to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Colour modes


def _to_rgb(image: Image.Image, background: tuple[int, int, int], label: str) -> Image.Image:
    mode = image.mode
    try:
        if mode in _HIGH_BIT_DEPTH_MODES:
            return _high_bit_depth_to_rgb(image)
        if mode == "P":
            # Palette images may mark one index (or a tRNS table) as transparent.
            has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
            image = image.convert("RGBA" if has_alpha else "RGB")
            mode = image.mode
        if mode in _ALPHA_MODES:
            rgba = image.convert("RGBA")
            base = Image.new("RGB", rgba.size, background)
            base.paste(rgba, mask=rgba.getchannel("A"))
            return base
        if mode in ("RGB", "CMYK"):
            converted = _icc_to_srgb(image)
            if converted is not None:
                return converted
        return image if mode == "RGB" else image.convert("RGB")
    except (ValueError, OSError) as error:
        raise UnreadableImage(
            f"{label} uses colour mode {mode}, which cannot be converted to RGB ({error})"
        ) from error


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    data = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        unit = data / 65535.0
    else:
        # "I" (32-bit int) and "F" (float) carry no range. Pick the reading that fits the data:
        # [0, 1] floats, 8-bit or 16-bit integers stored wide; otherwise stretch min..max.
        low, high = float(data.min()), float(data.max())
        if low >= 0.0 and high <= 1.0 and image.mode == "F":
            unit = data
        elif low >= 0.0 and high <= 255.0:
            unit = data / 255.0
        elif low >= 0.0 and high <= 65535.0:
            unit = data / 65535.0
        else:
            unit = (data - low) / max(high - low, 1e-12)
    return Image.fromarray(_scale_to_uint8(unit)).convert("RGB")


def _icc_to_srgb(image: Image.Image) -> Image.Image | None:
    """Convert through the embedded ICC profile to sRGB, or ``None`` when there is nothing to do.

    Phone cameras save wide-gamut (Display P3) photos and print scans are often CMYK with a
    profile; read without it, skin looks wrong. sRGB-tagged images are returned as they are,
    which also keeps their pixels bit-exact.
    """
    icc = image.info.get("icc_profile")
    if not icc:
        return None
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without LittleCMS: plain conversion is the fallback.
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (ImageCms.getProfileDescription(source) or "").lower()
        if image.mode == "RGB" and "srgb" in description:
            return None
        converted = ImageCms.profileToProfile(
            image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        # A broken or mismatched profile: fall back to the naive conversion rather than refuse.
        return None
    return converted

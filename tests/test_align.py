"""Tests for diffae_app.align: detection, FFHQ alignment and paste-back of real photos, offline.

Real photos come from installed packages (scikit-image's astronaut, matplotlib's Grace Hopper),
never from the repository. Aligned crops are written to ``test-artifacts/align/`` for a human
to look at.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from diffae_app.align import (
    FAN_WEIGHT_FILES,
    AlignedFace,
    Detection,
    DetectorUnavailable,
    DlibDetector,
    Face,
    FaceTooSmall,
    LandmarkDetector,
    NoFaceFound,
    align_face,
    detect_faces,
    fan_weights,
    fan_weights_dir,
    ffhq_eye_template,
    ffhq_mouth_template,
    ffhq_quad,
    make_detector,
    paste_back,
    paste_mask,
)
from diffae_app.imaging import ImageTooLarge, UnreadableImage

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "align"

# Where the faces are in the sample photos (box centres, found by hand), to check that the
# preferred face is the real one.
ASTRONAUT_FACE_CENTRE = (220.0, 121.0)
GRACE_FACE_CENTRE = (273.0, 232.0)


pytestmark = pytest.mark.usefixtures("no_network")  # tests/conftest.py

# ------------------------------------------------------------------------------------------
# Helpers


def _save(image: Image.Image, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image.save(ARTIFACTS / name)


def _marked(aligned: AlignedFace) -> Image.Image:
    """The crop with its landmarks (green) and the FFHQ eye template (red crosses)."""
    image = aligned.image.copy()
    draw = ImageDraw.Draw(image)
    for x, y in aligned.landmarks:
        draw.point((x, y), fill=(0, 255, 0))
    for x, y in ffhq_eye_template(aligned.output_size):
        draw.line((x - 4, y, x + 4, y), fill=(255, 0, 0))
        draw.line((x, y - 4, x, y + 4), fill=(255, 0, 0))
    return image


def _eyes(landmarks: np.ndarray) -> np.ndarray:
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0)])


def _box_contains(face: Face, point: tuple[float, float]) -> bool:
    left, top, right, bottom = face.box
    return left <= point[0] <= right and top <= point[1] <= bottom


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _synthetic_landmarks(photo_from_crop: np.ndarray, size: int = 256) -> np.ndarray:
    """68 points of a face with template proportions, drawn in a ``size`` crop and mapped into a
    photo by ``photo_from_crop`` (3×3). Eye points are spread around the eye centres, mouth
    corners sit either side of the mouth centre; the rest sit at the nose."""
    points = np.tile([size * 0.5 - 0.5, size * 0.6 - 0.5], (68, 1))
    ring = np.array([[-6, 0], [-3, -2], [3, -2], [6, 0], [3, 2], [-3, 2]], dtype=np.float64)
    left_eye, right_eye = ffhq_eye_template(size)
    points[36:42] = left_eye + ring
    points[42:48] = right_eye + ring
    mouth = ffhq_mouth_template(size)
    points[48] = mouth - [size * 0.1, 0]
    points[54] = mouth + [size * 0.1, 0]
    return points @ photo_from_crop[:2, :2].T + photo_from_crop[:2, 2]


def _similarity(angle_degrees: float, scale: float, offset: tuple[float, float]) -> np.ndarray:
    angle = math.radians(angle_degrees)
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, offset[0]], [s, c, offset[1]], [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------------------------------
# Geometry without a detector


def test_template_face_lands_exactly_on_the_template() -> None:
    crop_to_photo = _similarity(17.0, 1.7, (120.0, 60.0))
    landmarks = _synthetic_landmarks(crop_to_photo)
    photo = Image.new("RGB", (600, 600), (90, 120, 150))
    face = Face((0, 0, 600, 600), landmarks, 1.0, "synthetic", photo.size)
    aligned = align_face(photo, face, 256)
    np.testing.assert_allclose(_eyes(aligned.landmarks), ffhq_eye_template(256), atol=1e-6)
    np.testing.assert_allclose(aligned.inverse, crop_to_photo, atol=1e-9)
    np.testing.assert_allclose(aligned.forward @ aligned.inverse, np.eye(3), atol=1e-9)


def test_template_values() -> None:
    # Edge coordinates (3/8, 17/36) and (5/8, 17/36) of the side, minus half a pixel.
    expected_y = 1024 * 17 / 36 - 0.5
    np.testing.assert_allclose(ffhq_eye_template(1024), [[383.5, expected_y], [639.5, expected_y]])
    np.testing.assert_allclose(ffhq_mouth_template(256), [127.5, 191.5])
    quad = ffhq_quad(_synthetic_landmarks(np.eye(3)))
    np.testing.assert_allclose(quad, [[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5], [255.5, -0.5]])


def test_pixels_move_exactly_as_the_transform_says() -> None:
    """A small bright blob must appear in the crop where ``forward`` puts it (sub-pixel)."""
    photo_size = (500, 420)
    blob = np.array([231.3, 187.8])
    ys, xs = np.mgrid[0 : photo_size[1], 0 : photo_size[0]]
    brightness = 255 * np.exp(-((xs - blob[0]) ** 2 + (ys - blob[1]) ** 2) / (2 * 4.0**2))
    photo = Image.fromarray(np.repeat(brightness[..., None], 3, 2).round().astype(np.uint8))
    crop_to_photo = _similarity(-23.0, 1.1, (150.0, 40.0))
    face = Face((0, 0, 1, 1), _synthetic_landmarks(crop_to_photo), 1.0, "synthetic", photo_size)
    aligned = align_face(photo, face, 256)
    expected = aligned.forward[:2, :2] @ blob + aligned.forward[:2, 2]
    crop = np.asarray(aligned.image, dtype=np.float64)[..., 0]
    cys, cxs = np.mgrid[0:256, 0:256]
    found = np.array([(crop * cxs).sum(), (crop * cys).sum()]) / crop.sum()
    np.testing.assert_allclose(found, expected, atol=0.05)


def test_face_is_immutable_and_validated() -> None:
    landmarks = _synthetic_landmarks(np.eye(3))
    face = Face((1, 2, 3, 4), landmarks, 0.5, "synthetic", (256, 256))
    assert not face.landmarks.flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.score = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        Face((0, 0, 1, 1), landmarks[:5], 0.5, "synthetic", (256, 256))
    broken = landmarks.copy()
    broken[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        Face((0, 0, 1, 1), broken, 0.5, "synthetic", (256, 256))


def test_alignment_argument_errors() -> None:
    photo = Image.new("RGB", (300, 300))
    face = Face((0, 0, 1, 1), _synthetic_landmarks(np.eye(3)), 1.0, "synthetic", (300, 300))
    with pytest.raises(ValueError, match="output_size"):
        align_face(photo, face, 8)
    with pytest.raises(ValueError, match="working_size"):
        align_face(photo, face, 256, working_size=128)
    with pytest.raises(ValueError, match=r"300×300 image but align_face got 200×300"):
        align_face(Image.new("RGB", (200, 300)), face, 256)
    tiny = Face((0, 0, 1, 1), _synthetic_landmarks(np.diag([0.1, 0.1, 1])), 1.0, "s", (300, 300))
    with pytest.raises(FaceTooSmall, match="only 26 px across"):
        align_face(photo, tiny, 256)


# ------------------------------------------------------------------------------------------
# Ranking and the detection wrapper, with a scripted detector


class ScriptedDetector:
    """Returns fixed boxes (in the coordinates of the image it is shown) and template points."""

    name = "scripted"
    reason = "test"

    def __init__(self, boxes: list[tuple[tuple[float, ...], float]], min_width: int = 0) -> None:
        self.boxes = boxes
        self.min_width = min_width
        self.detection_pixels = 10_000
        self.seen_shapes: list[tuple[int, ...]] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.seen_shapes.append(image.shape)
        if image.shape[1] < self.min_width:
            return []
        return [Detection(tuple(box), score) for box, score in self.boxes]  # type: ignore[arg-type]

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        left, top, right, bottom = box
        crop_to_photo = np.array(
            [[(right - left) / 256, 0, left], [0, (bottom - top) / 256, top], [0, 0, 1]]
        )
        return _synthetic_landmarks(crop_to_photo)


def test_ranking_prefers_confident_then_large() -> None:
    detector = ScriptedDetector(
        [
            ((10, 10, 90, 90), 0.1),  # largest, but a weak score: a patch or a texture
            ((10, 10, 30, 30), 1.0),
            ((50, 50, 80, 80), 0.8),
        ]
    )
    photo = Image.new("RGB", (100, 100))
    faces = detect_faces(photo, detector)
    assert isinstance(detector, LandmarkDetector)
    assert [face.score for face in faces] == [0.8, 1.0, 0.1]
    assert all(face.backend == "scripted" and face.image_size == (100, 100) for face in faces)
    assert len(detect_faces(photo, detector, max_faces=2)) == 2


def test_large_photo_is_reduced_for_detection_and_boxes_mapped_back() -> None:
    detector = ScriptedDetector([((9.5, 19.5, 29.5, 39.5), 1.0)])
    photo = Image.new("RGB", (400, 300))
    (face,) = detect_faces(photo, detector)  # budget 10 000 px: the detector sees ~115×87
    assert detector.seen_shapes == [(87, 115, 3)]
    scale = 115 / 400
    np.testing.assert_allclose(face.box, [(v + 0.5) / scale - 0.5 for v in (9.5, 19.5, 29.5, 39.5)])


def test_second_pass_looks_for_small_faces_only_when_the_first_finds_none() -> None:
    detector = ScriptedDetector([((20, 20, 60, 60), 1.0)], min_width=200)
    (face,) = detect_faces(Image.new("RGB", (400, 300)), detector)
    assert [shape[1] for shape in detector.seen_shapes] == [115, 231]
    assert face.box[0] == pytest.approx((20.5) * 400 / 231 - 0.5)


def test_blank_photo_raises_no_face_found(detector: DlibDetector) -> None:
    with pytest.raises(NoFaceFound) as excinfo:
        detect_faces(Image.new("RGB", (640, 480), (128, 128, 128)), detector)
    assert str(excinfo.value) == (
        "no face found in the 640×480 photo (detector: dlib); use a photo where the face is "
        "clearly visible, roughly frontal and not tiny"
    )


# ------------------------------------------------------------------------------------------
# Real photos (acceptance 1)


@pytest.mark.parametrize(
    ("photo_name", "face_centre"),
    [("astronaut", ASTRONAUT_FACE_CENTRE), ("grace", GRACE_FACE_CENTRE)],
)
def test_real_photo_aligns_onto_the_ffhq_template(
    request: pytest.FixtureRequest,
    detector: DlibDetector,
    photo_name: str,
    face_centre: tuple[float, float],
) -> None:
    photo: Image.Image = request.getfixturevalue(photo_name)
    faces = detect_faces(photo, detector)
    preferred = faces[0]
    assert _box_contains(preferred, face_centre)
    # Exactly one preferred face: anything else found is a weak detection elsewhere.
    assert all(
        f.score < 0.5 * preferred.score and not _box_contains(f, face_centre) for f in faces[1:]
    )

    aligned = align_face(photo, preferred, 256)
    _save(aligned.image, f"{photo_name}_256.png")
    _save(_marked(aligned), f"{photo_name}_256_marked.png")
    assert aligned.image.size == (256, 256) and aligned.image.mode == "RGB"
    assert np.abs(_eyes(aligned.landmarks) - ffhq_eye_template(256)).max() < 2.0

    # The crop itself must show the face where the landmarks say: detect again on the crop.
    # (3 px: dlib predicts whole-pixel points, and the crop is a resampled image.)
    again = detect_faces(aligned.image, detector)[0]
    assert np.abs(_eyes(again.landmarks) - ffhq_eye_template(256)).max() < 3.0


def test_patch_on_the_uniform_is_not_preferred(
    astronaut: Image.Image, detector: DlibDetector
) -> None:
    # Doubling the photo makes HOG also "find" a face in the mission patch (at ~(170, 380)).
    eager = DlibDetector(upsample=1)
    faces = detect_faces(astronaut, eager, max_detection_pixels=astronaut.width * astronaut.height)
    assert _box_contains(faces[0], ASTRONAUT_FACE_CENTRE)
    patches = [f for f in faces if _box_contains(f, (170.0, 380.0))]
    assert patches, "expected the known false detection on the patch to be reported"
    assert faces.index(patches[0]) > 0


def test_two_photos_two_faces_give_two_alignable_faces(
    two_faces: Image.Image, detector: DlibDetector
) -> None:
    faces = detect_faces(two_faces, detector)
    confident = [f for f in faces if f.score >= 0.5 * faces[0].score]
    assert len(confident) == 2
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in confident)
    assert centres[0] < 512 < centres[1]
    for index, face in enumerate(confident):
        aligned = align_face(two_faces, face, 256)
        _save(aligned.image, f"two_faces_face{index}_256.png")
        assert np.abs(_eyes(aligned.landmarks) - ffhq_eye_template(256)).max() < 2.0


def test_large_photo_landmarks_are_mapped_back(
    astronaut: Image.Image, detector: DlibDetector
) -> None:
    big = astronaut.resize((2048, 2048), Image.Resampling.LANCZOS)  # 4.2 Mpx > 2 Mpx budget
    small_face = detect_faces(astronaut, detector)[0]
    big_face = detect_faces(big, detector)[0]
    scaled = (small_face.eye_centres + 0.5) * 4 - 0.5
    assert np.abs(big_face.eye_centres - scaled).max() < 6.0  # 1.5 px at the original scale
    aligned = align_face(big, big_face, 256)
    assert np.abs(_eyes(aligned.landmarks) - ffhq_eye_template(256)).max() < 2.0


# ------------------------------------------------------------------------------------------
# Awkward inputs (acceptance 2)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _variant(astronaut: Image.Image, kind: str) -> bytes:
    """The astronaut photo encoded the awkward way ``kind`` says."""
    if kind == "grayscale":
        return _encode(astronaut.convert("L"), "PNG")
    if kind == "rgba":
        rgba = astronaut.convert("RGBA")
        alpha = Image.new("L", astronaut.size, 0)
        alpha.paste(255, (60, 0, 452, 512))  # transparent margins left and right
        rgba.putalpha(alpha)
        return _encode(rgba, "PNG")
    if kind == "cmyk":
        return _encode(astronaut.convert("CMYK"), "JPEG", quality=95)
    if kind == "16-bit":
        wide = np.asarray(astronaut.convert("L"), dtype=np.uint16) * 257
        return _encode(Image.fromarray(wide), "PNG")
    if kind == "palette":
        return _encode(astronaut.quantize(256), "PNG")
    if kind == "animated":
        frames = [astronaut.quantize(256), Image.new("RGB", astronaut.size).quantize(2)]
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
        return buffer.getvalue()
    if kind == "exif-rotated":
        exif = Image.Exif()
        exif[0x0112] = 8  # "rotate 90° counter-clockwise to view"
        rotated = astronaut.transpose(Image.Transpose.ROTATE_270)
        return _encode(rotated, "JPEG", quality=95, exif=exif.tobytes())
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "variant", ["grayscale", "rgba", "cmyk", "16-bit", "palette", "animated", "exif-rotated"]
)
def test_awkward_formats_still_find_the_face(
    astronaut: Image.Image, detector: DlibDetector, variant: str
) -> None:
    faces = detect_faces(_variant(astronaut, variant), detector)
    assert faces[0].image_size == (512, 512)
    assert _box_contains(faces[0], ASTRONAUT_FACE_CENTRE)
    left_eye, right_eye = faces[0].eye_centres
    assert abs(left_eye[1] - right_eye[1]) < 8 and right_eye[0] - left_eye[0] > 30  # upright


def test_bad_inputs_are_refused_with_their_message(detector: DlibDetector, tmp_path: Path) -> None:
    with pytest.raises(ImageTooLarge, match=r"12000×12000 = 144 Mpx, over the 50 Mpx limit"):
        detect_faces(_png_header_only(12000, 12000), detector)
    text = tmp_path / "cv.pdf"
    text.write_bytes(b"%PDF-1.4 not an image")
    with pytest.raises(UnreadableImage, match=r"^cv.pdf is not an image Pillow can read"):
        detect_faces(text, detector)


def test_face_at_the_border_is_padded_not_cut(
    astronaut: Image.Image, detector: DlibDetector
) -> None:
    photo = astronaut.crop((190, 40, 512, 400))  # the face now touches the left edge
    face = detect_faces(photo, detector)[0]
    aligned = align_face(photo, face, 256)
    _save(aligned.image, "border_face_256.png")
    assert aligned.quad[:, 0].min() < 0 and aligned.edge_band > 0
    assert np.abs(_eyes(aligned.landmarks) - ffhq_eye_template(256)).max() < 2.0
    left_strip = np.asarray(aligned.image)[:, :30]
    assert left_strip.mean() > 40  # padded with blurred picture, not black
    black = np.asarray(align_face(photo, face, 256, pad_borders=False).image)[:, :30]
    assert black.mean() < 5


# ------------------------------------------------------------------------------------------
# Paste-back (acceptance 3)


def _round_trip(photo: Image.Image, aligned: AlignedFace) -> tuple[float, np.ndarray]:
    restored = paste_back(photo, aligned, aligned.image)
    mask = np.asarray(paste_mask(aligned))
    difference = np.abs(np.asarray(restored, float) - np.asarray(photo, float)).mean(axis=2)
    np.testing.assert_array_equal(np.asarray(restored)[mask == 0], np.asarray(photo)[mask == 0])
    return float(difference[mask > 0].mean()), mask


@pytest.mark.parametrize(
    ("photo_name", "size"), [("astronaut", 256), ("grace", 512), ("border", 256)]
)
def test_round_trip_restores_the_photo(
    request: pytest.FixtureRequest, detector: DlibDetector, photo_name: str, size: int
) -> None:
    if photo_name == "border":
        photo = request.getfixturevalue("astronaut").crop((190, 40, 512, 400))
    else:
        photo = request.getfixturevalue(photo_name)
    aligned = align_face(photo, detect_faces(photo, detector)[0], size)
    mean_difference, mask = _round_trip(photo, aligned)
    assert (mask > 0).sum() > 10_000
    assert mean_difference < 2.0


def test_round_trip_through_a_smaller_crop_loses_only_detail(
    grace: Image.Image, detector: DlibDetector
) -> None:
    # Grace's face spans 327 photo px; a 256 crop cannot hold all its film grain.
    aligned = align_face(grace, detect_faces(grace, detector)[0], 256)
    mean_difference, _ = _round_trip(grace, aligned)
    assert mean_difference < 4.0


def test_edited_crop_lands_inside_the_mask_only(
    astronaut: Image.Image, detector: DlibDetector
) -> None:
    aligned = align_face(astronaut, detect_faces(astronaut, detector)[0], 256)
    edited = Image.eval(aligned.image, lambda v: 255 - v).resize((128, 128))  # other model size
    result = np.asarray(paste_back(astronaut, aligned, edited, feather=0.05), dtype=float)
    _save(Image.fromarray(result.astype(np.uint8)), "astronaut_pasted_inverted.png")
    mask = np.asarray(paste_mask(aligned, feather=0.05))
    photo = np.asarray(astronaut, dtype=float)
    np.testing.assert_array_equal(result[mask == 0], photo[mask == 0])
    inside = mask == 255
    # Inverted, then blurred by the 128 px round trip: close to 255 - photo on average.
    assert np.abs(result[inside] - (255 - photo[inside])).mean() < 12
    with pytest.raises(ValueError, match="square"):
        paste_back(astronaut, aligned, edited.resize((128, 100)))
    with pytest.raises(ValueError, match="pass the same photo"):
        paste_back(astronaut.crop((0, 0, 500, 500)), aligned, edited)
    with pytest.raises(ValueError, match="feather"):
        paste_back(astronaut, aligned, edited, feather=0.8)


def test_hard_mask_covers_exactly_the_crop_square(
    astronaut: Image.Image, detector: DlibDetector
) -> None:
    aligned = align_face(astronaut, detect_faces(astronaut, detector)[0], 256)
    mask = np.asarray(paste_mask(aligned, feather=0.0)) > 0
    side = np.linalg.norm(aligned.quad[3] - aligned.quad[0])
    assert abs(mask.sum() - side**2) < 4 * side  # area of the square, up to its edge pixels


# ------------------------------------------------------------------------------------------
# Working resolution (FFHQ used 4096)


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 256, 1024])
def test_bounded_working_size_matches_ffhq_4096(
    grace: Image.Image, two_faces: Image.Image, detector: DlibDetector, size: int
) -> None:
    big = two_faces.resize((1902, 1024), Image.Resampling.LANCZOS)  # the ~2 Mpx case
    for photo in (grace, big):
        face = detect_faces(photo, detector)[0]
        fast = np.asarray(align_face(photo, face, size).image, dtype=float)
        reference = np.asarray(align_face(photo, face, size, working_size=4096).image, dtype=float)
        assert np.abs(fast - reference).mean() < 0.5


# ------------------------------------------------------------------------------------------
# Backend choice and face-alignment offline (acceptance 4)


def test_make_detector_by_name_and_errors() -> None:
    detector = make_detector("dlib")
    assert detector.name == "dlib" and "requested" in detector.reason
    with pytest.raises(ValueError, match="choose one of auto, face_alignment, dlib"):
        make_detector("mediapipe")


def test_auto_falls_back_to_dlib_naming_the_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    assert fan_weights_dir() == folder
    with caplog.at_level(logging.DEBUG, logger="diffae_app.align"):
        detector = make_detector("auto")
    assert detector.name == "dlib"
    assert "\n" not in detector.reason
    for needed in (*FAN_WEIGHT_FILES, str(folder), "dlib"):
        assert needed in detector.reason
    # dlib is the expected offline default: a debug note, never a warning (issue 14, bug 9).
    fallback = [r for r in caplog.records if r.getMessage() == detector.reason]
    assert [r.levelno for r in fallback] == [logging.DEBUG]
    with pytest.raises(DetectorUnavailable, match=FAN_WEIGHT_FILES[1].replace(".", r"\.")):
        make_detector("face_alignment")


def test_download_is_opt_in_and_its_failure_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error

    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    requested: list[str] = []

    def offline(url: str, destination: str, **kwargs: object) -> None:
        requested.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure\nin name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert make_detector("auto").name == "dlib" and requested == []  # never without consent
    detector = make_detector("auto", allow_download=True)
    assert detector.name == "dlib"
    assert requested == ["https://www.adrianbulat.com/downloads/python-fan/" + FAN_WEIGHT_FILES[0]]
    assert "download of s3fd-619a316812.pth failed" in detector.reason
    assert "\n" not in detector.reason and str(tmp_path / "hub" / "checkpoints") in detector.reason

    def online(url: str, destination: str, **kwargs: object) -> None:
        requested.append(url)
        # Every download is checked against the sha256 prefix in its file name.
        assert kwargs["hash_prefix"] == url.rsplit("-", 1)[1].split(".", 1)[0]
        Path(destination).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", online)
    # These stand-in bytes cannot match the published hashes (test_detector_weights.py tests
    # the check itself); here only the download flow is under test.
    monkeypatch.setattr(fan_weights, "check_fan_weights", lambda path: None)
    requested.clear()
    fan = make_detector("face_alignment", allow_download=True)
    assert fan.name == "face_alignment"
    assert [url.rsplit("/", 1)[1] for url in requested] == list(FAN_WEIGHT_FILES)
    assert make_detector("auto").name == "face_alignment"  # the files are now in place


def _write_fake_fan_weights(folder: Path) -> None:
    """Weight files with face-alignment's exact names and state-dict layout, random values."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    def random_like(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        fake = {}
        for key, value in state.items():
            if not value.dtype.is_floating_point:
                fake[key] = torch.zeros(value.shape, dtype=value.dtype)
            elif key.endswith("running_var"):  # must stay positive or BatchNorm yields NaN
                fake[key] = torch.rand(value.shape, generator=generator) + 0.5
            else:
                fake[key] = torch.randn(value.shape, generator=generator) * 0.01
        return fake

    with torch.device("meta"):  # shapes only; no time spent initialising real weights
        detector_state, landmark_state = s3fd().state_dict(), FAN(4).state_dict()
    folder.mkdir(parents=True)
    # face-alignment reads both with torch.load(weights_only=True) + load_state_dict(strict).
    torch.save(random_like(detector_state), folder / FAN_WEIGHT_FILES[0])
    torch.save(random_like(landmark_state), folder / FAN_WEIGHT_FILES[1])


@pytest.mark.slow
def test_fan_backend_loads_weights_from_torch_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from face_alignment.api import models_urls
    from face_alignment.detection.sfd.sfd_detector import models_urls as detector_urls

    # Our file names are the ones the installed face-alignment would download.
    assert detector_urls["s3fd"].endswith("/" + FAN_WEIGHT_FILES[0])
    assert models_urls["2DFAN-4"].endswith("/" + FAN_WEIGHT_FILES[1])

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _write_fake_fan_weights(tmp_path / "hub" / "checkpoints")
    # Random weights cannot match the published sha256 (the check has its own tests in
    # test_detector_weights.py); here the loading path is under test.
    monkeypatch.setattr(fan_weights, "check_fan_weights", lambda path: None)
    detector = make_detector("auto")
    assert detector.name == "face_alignment"
    assert str(tmp_path / "hub" / "checkpoints") in detector.reason

    # Random weights give garbage, but the whole path runs: S3FD boxes, FAN heatmaps, points.
    # (The first landmark call also pays numba's one-off compilation, ~20 s on 2 cores.)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    detections = detector.detect(noise)
    assert detections and all(np.isfinite(d.box).all() for d in detections)
    (face,) = detect_faces(noise, detector, max_detection_pixels=64 * 64, max_faces=1)
    assert face.backend == "face_alignment"
    assert face.landmarks.shape == (68, 2) and np.isfinite(face.landmarks).all()

"""Face detection, FFHQ alignment of real photos, and exact paste-back.

DiffAE's FFHQ models only understand faces framed the way FFHQ was framed (Karras et al.,
"A Style-Based Generator Architecture for GANs", 2019; the recipe is in the FFHQ dataset's
``download_ffhq.py``, ``recreate_aligned_images``): the crop is an oriented square derived
from the eye centres and mouth corners of 68 iBUG 300-W landmarks. This
module takes a user's photo to that crop and back:

1. :func:`make_detector` picks a landmark backend (face-alignment's FAN when its weights are on
   disk, otherwise dlib, which installs from the package registries alone) and says why.
2. :func:`detect_faces` finds every face, best first, with 68 landmarks in photo pixels.
3. :func:`align_face` renders the FFHQ crop at any size and returns the exact transform.
4. :func:`paste_back` warps an edited crop into the full-resolution photo under a feathered mask;
   every pixel outside the mask is returned unchanged.

Coordinates: "pixel-centre coordinates" put the centre of pixel ``(column i, row j)`` at
``(x, y) = (i, j)``; landmarks, boxes, quads and the 3×3 transforms all use them. (PIL's
transforms use edge coordinates, where that centre is at ``(i + 0.5, j + 0.5)``; the conversion
happens inside this module only.)

Licence note: both 68-point models (dlib's and FAN) were trained on iBUG 300-W data, whose
licence excludes commercial use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageFilter

from .imaging import DEFAULT_MAX_PIXELS, ImageSource, load_image

__all__ = [
    "DETECTOR_LABELS",
    "DETECTOR_NAMES",
    "FAN_WEIGHT_FILES",
    "FAN_WEIGHTS_URL",
    "AlignedFace",
    "Detection",
    "DetectorUnavailable",
    "DlibDetector",
    "Face",
    "FaceTooSmall",
    "FanDetector",
    "LandmarkDetector",
    "NoFaceFound",
    "align_face",
    "check_fan_weights",
    "detect_faces",
    "fan_hash_prefix",
    "fan_weights_dir",
    "ffhq_eye_template",
    "ffhq_mouth_template",
    "ffhq_quad",
    "make_detector",
    "paste_back",
    "paste_mask",
]

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]

#: Names accepted by :func:`make_detector`.
DETECTOR_NAMES = ("auto", "face_alignment", "dlib")

#: Files face-alignment 1.5 looks for in ``$TORCH_HOME/hub/checkpoints`` (the S3FD detector and
#: the 2D FAN-4 landmark network); without them it would try to download them.
FAN_WEIGHT_FILES = ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar")
#: Where those files are published.
FAN_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/"

#: How each backend is named to users (the aligned-face caption says which one ran).
DETECTOR_LABELS = {
    "dlib": "dlib HOG + 68-point landmarks",
    "face_alignment": "face-alignment FAN (S3FD + 2D-FAN-4)",
}

# Files read with this many bytes per chunk while hashing (~90 MB each).
_HASH_CHUNK = 1 << 20

NUM_LANDMARKS = 68
# Index ranges of the iBUG 68-point convention shared by dlib and FAN. "Left" means the left of
# the image (the subject's right eye).
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_MOUTH_LEFT_CORNER = 48
_MOUTH_RIGHT_CORNER = 54

# Detection runs on a resized copy of the photo holding about the detector's preferred number
# of pixels: large photos are reduced (detection is the slow step), small ones enlarged up to
# this factor (HOG misses faces under ~80 px).
_MAX_DETECTION_UPSCALE = 2.0
# When that finds nothing, one more pass at 4x the pixels (and up to 4x enlargement) looks for
# small faces; it costs time only when the first pass failed.
_RETRY_PIXEL_FACTOR = 4
_RETRY_MAX_UPSCALE = 4.0
# A detection counts fully towards the ranking only if its score is at least this fraction of
# the best score in the photo; weaker ones (a face printed on a mission patch, a knot in the
# wood) sink below real faces even when they are larger.
_CONFIDENT_FRACTION = 0.5

# Paste-back samples the edited crop bicubically at up to this many crop pixels per photo pixel;
# a sharper crop is first reduced to that. Bicubic starts to alias beyond ~2, while reducing all
# the way to 1 blurs twice (round trip of Grace Hopper at 512: 2.1 grey levels vs 1.5 at 2).
_PASTE_MAX_ZOOM = 2.0

_MIN_OUTPUT_SIZE = 16
_MAX_OUTPUT_SIZE = 4096
# FFHQ resampled every crop at 4096 px, then reduced it. At most 4 samples per output pixel and
# per source pixel give the same crop within ~0.3 grey levels on average (see tests) at a small
# fraction of the cost.
_WORKING_SUPERSAMPLING = 4
_FFHQ_WORKING_SIZE = 4096


# --------------------------------------------------------------------------------------------
# Errors


class NoFaceFound(ValueError):
    """The detector found no face in the image."""


class FaceTooSmall(ValueError):
    """The face is too small in the photo to give a usable aligned crop."""


class DetectorUnavailable(RuntimeError):
    """A landmark backend cannot be used here (package or weight files missing)."""


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Detection:
    """One face box from a detector, in the coordinates of the image it was run on.

    Attributes:
        box: ``(left, top, right, bottom)`` in pixel-centre coordinates.
        score: the detector's confidence; comparable only within one backend (dlib: SVM margin,
            typically 0-3; face-alignment's S3FD: probability in [0, 1]).
    """

    box: Box
    score: float


@dataclass(frozen=True, eq=False)
class Face:
    """A detected face in the original photo.

    Attributes:
        box: ``(left, top, right, bottom)`` in photo pixels (pixel-centre coordinates).
        landmarks: ``float64`` array ``(68, 2)`` of ``(x, y)`` in photo pixels, iBUG 68-point
            order; read-only.
        score: detector confidence (see :class:`Detection`).
        backend: name of the detector that produced it (``"dlib"`` or ``"face_alignment"``).
        image_size: ``(width, height)`` of the upright photo it was found in.
    """

    box: Box
    landmarks: np.ndarray
    score: float
    backend: str
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        landmarks = np.array(self.landmarks, dtype=np.float64)
        if landmarks.shape != (NUM_LANDMARKS, 2) or not np.all(np.isfinite(landmarks)):
            raise ValueError(
                f"landmarks must be a finite ({NUM_LANDMARKS}, 2) array, got shape "
                f"{landmarks.shape}"
            )
        landmarks.flags.writeable = False
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))

    @property
    def eye_centres(self) -> np.ndarray:
        """``(2, 2)``: centres of the image-left and image-right eye, photo pixels."""
        return np.stack([self.landmarks[_LEFT_EYE].mean(0), self.landmarks[_RIGHT_EYE].mean(0)])

    @property
    def size(self) -> float:
        """Side of the square the FFHQ crop takes in the photo, in photo pixels."""
        quad = ffhq_quad(self.landmarks)
        return float(np.linalg.norm(quad[3] - quad[0]))


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """An FFHQ-aligned crop and everything needed to put an edited version back.

    Attributes:
        image: the aligned crop, RGB, ``output_size`` × ``output_size``.
        landmarks: ``(68, 2)`` landmarks in crop pixels (pixel-centre coordinates).
        forward: ``(3, 3)`` affine matrix mapping photo pixel-centre coordinates to crop
            pixel-centre coordinates (homogeneous column vectors ``[x, y, 1]``).
        inverse: ``(3, 3)`` inverse of ``forward`` (crop -> photo).
        output_size: side of the crop in pixels.
        quad: ``(4, 2)`` photo coordinates of the crop's outer corners: top-left, bottom-left,
            bottom-right, top-right (the order of FFHQ's quad).
        source_size: ``(width, height)`` of the upright photo.
        face: the detection this crop was made from.
        source_box: ``(left, top, right, bottom)`` photo *edge* coordinates of the region that
            was read to render the crop.
        edge_band: width in photo pixels, measured inward from the edges of ``source_box``,
            over which FFHQ's border padding blurred real pixels; 0 when the face did not reach
            the photo border. :func:`paste_back` fades out over this band so no blur is pasted.
    """

    image: Image.Image
    landmarks: np.ndarray
    forward: np.ndarray
    inverse: np.ndarray
    output_size: int
    quad: np.ndarray
    source_size: tuple[int, int]
    face: Face
    source_box: tuple[int, int, int, int]
    edge_band: float = 0.0

    def __post_init__(self) -> None:
        for name in ("landmarks", "forward", "inverse", "quad"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.flags.writeable = False
            object.__setattr__(self, name, array)


# --------------------------------------------------------------------------------------------
# FFHQ geometry


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square for 68 landmarks.

    FFHQ's recipe: ``x`` runs along the eye line averaged with the perpendicular of the
    eye-to-mouth axis (so a crooked mouth or tilted head does not skew the crop); the half-side
    is the larger of 2× the eye distance and 1.8× the eye-to-mouth distance; the centre sits
    10% of the way from the eyes' midpoint to the mouth's.

    Args:
        landmarks: ``(68, 2)`` points in any pixel frame.

    Returns:
        ``(4, 2)`` corners in the same frame: top-left, bottom-left, bottom-right, top-right.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected ({NUM_LANDMARKS}, 2) landmarks, got {points.shape}")
    eye_left = points[_LEFT_EYE].mean(0)
    eye_right = points[_RIGHT_EYE].mean(0)
    eye_mid = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_mid = (points[_MOUTH_LEFT_CORNER] + points[_MOUTH_RIGHT_CORNER]) * 0.5
    eye_to_mouth = mouth_mid - eye_mid

    # Rotating eye_to_mouth by -90° gives a second estimate of the eye-line direction.
    x_axis = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    length = float(np.hypot(*x_axis))
    if not math.isfinite(length) or length < 1e-6:
        raise ValueError("landmarks are degenerate (eyes and mouth coincide)")
    half_side = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    x_axis = x_axis / length * half_side
    y_axis = np.array([-x_axis[1], x_axis[0]])  # x rotated +90°: points down the face.
    centre = eye_mid + eye_to_mouth * 0.1
    return np.stack(
        [
            centre - x_axis - y_axis,
            centre - x_axis + y_axis,
            centre + x_axis + y_axis,
            centre + x_axis - y_axis,
        ]
    )


def ffhq_eye_template(size: int) -> np.ndarray:
    """Where FFHQ alignment puts the eye centres in a ``size`` × ``size`` crop.

    The recipe of :func:`ffhq_quad` fixes the crop relative to the eyes and mouth; for an
    upright face whose eye-to-mouth distance is 10/9 of its eye distance (typical, and where
    FFHQ's two scale rules agree) the eyes land at x = 3/8 and 5/8 of the side and at
    y = 17/36 ≈ 0.472 of it. Real faces differ by a few percent with their proportions.

    Returns:
        ``(2, 2)`` float array: image-left then image-right eye, ``(x, y)`` in pixel-centre
        coordinates of the crop.
    """
    y = size * 17.0 / 36.0 - 0.5
    return np.array([[size * 0.375 - 0.5, y], [size * 0.625 - 0.5, y]])


def ffhq_mouth_template(size: int) -> np.ndarray:
    """Centre of the mouth (midpoint of its corners) in a ``size`` crop, for the same typical
    face as :func:`ffhq_eye_template`: ``(size / 2, 3 size / 4)`` in edge coordinates.

    Returns:
        ``(2,)`` float array ``(x, y)``, pixel-centre coordinates.
    """
    return np.array([size * 0.5 - 0.5, size * 0.75 - 0.5])


# --------------------------------------------------------------------------------------------
# Detectors


@runtime_checkable
class LandmarkDetector(Protocol):
    """A face detector plus 68-point landmark predictor.

    Implementations load their models lazily (first call) and may be shared between threads.
    Images are ``uint8`` RGB arrays ``(H, W, 3)``.
    """

    #: Backend name as reported to the user, e.g. ``"dlib"``.
    name: str
    #: One line saying why this backend is in use (fallback reasons included).
    reason: str
    #: Pixel count :func:`detect_faces` resizes photos to before calling :meth:`detect`.
    detection_pixels: int

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All face boxes in ``image``, in its pixel-centre coordinates."""
        ...

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """``(68, 2)`` landmarks of the face in ``box`` (coordinates of ``image``)."""
        ...


def _find_dlib_predictor() -> Path | None:
    # face_recognition_models imports pkg_resources, which current setuptools no longer ships;
    # locating the package without importing it avoids that.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    return None


class DlibDetector:
    """dlib's HOG face detector with its 68-point shape predictor; fully offline.

    Args:
        predictor_path: ``shape_predictor_68_face_landmarks.dat``; defaults to the copy in the
            ``face-recognition-models`` package.
        upsample: how many times dlib doubles the image before detecting (each doubling finds
            faces half as large, at ~4× the time). :func:`detect_faces` already sizes the
            image for HOG, so 0 is right there.
        detection_pixels: see :class:`LandmarkDetector`. HOG takes ~0.1 s per Mpx on one core
            and finds faces from ~80 px at that scale.
        reason: the line reported by :attr:`reason`.

    Raises:
        DetectorUnavailable: dlib or the predictor file is missing.
    """

    name = "dlib"

    def __init__(
        self,
        *,
        predictor_path: str | Path | None = None,
        upsample: int = 0,
        detection_pixels: int = 2_000_000,
        reason: str = "dlib 68-point landmarks (offline)",
    ) -> None:
        if importlib.util.find_spec("dlib") is None:
            raise DetectorUnavailable(
                "dlib is not installed; run `pip install dlib-bin face-recognition-models`"
            )
        path = Path(predictor_path) if predictor_path is not None else _find_dlib_predictor()
        if path is None or not path.is_file():
            raise DetectorUnavailable(
                "dlib's shape_predictor_68_face_landmarks.dat was not found; run "
                "`pip install face-recognition-models` or pass predictor_path"
            )
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        self.predictor_path = path
        self.upsample = upsample
        self.detection_pixels = detection_pixels
        self.reason = reason
        # dlib's detector objects keep scratch buffers: one call at a time.
        self._lock = threading.Lock()
        self._models: tuple[object, object] | None = None

    def _load(self) -> tuple[object, object]:
        if self._models is None:
            import dlib

            self._models = (
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(self.predictor_path)),
            )
        return self._models

    def detect(self, image: np.ndarray) -> list[Detection]:
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        with self._lock:
            detector, _ = self._load()
            rects, scores, _ = detector.run(pixels, self.upsample, 0.0)
        return [
            Detection((r.left(), r.top(), r.right(), r.bottom()), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        import dlib

        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        with self._lock:
            _, predictor = self._load()
            shape = predictor(pixels, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def fan_hash_prefix(name: str) -> str:
    """The sha256 prefix a torch-hub weight file name carries: ``s3fd-619a316812.pth`` ->
    ``619a316812`` (the convention ``torch.hub.download_url_to_file(hash_prefix=...)`` checks)."""
    return name.split(".", 1)[0].rsplit("-", 1)[-1]


def check_fan_weights(path: Path) -> None:
    """Refuse a weight file whose sha256 does not start with the prefix in its name.

    Raises:
        DetectorUnavailable: one line naming the file, the expected and the found prefix.
    """
    expected = fan_hash_prefix(path.name)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    found = digest.hexdigest()
    if not found.startswith(expected):
        raise DetectorUnavailable(
            f"face-alignment weight file {path} is corrupt or not the published one (sha256 "
            f"{found[: len(expected)]}..., expected {expected}...); delete it and fetch it again"
        )


def fan_weights_dir() -> Path:
    """The folder face-alignment reads its weights from: ``torch.hub.get_dir()/checkpoints``
    (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


class FanDetector:
    """face-alignment (Bulat & Tzimiropoulos' FAN, S3FD detector), 68 points.

    Refuses to construct when its weight files are missing, so face-alignment itself never
    gets the chance to download them; with ``allow_download=True`` this class fetches them
    first (and says so in one line when the network is not there). Every file's sha256 is
    checked against the prefix in its name (torch hub's convention), on download and before
    use, so a truncated or substituted file is refused. Models load at first use, with
    ``compile=False`` (compiling took minutes on CPU for no gain).

    Args:
        device: torch device for both networks.
        flip_input: also run FAN on the mirrored crop and average (about 2× the landmark time,
            slightly steadier points).
        detection_threshold: S3FD probability below which boxes are dropped.
        detection_pixels: see :class:`LandmarkDetector`; S3FD is a VGG-16 network, so keep it
            small on CPU (it finds faces down to ~15 px).
        allow_download: fetch missing weight files (~90 MB each) from :data:`FAN_WEIGHTS_URL`
            into :func:`fan_weights_dir`.
        reason: the line reported by :attr:`reason`.

    Raises:
        DetectorUnavailable: face-alignment is not installed, or a weight file is missing (and
            could not be downloaded) or fails its hash check.
    """

    name = "face_alignment"

    def __init__(
        self,
        *,
        device: str = "cpu",
        flip_input: bool = False,
        detection_threshold: float = 0.5,
        detection_pixels: int = 500_000,
        allow_download: bool = False,
        reason: str | None = None,
    ) -> None:
        if importlib.util.find_spec("face_alignment") is None:
            raise DetectorUnavailable(
                "face-alignment is not installed; run `pip install face-alignment`"
            )
        folder = fan_weights_dir()
        missing = [name for name in FAN_WEIGHT_FILES if not (folder / name).is_file()]
        if missing and allow_download:
            _download_fan_weights(folder, missing)
            missing = []
        if missing:
            raise DetectorUnavailable(
                f"face-alignment weights missing: put {' and '.join(missing)} (from "
                f"{FAN_WEIGHTS_URL}) in {folder} or point TORCH_HOME elsewhere"
            )
        for name in FAN_WEIGHT_FILES:
            check_fan_weights(folder / name)
        self.weights_dir = folder
        self.device = device
        self.flip_input = flip_input
        self.detection_threshold = detection_threshold
        self.detection_pixels = detection_pixels
        self.reason = reason or f"face-alignment FAN weights found in {folder}"
        self._lock = threading.Lock()
        self._model: object | None = None

    def _load(self) -> object:
        if self._model is None:
            import face_alignment  # Heavy (torch, OpenCV, numba): only on first use.

            self._model = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=self.device,
                flip_input=self.flip_input,
                face_detector="sfd",
                face_detector_kwargs={
                    # An explicit path makes S3FD load the local file instead of its URL.
                    "path_to_detector": str(self.weights_dir / FAN_WEIGHT_FILES[0]),
                    "filter_threshold": self.detection_threshold,
                },
                compile=False,
            )
        return self._model

    def detect(self, image: np.ndarray) -> list[Detection]:
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        with self._lock:
            model = self._load()
            boxes = model.face_detector.detect_from_image(pixels.copy())
        return [
            Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(b[4]))
            for b in boxes
        ]

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        with self._lock:
            model = self._load()
            points = model.get_landmarks_from_image(
                pixels, detected_faces=[np.array([*box, 1.0], dtype=np.float64)]
            )
        return np.asarray(points[0], dtype=np.float64)[:, :2]


def _download_fan_weights(folder: Path, names: Sequence[str]) -> None:
    import torch.hub

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            # Writes to a temporary file and renames it at the end, only when its sha256
            # starts with the prefix in the file name: no half or wrong file is left behind.
            torch.hub.download_url_to_file(
                FAN_WEIGHTS_URL + name,
                str(folder / name),
                hash_prefix=fan_hash_prefix(name),
                progress=False,
            )
        except (OSError, ValueError, RuntimeError) as error:  # URLError/HTTPError are OSErrors
            detail = " ".join(str(error).split())  # the report must stay on one line
            raise DetectorUnavailable(
                f"face-alignment weights missing and the download of {name} failed ({detail}); "
                f"put {' and '.join(names)} (from {FAN_WEIGHTS_URL}) in {folder}"
            ) from error


def make_detector(
    name: str = "auto", *, device: str = "cpu", allow_download: bool = False
) -> LandmarkDetector:
    """Create the landmark backend ``name`` and report the choice.

    Args:
        name: ``"auto"`` (face-alignment when its weights are on disk, else dlib),
            ``"face_alignment"`` or ``"dlib"``.
        device: torch device for face-alignment.
        allow_download: let face-alignment fetch missing weights first (never by default).

    Returns:
        A detector whose ``name`` says which backend it is and whose ``reason`` is one line
        (for ``"auto"`` falling back to dlib: which files are missing and where they go). The
        fallback is also logged as a warning.

    Raises:
        ValueError: unknown ``name``.
        DetectorUnavailable: the requested backend (or, for ``"auto"``, every backend) cannot run.
    """
    if name not in DETECTOR_NAMES:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    if name == "dlib":
        return DlibDetector(reason="dlib 68-point landmarks (requested)")
    if name == "face_alignment":
        return FanDetector(
            device=device, allow_download=allow_download, reason="face-alignment FAN (requested)"
        )
    try:
        return FanDetector(device=device, allow_download=allow_download)
    except DetectorUnavailable as error:
        fan_problem = str(error)
    try:
        detector = DlibDetector(reason=f"{fan_problem}; using dlib 68-point landmarks instead")
    except DetectorUnavailable as error:
        raise DetectorUnavailable(f"no landmark backend can run: {fan_problem}; {error}") from error
    logger.warning(detector.reason)
    return detector


# --------------------------------------------------------------------------------------------
# Detection


def detect_faces(
    image: ImageSource,
    detector: LandmarkDetector,
    *,
    max_detection_pixels: int | None = None,
    max_faces: int = 20,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Face]:
    """Find every face in ``image``, best first.

    The detector (the slow part) sees a copy resized to about ``max_detection_pixels`` (large
    photos reduced, small ones enlarged up to 2×); landmarks are then predicted on the
    full-resolution photo, so their precision does not suffer. If that finds nothing, one more
    pass at 4× the pixels looks for small faces.

    Faces are ranked by size, except that detections scoring under half of the best score
    rank below all confident ones (dlib "finds" faces in patches and textures with low scores).

    Args:
        image: anything :func:`~diffae_app.imaging.load_image` accepts; EXIF orientation is
            applied, so coordinates refer to the upright photo.
        detector: from :func:`make_detector`.
        max_detection_pixels: pixel budget of the detection pass; default
            ``detector.detection_pixels``.
        max_faces: landmarks are predicted for at most this many of the best detections
            (FAN takes seconds per face on a CPU).
        max_pixels: decompression-bomb limit passed to ``load_image``.

    Returns:
        Non-empty list of :class:`Face`, best first.

    Raises:
        NoFaceFound: no face in the photo.
        ImageError: the input is not a usable image.
    """
    budget = detector.detection_pixels if max_detection_pixels is None else max_detection_pixels
    if max_faces < 1:
        raise ValueError(f"max_faces must be at least 1, got {max_faces}")
    if budget < 4096:
        raise ValueError(f"max_detection_pixels must be at least 4096, got {budget}")
    photo = load_image(image, max_pixels=max_pixels)
    pixels = np.asarray(photo)
    width, height = photo.size

    scale = min(_MAX_DETECTION_UPSCALE, math.sqrt(budget / (width * height)))
    detections, scale = _detect_resized(photo, detector, scale)
    if not detections:
        retry = min(_RETRY_MAX_UPSCALE, math.sqrt(_RETRY_PIXEL_FACTOR * budget / (width * height)))
        if retry > scale * 1.25:
            detections, scale = _detect_resized(photo, detector, retry)
    if not detections:
        raise NoFaceFound(
            f"no face found in the {width}×{height} photo (detector: {detector.name}); use a "
            "photo where the face is clearly visible, roughly frontal and not tiny"
        )

    faces = []
    for detection in _rank(detections)[:max_faces]:
        # Resizing scales edge coordinates; pixel-centre coordinates are offset by half a pixel.
        box = tuple((v + 0.5) / scale - 0.5 for v in detection.box)
        points = detector.landmarks(pixels, box)
        faces.append(Face(box, points, detection.score, detector.name, (width, height)))
    return faces


def _detect_resized(
    photo: Image.Image, detector: LandmarkDetector, scale: float
) -> tuple[list[Detection], float]:
    """Run the detector on ``photo`` resized by about ``scale``; returns the exact scale used."""
    width, height = photo.size
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if abs(size[0] - width) <= 1 and abs(size[1] - height) <= 1:
        return detector.detect(np.asarray(photo)), 1.0
    # reducing_gap: a fast integer pre-reduction, then an exact filter; plenty for detection.
    resized = photo.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    # The factor actually applied along x; along y it differs by under a pixel over the photo.
    return detector.detect(np.asarray(resized)), size[0] / width


def _rank(detections: Sequence[Detection]) -> list[Detection]:
    """Largest first, but every confident detection before any weak one."""
    best = max(detection.score for detection in detections)
    # Scores are only comparable as fractions of a positive best; otherwise rank by size alone.
    threshold = best * _CONFIDENT_FRACTION if best > 0 else -math.inf

    def key(detection: Detection) -> tuple[bool, float]:
        confident = detection.score >= threshold
        left, top, right, bottom = detection.box
        return (not confident, -(right - left) * (bottom - top))

    return sorted(detections, key=key)


# --------------------------------------------------------------------------------------------
# Alignment


def align_face(
    image: ImageSource,
    face: Face,
    output_size: int = 256,
    *,
    working_size: int | None = None,
    pad_borders: bool = True,
    min_face_size: float = 48.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> AlignedFace:
    """Render the FFHQ-aligned crop of ``face``.

    FFHQ's recipe, step by step: the oriented square of :func:`ffhq_quad`; very large faces are
    first reduced by an integer factor (keeping ≥ 2 photo pixels per output pixel); the square
    plus a 10% border is cut out; where it leaves the photo, the photo is reflect-padded, the
    padding blurred and faded to the median colour so no hard edge or mirrored face shows; the
    square is resampled bilinearly to a working size and reduced to ``output_size`` with a
    Lanczos filter. FFHQ's working size was always 4096; the default here stops at 4 samples
    per output pixel and per source pixel, which differs by under half a grey level on average
    and is up to ~20× faster.

    Args:
        image: the photo the face was detected in (same orientation and size).
        face: from :func:`detect_faces` (or built from your own 68 landmarks).
        output_size: side of the crop, 16-4096 (FFHQ models use 64-1024).
        working_size: resampling resolution; default ``min(4096, 4 × output_size,
            max(output_size, 4 × face size after pre-reduction))``; 4096 reproduces FFHQ.
        pad_borders: FFHQ's reflect/blur/fade padding where the crop leaves the photo; when
            False, those areas are black.
        min_face_size: smallest accepted crop side in photo pixels (see :attr:`Face.size`).
        max_pixels: decompression-bomb limit passed to ``load_image``.

    Returns:
        The crop, its landmarks and the exact photo<->crop transforms.

    Raises:
        FaceTooSmall: the crop would cover fewer than ``min_face_size`` photo pixels.
        ValueError: bad sizes, or ``image`` is not the photo ``face`` came from.
    """
    if not _MIN_OUTPUT_SIZE <= output_size <= _MAX_OUTPUT_SIZE:
        raise ValueError(
            f"output_size must be between {_MIN_OUTPUT_SIZE} and {_MAX_OUTPUT_SIZE}, "
            f"got {output_size}"
        )
    if working_size is not None and working_size < output_size:
        raise ValueError(
            f"working_size ({working_size}) must be at least output_size ({output_size})"
        )
    photo = load_image(image, max_pixels=max_pixels)
    if photo.size != face.image_size:
        raise ValueError(
            f"the face was found in a {face.image_size[0]}×{face.image_size[1]} image but "
            f"align_face got {photo.size[0]}×{photo.size[1]}; pass the same photo"
        )

    quad = ffhq_quad(face.landmarks)
    side = float(np.linalg.norm(quad[3] - quad[0]))
    if side < min_face_size:
        raise FaceTooSmall(
            f"the face is only {side:.0f} px across in the photo (at least {min_face_size:.0f} "
            "needed); use a larger or closer photo of the face"
        )

    crop, source_box, edge_band = _render(photo, quad, output_size, working_size, pad_borders)
    inverse = _crop_to_photo(quad, output_size)
    forward = np.linalg.inv(inverse)
    return AlignedFace(
        image=crop,
        landmarks=_apply(forward, face.landmarks),
        forward=forward,
        inverse=inverse,
        output_size=output_size,
        quad=quad,
        source_size=photo.size,
        face=face,
        source_box=source_box,
        edge_band=edge_band,
    )


def _crop_to_photo(quad: np.ndarray, size: int) -> np.ndarray:
    """Affine crop -> photo in pixel-centre coordinates.

    In edge coordinates the crop ``[0, size]²`` maps onto the quad: corner ``(0, 0)`` to
    ``quad[0] + 0.5``, ``x`` along ``quad[3] - quad[0]``, ``y`` along ``quad[1] - quad[0]``.
    Converting both sides to pixel-centre coordinates leaves a half-pixel term.
    """
    along_x = (quad[3] - quad[0]) / size
    along_y = (quad[1] - quad[0]) / size
    origin = quad[0] + 0.5 * (along_x + along_y)
    return np.array(
        [[along_x[0], along_y[0], origin[0]], [along_x[1], along_y[1], origin[1]], [0.0, 0.0, 1.0]]
    )


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _render(
    photo: Image.Image,
    quad: np.ndarray,
    output_size: int,
    working_size: int | None,
    pad_borders: bool,
) -> tuple[Image.Image, tuple[int, int, int, int], float]:
    """FFHQ rendering. Returns the crop, the photo region read, and the blurred edge band."""
    width, height = photo.size
    corners = quad + 0.5  # edge coordinates from here on
    side = float(np.linalg.norm(quad[3] - quad[0]))

    # 1. Integer pre-reduction of very large faces, and the region to read (square + border).
    shrink = max(1, int(math.floor(side / output_size * 0.5)))
    border = max(round(side * 0.1), 3)
    left = max(math.floor(corners[:, 0].min()) - border, 0)
    top = max(math.floor(corners[:, 1].min()) - border, 0)
    right = min(math.ceil(corners[:, 0].max()) + border, width)
    bottom = min(math.ceil(corners[:, 1].max()) + border, height)
    if right <= left or bottom <= top:
        raise ValueError("the face's crop lies entirely outside the photo")
    source_box = (left, top, right, bottom)
    if shrink > 1:
        size = (max(1, round((right - left) / shrink)), max(1, round((bottom - top) / shrink)))
        region = photo.resize(size, Image.Resampling.LANCZOS, box=source_box)
    else:
        region = photo.crop(source_box)
    scale_x = region.width / (right - left)
    scale_y = region.height / (bottom - top)
    # photo edge coordinates -> region edge coordinates
    to_region = np.array(
        [[scale_x, 0.0, -left * scale_x], [0.0, scale_y, -top * scale_y], [0.0, 0.0, 1.0]]
    )

    # 2. Pad where the square (plus border) leaves the photo.
    edge_band = 0.0
    if pad_borders:
        inner = _apply(to_region, corners)
        region_side = side * scale_x
        region_border = border * scale_x
        pads = np.array(
            [
                -math.floor(inner[:, 0].min()) + region_border,
                -math.floor(inner[:, 1].min()) + region_border,
                math.ceil(inner[:, 0].max()) - region.width + region_border,
                math.ceil(inner[:, 1].max()) - region.height + region_border,
            ]
        ).clip(min=0)
        # FFHQ pads as soon as the square comes within 4 px of the photo edge.
        if pads.max() > region_border - 4:
            pads = np.maximum(pads, round(region_side * 0.3)).clip(min=1).astype(int)
            region = _pad_blur_fade(region, pads, sigma=region_side * 0.02)
            to_region = np.array([[1, 0, pads[0]], [0, 1, pads[1]], [0, 0, 1]]) @ to_region
            # The blur reaches pad/3 into real pixels (see _pad_blur_fade); in photo pixels:
            edge_band = float(pads.max()) / 3.0 / scale_x

    # 3. Resample the square to the working size, then reduce with a Lanczos filter. Bilinear
    # sampling must never *reduce* (it would alias), and beyond ~4 samples per source pixel or
    # per output pixel nothing changes visibly; 4096 was FFHQ's fixed choice.
    if working_size is None:
        region_side = side * scale_x
        working_size = min(
            _FFHQ_WORKING_SIZE,
            _WORKING_SUPERSAMPLING * output_size,
            max(output_size, math.ceil(_WORKING_SUPERSAMPLING * region_side)),
        )
        working_size = max(working_size, output_size)
    along_x = (corners[3] - corners[0]) / working_size
    along_y = (corners[1] - corners[0]) / working_size
    working_to_photo = np.array(
        [
            [along_x[0], along_y[0], corners[0][0]],
            [along_x[1], along_y[1], corners[0][1]],
            [0.0, 0.0, 1.0],
        ]
    )
    working_to_region = to_region @ working_to_photo
    rendered = region.transform(
        (working_size, working_size),
        Image.Transform.AFFINE,
        tuple(working_to_region[:2].ravel()),
        resample=Image.Resampling.BILINEAR,
        fillcolor=(0, 0, 0),
    )
    if working_size != output_size:
        rendered = rendered.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return rendered, source_box, edge_band


def _pad_blur_fade(region: Image.Image, pads: np.ndarray, sigma: float) -> Image.Image:
    """FFHQ's border treatment: reflect-pad, blur towards the edges, fade to the median colour.

    ``pads`` is ``(left, top, right, bottom)``. ``ramp`` is 0 at the original edge, 1 at the
    outer edge of the padding and negative inside; the blur weight ``clip(3 ramp + 1)`` starts
    a third of the pad width *inside* the real pixels, which hides the mirror seam.
    """
    left, top, right, bottom = (int(v) for v in pads)
    padded = np.pad(np.asarray(region), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    height, width = padded.shape[:2]
    blurred = np.asarray(Image.fromarray(padded).filter(ImageFilter.GaussianBlur(max(sigma, 0.5))))
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    ramp_x = 1.0 - np.minimum(xs / left, (width - 1 - xs) / right)
    ramp_y = 1.0 - np.minimum(ys / top, (height - 1 - ys) / bottom)

    def blur_towards_edges(rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        ramp = np.maximum(ramp_y[rows, None], ramp_x[None, cols])
        values = padded[rows, cols].astype(np.float32)
        values += (blurred[rows, cols] - values) * np.clip(ramp * 3.0 + 1.0, 0.0, 1.0)[..., None]
        return values, ramp

    # FFHQ fades to the median of the blurred picture; every 4th pixel gives the same median.
    sample, _ = blur_towards_edges(slice(None, None, 4), slice(None, None, 4))
    median = np.median(sample.reshape(-1, 3), axis=0)

    # Blocks of rows keep the float32 working set small (a 1024 crop of a huge face pads to
    # ~6500² px; all at once that is over a gigabyte).
    result = np.empty_like(padded)
    for first in range(0, height, 256):
        rows = slice(first, min(first + 256, height))
        values, ramp = blur_towards_edges(rows, slice(None))
        values += (median - values) * np.clip(ramp, 0.0, 1.0)[..., None]
        result[rows] = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(result)


# --------------------------------------------------------------------------------------------
# Paste-back


def paste_mask(aligned: AlignedFace, *, feather: float = 0.1) -> Image.Image:
    """The blend mask :func:`paste_back` uses, at photo resolution.

    Returns:
        Mode ``"L"`` image of the photo's size: 255 where the edited crop replaces the photo,
        0 where the photo is kept exactly, smooth in between.
    """
    box, weights = _mask_region(aligned, feather)
    mask = Image.new("L", aligned.source_size, 0)
    if weights is not None:
        mask.paste(_weights_to_l(weights), box[:2])
    return mask


def paste_back(
    original: ImageSource,
    aligned: AlignedFace,
    edited_crop: ImageSource,
    *,
    feather: float = 0.1,
) -> Image.Image:
    """Put an edited aligned crop back into the full-resolution photo.

    The crop is warped with the exact inverse of the alignment (bicubic; pre-reduced with a
    Lanczos filter when it is much sharper than the photo region) and blended under a mask that
    fades over ``feather`` × the crop side at the crop's edges, and over the blurred band where
    the crop had to be padded at the photo border.

    Args:
        original: the photo that was aligned (same orientation and size).
        aligned: the result of :func:`align_face` for it.
        edited_crop: the edited crop; any square size (a model working at a different
            resolution is fine).
        feather: fade width as a fraction of the crop side, 0 (hard edge) to 0.5.

    Returns:
        A new RGB image, same size as ``original``; every pixel where the mask is 0 is
        bit-identical to ``original``.

    Raises:
        ValueError: wrong sizes or ``feather`` out of range.
    """
    photo = load_image(original)
    if photo.size != aligned.source_size:
        raise ValueError(
            f"the crop was aligned from a {aligned.source_size[0]}×{aligned.source_size[1]} "
            f"photo but paste_back got {photo.width}×{photo.height}; pass the same photo"
        )
    edited = load_image(edited_crop, name="the edited crop")
    if edited.width != edited.height:
        raise ValueError(f"the edited crop must be square, got {edited.width}×{edited.height}")
    box, weights = _mask_region(aligned, feather)
    if weights is None:
        return photo

    # A crop much sharper than the photo region is first reduced (Lanczos) so that bicubic
    # sampling does not alias; reducing it all the way to the photo's scale would blur twice.
    side = float(np.linalg.norm(aligned.quad[3] - aligned.quad[0]))
    if edited.width > _PASTE_MAX_ZOOM * side:
        reduced = max(8, math.ceil(_PASTE_MAX_ZOOM * side))
        edited = edited.resize((reduced, reduced), Image.Resampling.LANCZOS)

    # region edge coords -> photo edge -> photo centre -> crop centre -> crop edge -> edited edge
    shift = np.array([[1.0, 0.0, box[0] - 0.5], [0.0, 1.0, box[1] - 0.5], [0.0, 0.0, 1.0]])
    to_crop_edge = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    zoom = edited.width / aligned.output_size
    to_edited = np.diag([zoom, zoom, 1.0]) @ to_crop_edge @ aligned.forward @ shift
    region_size = (box[2] - box[0], box[3] - box[1])
    warped = edited.transform(
        region_size,
        Image.Transform.AFFINE,
        tuple(to_edited[:2].ravel()),
        resample=Image.Resampling.BICUBIC,
    )
    region = photo.crop(box)
    photo.paste(Image.composite(warped, region, _weights_to_l(weights)), box[:2])
    return photo


def _mask_region(
    aligned: AlignedFace, feather: float
) -> tuple[tuple[int, int, int, int], np.ndarray | None]:
    """Blend weights in [0, 1] over the photo box the crop covers (``None`` if it covers none)."""
    if not 0.0 <= feather <= 0.5:
        raise ValueError(f"feather must be between 0 and 0.5 (fraction of the crop), got {feather}")
    width, height = aligned.source_size
    corners = aligned.quad + 0.5
    box = (
        max(math.floor(corners[:, 0].min()), 0),
        max(math.floor(corners[:, 1].min()), 0),
        min(math.ceil(corners[:, 0].max()), width),
        min(math.ceil(corners[:, 1].max()), height),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        return box, None

    xs = np.arange(box[0], box[2], dtype=np.float64)
    ys = np.arange(box[1], box[3], dtype=np.float64)
    grid_x, grid_y = np.meshgrid(xs, ys)
    forward = aligned.forward
    crop_x = forward[0, 0] * grid_x + forward[0, 1] * grid_y + forward[0, 2]
    crop_y = forward[1, 0] * grid_x + forward[1, 1] * grid_y + forward[1, 2]
    size = aligned.output_size
    # Distance (crop pixels) from each photo pixel centre to the nearest crop edge.
    inside_x = np.minimum(crop_x + 0.5, size - 0.5 - crop_x)
    inside_y = np.minimum(crop_y + 0.5, size - 0.5 - crop_y)
    weights = _ramp(inside_x, feather * size) * _ramp(inside_y, feather * size)

    if aligned.edge_band > 0:
        left, top, right, bottom = aligned.source_box
        band = aligned.edge_band
        weights *= _ramp(np.minimum(xs + 0.5 - left, right - 0.5 - xs), band)[None, :]
        weights *= _ramp(np.minimum(ys + 0.5 - top, bottom - 0.5 - ys), band)[:, None]
    return box, weights


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """0 at distance <= 0, 1 from ``width`` on, smoothstep in between (hard step if width=0)."""
    if width <= 0:
        return (distance > 0).astype(np.float64)
    t = np.clip(distance / width, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _weights_to_l(weights: np.ndarray) -> Image.Image:
    return Image.fromarray(np.rint(weights * 255.0).astype(np.uint8))

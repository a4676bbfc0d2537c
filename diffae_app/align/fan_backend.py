"""face-alignment's FAN (Bulat & Tzimiropoulos 2017) with its S3FD face detector: the landmark
back-end used when its weights are on disk (:mod:`.fan_weights` finds and checks them)."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

from . import fan_weights
from .errors import DetectorUnavailable
from .faces import Detection
from .geometry import Box

__all__ = ["FanDetector"]


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
        detection_pixels: see :class:`~diffae_app.align.LandmarkDetector`; S3FD is a VGG-16
            network, so keep it small on CPU (it finds faces down to ~15 px).
        allow_download: fetch missing weight files (~90 MB each) from
            :data:`~diffae_app.align.FAN_WEIGHTS_URL` into
            :func:`~diffae_app.align.fan_weights_dir`.
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
        detector_file, _ = fan_weights.ready_fan_weights(allow_download=allow_download)
        self.weights_dir = detector_file.parent
        self.device = device
        self.flip_input = flip_input
        self.detection_threshold = detection_threshold
        self.detection_pixels = detection_pixels
        self.reason = reason or f"face-alignment FAN weights found in {self.weights_dir}"
        self._detector_file = detector_file
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
                    "path_to_detector": str(self._detector_file),
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

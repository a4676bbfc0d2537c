"""dlib's HOG face detector and 68-point shape predictor: the offline landmark back-end.

Both install from the package registries alone (``dlib-bin``, ``face-recognition-models``).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from .errors import DetectorUnavailable
from .faces import Detection
from .geometry import Box

__all__ = ["DlibDetector"]


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
            faces half as large, at ~4× the time). :func:`~diffae_app.align.detect_faces`
            already sizes the image for HOG, so 0 is right there.
        detection_pixels: see :class:`~diffae_app.align.LandmarkDetector`. HOG takes ~0.1 s per
            Mpx on one core and finds faces from ~80 px at that scale.
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

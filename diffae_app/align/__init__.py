"""Face detection, FFHQ alignment of real photos, and exact paste-back.

DiffAE's FFHQ models only understand faces framed the way FFHQ was framed (Karras et al.,
"A Style-Based Generator Architecture for GANs", 2019; the recipe is in the FFHQ dataset's
``download_ffhq.py``, ``recreate_aligned_images``): the crop is an oriented square derived
from the eye centres and mouth corners of 68 iBUG 300-W landmarks. This package takes a user's
photo to that crop and back:

1. :func:`make_detector` picks a landmark backend (face-alignment's FAN when its weights are on
   disk, otherwise dlib, which installs from the package registries alone) and says why.
2. :func:`detect_faces` finds every face, best first, with 68 landmarks in photo pixels.
3. :func:`align_face` renders the FFHQ crop at any size and returns the exact transform.
4. :func:`paste_back` warps an edited crop into the full-resolution photo under a feathered mask;
   every pixel outside the mask is returned unchanged.

Who owns what:

- ``detector.py``: the :class:`LandmarkDetector` interface; ``dlib_backend.py`` and
  ``fan_backend.py``: its two back-ends; ``fan_weights.py``: FAN's weight files (location,
  sha256 check, opt-in download); ``choice.py``: :func:`make_detector` and ``auto``.
- ``detect.py``: :func:`detect_faces` (resizing for the detector, ranking).
- ``geometry.py``: the FFHQ square and every transform, numbers only (numpy).
- ``crop.py``: :func:`align_face` (rendering the crop); ``pasteback.py``: :func:`paste_back`
  and its mask (pixels).
- ``faces.py``: the result records; ``errors.py``: the typed errors.

Coordinates: "pixel-centre coordinates" put the centre of pixel ``(column i, row j)`` at
``(x, y) = (i, j)``; landmarks, boxes, quads and the 3×3 transforms all use them. (PIL's
transforms use edge coordinates, where that centre is at ``(i + 0.5, j + 0.5)``; the conversion
happens inside this package only.)

Licence note: both 68-point models (dlib's and FAN) were trained on iBUG 300-W data, whose
licence excludes commercial use.
"""

from __future__ import annotations

from .choice import DETECTOR_LABELS, DETECTOR_NAMES, make_detector
from .crop import align_face
from .detect import CONFIDENT_FRACTION, detect_faces
from .detector import LandmarkDetector
from .dlib_backend import DlibDetector
from .errors import DetectorUnavailable, FaceTooSmall, NoFaceFound
from .faces import AlignedFace, Detection, Face
from .fan_backend import FanDetector
from .fan_weights import (
    FAN_WEIGHT_FILES,
    FAN_WEIGHTS_URL,
    check_fan_weights,
    fan_hash_prefix,
    fan_weights_dir,
)
from .geometry import NUM_LANDMARKS, Box, ffhq_eye_template, ffhq_mouth_template, ffhq_quad
from .pasteback import paste_back, paste_mask

__all__ = [
    "CONFIDENT_FRACTION",
    "DETECTOR_LABELS",
    "DETECTOR_NAMES",
    "FAN_WEIGHT_FILES",
    "FAN_WEIGHTS_URL",
    "NUM_LANDMARKS",
    "AlignedFace",
    "Box",
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

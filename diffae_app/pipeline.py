"""The studio facade: from a photo to an edited full-resolution photo.

    studio = Studio.load("default")                      # model loaded once, detector lazily
    session = studio.encode_photo("me.jpg", face_index=0) # detect, align, encode, invert: once
    result = studio.render(session, {"Smiling": 0.3}, locks=["Male"])   # per slider release
    result.photo.save("edited.jpg")                       # pasted back at full resolution

Encode once, edit many: :meth:`Studio.encode_photo` does the expensive work (detection,
alignment, the semantic encoder and the DDIM inversion that gives x_T) and returns a
:class:`~diffae_app.session.Session`, a small CPU-only object the caller keeps (a UI keeps one per
user). :meth:`Studio.render` only runs the decoder. The studio itself holds weights only: a
caller that wants re-uploads to be free passes its own
:class:`~diffae_app.encoding_cache.EncodingCache` (one per user, never shared).

This module is the only place that decides the device, the precision, inference mode and
random generators: every random draw comes from a CPU ``torch.Generator`` seeded by the
caller, so results do not depend on the device's generator.

Bit-exactness: renders are always done one image at a time. Convolutions are not batch-size
invariant on every backend (a face rendered in a batch of 4 differs from the same face
alone in the 5th decimal on CPU), and one at a time makes recipe replays, interpolation
endpoints and "send to Edit" samples reproduce their single renders exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from .align import (
    Face,
    LandmarkDetector,
    align_face,
    detect_faces,
    make_detector,
)
from .checkpoints import CheckpointError
from .classifier import AttributeClassifier, ClassifierError
from .diffae import PRECISIONS, DiffAE, _stored_dtypes
from .editing import (
    TARGET_LANDING,
    corrected_targets,
    edit_z_sem,
    fit_custom_attribute,
    lerp,
    merge_classifiers,
    slerp,
)
from .editing import solve_target_strengths as _solve_targets
from .encoding_cache import EncodingCache
from .imaging import ImageSource, image_to_tensor, load_image, tensor_to_image
from .paste import DEFAULT_PASTE, check_paste_mode, compose
from .precision import MIN_BF16_PSNR_DB, PrecisionChoice, fidelity_db, native_bf16
from .progress import CancelCheck, PreviewCallback, step_callback
from .reliability import EditReliability, ReliabilityError, read_edit_reliability
from .session import (
    DEFAULT_QUALITY,
    QUALITY_PRESETS,
    EditError,
    EditResult,
    EncodingError,
    FaceIndexError,
    NoAttributeClassifier,
    NoLatentDPM,
    ProgressCallback,
    QualityPreset,
    Recipe,
    RecipeError,
    Session,
    StudioError,
    custom_attribute_from_dict,
    custom_attribute_to_dict,
)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "MIN_RELATIVE_FACE_SCORE",
    "Studio",
    "choose_device",
    "fit_fingerprint",
    "grid",
    "model_fingerprint",
    "usable_faces",
    "write_gif",
    "write_strip",
]

#: Where ``Studio.load("default")`` looks for the bundled SynthFaces-64 model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "synthfaces64"

#: Faces whose detector score is below this fraction of the best face's score are not offered:
#: dlib "finds" faces in patches and textures with low scores (see align's ranking rule).
MIN_RELATIVE_FACE_SCORE = 0.5

ENCODING_FORMAT = "diffae-studio-encoding"
ENCODING_VERSION = 1

_OFFICIAL_SUFFIXES = (".ckpt", ".pt", ".pth")
# Elements sampled per tensor for the weight fingerprint: enough to tell retrained or
# fine-tuned weights apart, cheap even for the 1.3 GB FFHQ256 model.
_FINGERPRINT_SAMPLES = 256


# --------------------------------------------------------------------------- helpers


def choose_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto": CUDA if available, else Apple MPS, else CPU; otherwise the named device.

    Raises:
        StudioError: an unknown device name or one that is not available here.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise StudioError(
            f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise StudioError(f"device {device!r} requested but CUDA is not available here; use cpu")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise StudioError(f"device {device!r} requested but MPS is not available here; use cpu")
    return chosen


def model_fingerprint(model: DiffAE) -> str:
    """12 hex digits identifying the model's architecture and weights.

    Hashes the config and, for every tensor, its name, shape and ``_FINGERPRINT_SAMPLES``
    evenly strided values: reading all of a 1.3 GB model would take seconds.
    """
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    modules = [("autoencoder", model.autoencoder)]
    if model.latent_net is not None:
        modules.append(("latent_net", model.latent_net))
    for prefix, module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _FINGERPRINT_SAMPLES)
            sample = flat[::step].to("cpu", torch.float32).contiguous().numpy()
            digest.update(f"{prefix}.{name}{tuple(tensor.shape)}".encode())
            digest.update(sample.tobytes())
    return digest.hexdigest()[:12]


def fit_fingerprint(model: DiffAE) -> str:
    """12 hex digits naming the weights an attribute classifier is fitted to, equal at every
    precision (unlike :func:`model_fingerprint`, which sees bfloat16 rounding).

    Hashes the config, every tensor's name and shape, and sampled values of the tensors kept
    float32 in every precision: the latent DPM and, in the autoencoder, the normalisation
    layers and the output layer, which any retraining or fine-tuning moves. Stored in
    classifier artefacts so an app lists only the ones that fit its model.
    """
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    modules = [("autoencoder", model.autoencoder)]
    if model.latent_net is not None:
        modules.append(("latent_net", model.latent_net))
    for prefix, module in modules:
        kept = _stored_dtypes(module, torch.bfloat16)
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{prefix}.{name}{tuple(tensor.shape)}".encode())
            if prefix == "latent_net" or kept.get(name) == torch.float32:
                flat = tensor.detach().reshape(-1)
                step = max(1, flat.numel() // _FINGERPRINT_SAMPLES)
                digest.update(flat[::step].to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def usable_faces(faces: Sequence[Face]) -> list[Face]:
    """Faces scoring at least :data:`MIN_RELATIVE_FACE_SCORE` of the best, order kept."""
    if not faces:
        return []
    best = max(f.score for f in faces)
    return [f for f in faces if best <= 0 or f.score >= MIN_RELATIVE_FACE_SCORE * best]


def _photo_hash(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _one_row(classifier: AttributeClassifier, name: str) -> AttributeClassifier:
    """The row of ``name`` as a one-attribute classifier (same statistics)."""
    if len(classifier.attribute_names) == 1:
        return classifier
    index = classifier.index(name)
    return AttributeClassifier(
        attribute_names=(name,),
        weight=classifier.weight[index : index + 1].clone(),
        bias=classifier.bias[index : index + 1].clone(),
        z_mean=classifier.z_mean,
        z_std=classifier.z_std,
        source=classifier.source,
        directions=(
            None if classifier.directions is None else classifier.directions[index : index + 1]
        ),
    )


def _to_image(images: torch.Tensor) -> Image.Image:
    """(1, 3, S, S) in [0, 1] -> RGB image."""
    return tensor_to_image(images[0] * 2.0 - 1.0)


def _target_miss(targets: Mapping[str, float], measured: Mapping[str, float]) -> float:
    """Largest distance between a target probability and the measured one."""
    return max(abs(float(p) - measured.get(name, float(p))) for name, p in targets.items())


def _check_steps(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise StudioError(f"{name} must be a positive whole number of steps, got {value!r}")
    if value > 1000:
        raise StudioError(
            f"{name} must be at most 1000 (the training schedule's length), got {value}"
        )
    return int(value)


class _Progress:
    """Turns per-phase step counts into one (step, total, message) stream."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = max(1, total)
        self.done = 0

    def advance(self, message: str, count: int = 1) -> None:
        self.done = min(self.total, self.done + count)
        if self.callback is not None:
            self.callback(self.done, self.total, message)

    def ddim(self, message: str) -> Callable[[dict[str, Any]], None] | None:
        if self.callback is None:
            return None
        return lambda info: self.advance(message)

    def finish(self, message: str) -> None:
        if self.done < self.total:
            self.advance(message, self.total - self.done)


# --------------------------------------------------------------------------- model loading


def _load_model(
    spec: str | os.PathLike, *, revision: str | None, device: torch.device, precision: str
) -> tuple[DiffAE, str]:
    """(model, model id) for a model spec; see :meth:`Studio.load`."""
    from .convert import find_official_checkpoints

    if str(spec) == "default":
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise CheckpointError(
                f"the bundled model is not installed at {DEFAULT_MODEL_DIR}; pass a bundle "
                "folder, a Hub repo id or an official checkpoint as the model"
            )
        spec = DEFAULT_MODEL_DIR
    path = Path(spec)
    if path.is_file() or (path.is_dir() and not (path / "config.json").is_file()):
        if path.is_file() and path.suffix not in _OFFICIAL_SUFFIXES:
            raise CheckpointError(
                f"{path}: not a model; pass a bundle folder, a Hub repo id, or an official "
                "checkpoint (.ckpt file or checkpoints/ folder)"
            )
        checkpoint, classifier = find_official_checkpoints(path)
        model = DiffAE.from_official(
            checkpoint, classifier=classifier, device=device, precision=precision
        )
        return model, model.config.name
    model = DiffAE.from_pretrained(spec, revision=revision, device=device, precision=precision)
    model_id = model.config.name if path.exists() else str(spec)
    return model, model_id


def _load_auto_precision(
    spec: str | os.PathLike, *, revision: str | None, device: torch.device
) -> tuple[DiffAE, str, PrecisionChoice]:
    """Load in float32, and in bf16 where the hardware has it; keep bf16 if it is faithful."""
    model, model_id = _load_model(spec, revision=revision, device=device, precision="float32")
    hardware = native_bf16(device)
    if hardware is None:
        return model, model_id, PrecisionChoice("float32", f"float32: no native bf16 on {device}")
    fast, _ = _load_model(spec, revision=revision, device=device, precision="bfloat16")
    agreement = fidelity_db(model, fast)
    if agreement >= MIN_BF16_PSNR_DB:
        reason = f"bfloat16: {hardware} runs it natively; renders agree with float32 at "
        return fast, model_id, PrecisionChoice("bfloat16", f"{reason}{agreement:.1f} dB", agreement)
    reason = f"float32: bf16 renders agree with float32 at only {agreement:.1f} dB"
    return (
        model,
        model_id,
        PrecisionChoice("float32", f"{reason} (< {MIN_BF16_PSNR_DB:g})", agreement),
    )


def _bundle_edit_reliability(source: str) -> dict[str, EditReliability]:
    """The edit measurements of a bundle folder; none for other sources or a bad file (warned:
    the model itself is fine, only the claims about it are missing)."""
    if not source or not Path(source).is_dir():
        return {}
    try:
        return read_edit_reliability(source)
    except ReliabilityError as exc:
        warnings.warn(f"edit reliability not shown: {exc}", stacklevel=3)
        return {}


# --------------------------------------------------------------------------- the facade


class Studio:
    """A loaded model plus everything needed to edit faces with it.

    One Studio serves every user: it holds the model's weights and the face detector, never
    anything of a user (their :class:`Session` and, optionally, their own
    :class:`~diffae_app.encoding_cache.EncodingCache` are the caller's). Methods are safe to
    call from several threads.

    Args:
        model: the loaded DiffAE (its device and precision are used as they are).
        model_id: name recorded in sessions and recipes; default the model's config name.
        detector: a landmark detector, or a :func:`~diffae_app.align.make_detector` name
            ("auto", "dlib", "face_alignment"); created at first use.
        classifier: which of the model's classifier artefacts make the sliders (file stem,
            e.g. "synthfaces"); default all of them, merged in name order.
    """

    def __init__(
        self,
        model: DiffAE,
        *,
        model_id: str | None = None,
        detector: LandmarkDetector | str = "auto",
        classifier: str | None = None,
    ) -> None:
        self.model = model
        self.model_id = model_id or model.config.name
        self.model_revision = model_fingerprint(model)
        # Which standalone classifier artefacts (classifiers/) fit this model.
        self.fit_fingerprint = fit_fingerprint(model)
        self.classifier = self._pick_classifier(model.classifiers, classifier)
        self._edit_reliability = _bundle_edit_reliability(model.source)
        self._detector_spec = detector
        self._detector: LandmarkDetector | None = None if isinstance(detector, str) else detector
        self._detector_lock = threading.Lock()
        # Unedited renders per session and T_render: "change" paste-back subtracts one from
        # every edit. Weak keys: a reconstruction lives exactly as long as its session (which
        # lives in its user's EncodingCache), so the shared Studio never keeps a user's data.
        self._references: weakref.WeakKeyDictionary[Session, dict[int, torch.Tensor]] = (
            weakref.WeakKeyDictionary()
        )
        self._references_lock = threading.Lock()
        #: How ``precision="auto"`` chose (None when the precision was given).
        self.precision_choice: PrecisionChoice | None = None

    @classmethod
    def load(
        cls,
        model_spec: str | os.PathLike = "default",
        *,
        revision: str | None = None,
        device: str | torch.device = "auto",
        precision: str = "float32",
        detector: LandmarkDetector | str = "auto",
        classifier: str | None = None,
    ) -> Studio:
        """Load a model and build the studio around it.

        Args:
            model_spec: "default" (the bundled SynthFaces-64 model, :data:`DEFAULT_MODEL_DIR`),
                a bundle folder, a Hugging Face Hub repo id ("owner/name"), an official
                checkpoint file (``last.ckpt``), or an official model or ``checkpoints/``
                folder (its ``*_cls`` classifier is picked up when present).
            revision: Hub revision (branch, tag or commit) for repo ids.
            device: "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:1", "mps".
            precision: "float32", "bfloat16", "float16", or "auto": bf16 where the hardware
                runs it natively and its renders agree with float32's to 40 dB, measured now
                (see :mod:`diffae_app.precision`; :attr:`precision_choice` says why). The
                autoencoder's weights are cast to it once at load (one copy in memory); the
                latent DPM and the classifiers stay float32.
            detector, classifier: see :class:`Studio`.

        Raises:
            CheckpointError: the model cannot be found or read.
            StudioError: bad device or precision.
        """
        if precision not in (*PRECISIONS, "auto"):
            raise StudioError(
                f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        chosen_device = choose_device(device)
        choice = None
        if precision == "auto":
            model, model_id, choice = _load_auto_precision(
                model_spec, revision=revision, device=chosen_device
            )
        else:
            model, model_id = _load_model(
                model_spec, revision=revision, device=chosen_device, precision=precision
            )
        studio = cls(
            model,
            model_id=model_id,
            detector=detector,
            classifier=classifier,
        )
        studio.precision_choice = choice
        return studio

    @staticmethod
    def _pick_classifier(
        classifiers: Mapping[str, AttributeClassifier], name: str | None
    ) -> AttributeClassifier | None:
        if name is not None:
            if name not in classifiers:
                known = ", ".join(sorted(classifiers)) or "none"
                raise ClassifierError(f"the model has no classifier {name!r} (it has: {known})")
            return classifiers[name]
        if not classifiers:
            return None
        names = sorted(classifiers)
        try:
            return merge_classifiers(*(classifiers[n] for n in names))
        except ClassifierError as exc:
            raise ClassifierError(f"{exc}; choose one classifier by name") from None

    # ------------------------------------------------------------------ properties

    @property
    def image_size(self) -> int:
        """Side S of the model's aligned faces."""
        return self.model.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def precision(self) -> str:
        return self.model.precision

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """The model's slider names, from its classifier artefacts (empty without one)."""
        return self.classifier.attribute_names if self.classifier is not None else ()

    @property
    def full_strengths(self) -> Mapping[str, float]:
        """Per attribute, the strength (official units) that makes a typical face show it, as
        calibrated by ``evaluate --write``; empty where the classifier stores none."""
        if self.classifier is None:
            return {}
        stored = self.classifier.metrics.get("_full_strength") or {}
        return {k: float(v) for k, v in stored.items() if k in self.attribute_names and v > 0}

    @property
    def edit_reliability(self) -> Mapping[str, EditReliability]:
        """Measured add / remove success per attribute from the bundle's evaluation.json
        (:mod:`diffae_app.reliability`); empty when the model has no such measurements."""
        return dict(self._edit_reliability)

    @property
    def has_latent_dpm(self) -> bool:
        """Whether :meth:`sample` can draw random faces."""
        return self.model.has_latent_dpm

    @property
    def detector(self) -> LandmarkDetector:
        """The face detector, created on first use."""
        with self._detector_lock:
            if self._detector is None:
                self._detector = make_detector(str(self._detector_spec))
            return self._detector

    def _model_key(self) -> tuple[str, str]:
        return (self.model_id, self.model_revision)

    # ------------------------------------------------------------------ detection and encoding

    def detect_faces(self, photo: ImageSource, *, cache: EncodingCache | None = None) -> list[Face]:
        """The usable faces in ``photo``, best first (size, among confident detections).

        Args:
            photo: a path, bytes, file, PIL image or array (EXIF orientation is applied; face
                coordinates refer to the upright photo).
            cache: the caller's own cache (one per user), or None: detect afresh.

        Raises:
            ImageError: not a usable image.
            NoFaceFound: no face.
        """
        image = load_image(photo)
        return list(self._detect(image, _photo_hash(image), cache))

    def _detect(
        self, image: Image.Image, digest: str, cache: EncodingCache | None = None
    ) -> list[Face]:
        faces = cache.faces.get(digest) if cache is not None else None
        if faces is None:
            faces = usable_faces(detect_faces(image, self.detector))
            if cache is not None:
                cache.faces.put(digest, faces)
        return faces

    def _steps(self, T: int | None, kind: str) -> int:
        preset: QualityPreset = QUALITY_PRESETS[DEFAULT_QUALITY]
        if T is None:
            return preset.T_inv if kind == "T_inv" else preset.T_render
        return _check_steps(T, kind)

    def encode_photo(
        self,
        photo: ImageSource,
        *,
        face_index: int = 0,
        T_inv: int | None = None,
        progress: ProgressCallback | None = None,
        cache: EncodingCache | None = None,
    ) -> Session:
        """Detect, align and encode one face of a photo.

        Args:
            photo: anything :func:`~diffae_app.imaging.load_image` accepts.
            face_index: which face, 0 = the best (see :meth:`detect_faces`).
            T_inv: DDIM inversion steps for x_T; default the "balanced" preset's.
            progress: called with (step, total, message); total = T_inv + 2.
            cache: the caller's own cache (one per user); None encodes afresh every time.

        Returns:
            The session; with a cache, the same object again for the same photo, face, model
            and T_inv.

        Raises:
            ImageError, NoFaceFound, FaceTooSmall: bad photo.
            FaceIndexError: no face number ``face_index``.
        """
        T_inv = self._steps(T_inv, "T_inv")
        image = load_image(photo)
        digest = _photo_hash(image)
        if isinstance(face_index, bool) or not isinstance(face_index, (int, np.integer)):
            raise FaceIndexError(f"face index must be a whole number, got {face_index!r}")
        key = ("photo", digest, int(face_index), self._model_key(), T_inv)
        cached = cache.sessions.get(key) if cache is not None else None
        if cached is not None:
            _Progress(progress, 1).finish("encoding (cached)")
            return cached
        steps = _Progress(progress, T_inv + 2)
        faces = self._detect(image, digest, cache)
        if not 0 <= face_index < len(faces):
            count = f"{len(faces)} face{'s' if len(faces) != 1 else ''}"
            raise FaceIndexError(
                f"face {face_index} requested but the photo has {count} (numbered from 0)"
            )
        aligned = align_face(image, faces[face_index], self.image_size)
        steps.advance("aligning the face")
        z_sem, x_T = self._encode_crop(aligned.image, T_inv, steps)
        return self._remember(
            cache,
            key,
            kind="photo",
            photo=image,
            photo_hash=digest,
            face_index=int(face_index),
            num_faces=len(faces),
            aligned=aligned,
            crop=aligned.image,
            z_sem=z_sem,
            x_T=x_T,
            T_inv=T_inv,
        )

    def encode_aligned(
        self,
        image: ImageSource,
        *,
        T_inv: int | None = None,
        progress: ProgressCallback | None = None,
        cache: EncodingCache | None = None,
    ) -> Session:
        """Encode an already-aligned square face (an FFHQ crop, a SynthFaces image).

        No detection: the image is resized to the model's size (Lanczos) as it is. The
        session's photo is the image at its own size: renders in "change" paste mode add the
        upsampled change to it, "render" mode upsamples the render to its size. ``cache``: as
        in :meth:`encode_photo`.

        Raises:
            ImageError: not a usable image.
            StudioError: the image is not square.
        """
        T_inv = self._steps(T_inv, "T_inv")
        picture = load_image(image)
        if picture.width != picture.height:
            raise StudioError(
                f"an aligned face must be square, got {picture.width}×{picture.height}; "
                "encode it as a photo to detect and align the face"
            )
        size = self.image_size
        crop = picture if picture.width == size else picture.resize((size, size), Image.LANCZOS)
        digest = _photo_hash(picture)
        key = ("aligned", digest, self._model_key(), T_inv)
        cached = cache.sessions.get(key) if cache is not None else None
        if cached is not None:
            _Progress(progress, 1).finish("encoding (cached)")
            return cached
        steps = _Progress(progress, T_inv + 2)
        steps.advance("preparing the face")
        z_sem, x_T = self._encode_crop(crop, T_inv, steps)
        return self._remember(
            cache,
            key,
            kind="aligned",
            photo=picture,
            photo_hash=digest,
            face_index=0,
            num_faces=1,
            aligned=None,
            crop=crop,
            z_sem=z_sem,
            x_T=x_T,
            T_inv=T_inv,
        )

    def _remember(self, cache: EncodingCache | None, key: tuple, **fields: Any) -> Session:
        """A new session of this model, kept under `key` in the caller's cache (if any)."""
        session = Session(model_id=self.model_id, model_revision=self.model_revision, **fields)
        if cache is not None:
            cache.sessions.put(key, session)
        return session

    def _encode_crop(
        self, crop: Image.Image, T_inv: int, steps: _Progress
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z_sem (1, D) and x_T (1, 3, S, S), on the CPU."""
        x = image_to_tensor(crop)[None]
        with torch.inference_mode():
            z_sem = self.model.encode(x)
            steps.advance("encoding (semantic encoder)")
            x_T = self.model.encode_stochastic(
                x, z_sem, T_inv, callback=steps.ddim("inverting (DDIM)")
            )
        steps.finish("encoded")
        return z_sem.cpu(), x_T.cpu()

    # ------------------------------------------------------------------ editing

    def slider_set(
        self, custom_attributes: Sequence[AttributeClassifier] = ()
    ) -> AttributeClassifier | None:
        """The model's classifier with custom attributes appended (None if there is neither)."""
        custom = tuple(custom_attributes)
        for extra in custom:
            if extra.z_sem_channels != self.model.config.autoencoder.z_sem_channels:
                raise ClassifierError(
                    f"custom attribute {', '.join(extra.attribute_names)} is for "
                    f"{extra.z_sem_channels}-d z_sem, this model's is "
                    f"{self.model.config.autoencoder.z_sem_channels}-d"
                )
        if self.classifier is None:
            return merge_classifiers(*custom) if custom else None
        return merge_classifiers(self.classifier, *custom) if custom else self.classifier

    def _check_session(self, session: Session) -> None:
        if not isinstance(session, Session):
            raise StudioError("no face is encoded yet; upload a photo first")
        if (session.model_id, session.model_revision) != self._model_key():
            raise StudioError(
                f"this face was encoded with model {session.model_id} ({session.model_revision}), "
                f"not the loaded {self.model_id} ({self.model_revision}); encode it again"
            )

    def render(
        self,
        session: Session,
        strengths: Mapping[str, float] | None = None,
        *,
        locks: Sequence[str] = (),
        targets: Mapping[str, float] | None = None,
        T_render: int | None = None,
        seed: int | None = None,
        custom_attributes: Sequence[AttributeClassifier] = (),
        feather: float = 0.1,
        paste: str = DEFAULT_PASTE,
        measure: bool = True,
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> EditResult:
        """Render an edit of an encoded face, then measure what the result shows.

        Args:
            session: from :meth:`encode_photo`, :meth:`encode_aligned`,
                :meth:`sample_sessions` or :meth:`import_encoding`.
            strengths: attribute -> strength in the official units (e.g. 0.3); several combine
                additively. Names must be in :attr:`attribute_names` (or a custom attribute).
            locks: attributes held fixed: their directions are projected out of the edit.
            targets: attribute -> wanted classifier probability in (0, 1); the strength along
                its direction is solved (overrides a strength given for that attribute).
            T_render: DDIM steps; default the "balanced" preset's.
            seed: None renders from the session's x_T (faithful to the photo); an int renders
                from fresh Gaussian noise of that seed (stochastic variations of the face).
            custom_attributes: per-request extra sliders (from :meth:`custom_attribute`).
            feather: paste-back fade width, fraction of the crop side (0-0.5).
            paste: "change" (default) adds only what the edit changed to the photo's own
                pixels, at the photo's resolution; "render" pastes the model's whole rendered
                face (see :mod:`diffae_app.paste`). "change" needs the unedited render from
                the same x_T: made once per session and T_render, then cached.
            measure: encode the rendered crop again and classify it (one encoder pass), so
                ``probabilities_after`` says what the picture shows; with targets, a render
                that misses one by more than ``TARGET_LANDING`` takes one corrective step on
                the measured gap (a second render). False: no encoder pass, no correction,
                ``probabilities_after`` is the code's (a quick preview).
            progress: called with (step, total, message); total = T_render per render (the
                unedited render once per face in "change" mode, a corrective render in
                target mode).
            preview: called with (crop, step, total) a few times during the render shown,
                the crop being the current estimate of the final image (the sampler's
                predicted x_0): the first after 2 UNet calls (``progress.preview_calls``).
                Not called while only the unedited reference for "change" is made.
            cancel: checked after every step; when it returns True the render stops and
                :class:`~diffae_app.progress.Cancelled` is raised.

        Returns:
            The edited crop, the photo with the face pasted back, the aligned face at the
            photo's resolution (``face_crop``), probabilities before, asked (the edited code)
            and after (measured on the result), the applied strengths and the recipe.

        Raises:
            ClassifierError: unknown attribute. EditError: bad strengths/locks/targets.
            NoAttributeClassifier: an edit was asked of a model without a classifier.
        """
        self._check_session(session)
        T_render = self._steps(T_render, "T_render")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise StudioError(f"seed must be a non-negative whole number or None, got {seed!r}")
        try:
            paste = check_paste_mode(paste)
        except ValueError as error:
            raise StudioError(str(error)) from None
        sliders = self.slider_set(custom_attributes)
        strengths = dict(strengths or {})
        targets = dict(targets or {})
        locks = tuple(dict.fromkeys(locks))
        if sliders is None and (any(strengths.values()) or targets or locks):
            raise NoAttributeClassifier(
                "this model has no attribute classifier, so attributes cannot be edited; add "
                "a custom attribute or load a model with classifiers/"
            )
        names = sliders.attribute_names if sliders is not None else ()
        x_T = session.x_T
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
            x_T = torch.randn(session.x_T.shape, generator=generator)

        def solve(wanted: Mapping[str, float]) -> tuple[dict[str, float], torch.Tensor]:
            """(applied strengths, edited z_sem) for these targets."""
            if sliders is None:
                return {}, session.z_sem.clone()
            solved = _solve_targets(
                session.z_sem, sliders, wanted, strengths=strengths, locks=locks
            )
            applied = {k: float(v) for k, v in strengths.items() if k not in wanted}
            applied.update(solved)
            return applied, edit_z_sem(session.z_sem, sliders, applied, locks=locks)

        first = solve(targets)
        # The unedited render from the session's x_T is the edit itself when nothing moves, and
        # what "change" paste-back subtracts (also for a variation seed, so that the variation
        # shows as part of the change).
        unedited = seed is None and torch.equal(first[1], session.z_sem)
        reference = self._cached_reference(session, T_render)
        need_reference = reference is None and (unedited or paste == "change")
        # Target mode may render twice (one corrective step); the bar spans every render.
        edit_renders = 0 if unedited else (2 if targets and measure else 1)
        steps = _Progress(progress, T_render * max(1, edit_renders + int(need_reference)))
        if need_reference:
            # Unedited, it is the render itself (streamed); otherwise the reconstruction
            # "change" needs, made before the edit (cancellable, not previewed).
            message = "rendering" if unedited else "reconstructing (once per face)"
            callback = step_callback(
                T_render,
                on_step=steps.ddim(message),
                preview=preview if unedited else None,
                cancel=cancel,
            )
            reference = self._reference(session, T_render, callback)

        def attempt(applied: dict[str, float], z_edit: torch.Tensor) -> tuple:
            """(applied, z_edit, images, crop, measured probabilities) of one render."""
            if seed is None and torch.equal(z_edit, session.z_sem):
                images = reference
            else:
                callback = step_callback(
                    T_render, on_step=steps.ddim("rendering"), preview=preview, cancel=cancel
                )
                with torch.inference_mode():
                    images = self.model.render(x_T, z_edit, T_render, callback=callback).cpu()
            crop = _to_image(images)
            got = self._measure(sliders, crop, names) if measure else {}
            return applied, z_edit, images, crop, got

        applied, z_edit, images, crop, got = attempt(*first)
        corrected = False
        if targets and got:
            miss = _target_miss(targets, got)
            if miss > TARGET_LANDING:
                start = self._probabilities(sliders, session.z_sem, names)
                asked = self._probabilities(sliders, z_edit, names)
                second = attempt(*solve(corrected_targets(targets, got, start, asked)))
                if _target_miss(targets, second[4]) < miss:
                    applied, z_edit, images, crop, got = second
                    corrected = True
        steps.finish("rendered")

        aligned = session.aligned if session.kind == "photo" else None
        photo, mask, face_crop = compose(
            session.photo, aligned, images, reference, crop, mode=paste, feather=feather
        )

        used = set(strengths) | set(targets) | set(locks)
        recipe = Recipe(
            model_id=self.model_id,
            model_revision=self.model_revision,
            T_inv=session.T_inv,
            T_render=T_render,
            strengths=strengths,
            locks=locks,
            targets=targets,
            seed=seed,
            face_index=session.face_index,
            paste=paste,
            custom_attributes={
                name: custom_attribute_to_dict(_one_row(c, name))
                for c in custom_attributes
                for name in c.attribute_names
                if name in used
            },
        )
        return EditResult(
            crop=crop,
            photo=photo,
            mask=mask,
            face_crop=face_crop,
            paste=paste,
            z_sem=z_edit.cpu(),
            strengths=applied,
            probabilities_before=self._probabilities(sliders, session.z_sem, names),
            probabilities_after=got if measure else self._probabilities(sliders, z_edit, names),
            recipe=recipe,
            probabilities_asked=self._probabilities(sliders, z_edit, names),
            corrected=corrected,
        )

    def _cached_reference(self, session: Session, T_render: int) -> torch.Tensor | None:
        with self._references_lock:
            return self._references.get(session, {}).get(T_render)

    def _reference(
        self, session: Session, T_render: int, callback: Callable[[dict[str, Any]], None] | None
    ) -> torch.Tensor:
        """The unedited render (1, 3, S, S) in [0, 1] from the session's x_T, cached."""
        with torch.inference_mode():
            reference = self.model.render(
                session.x_T, session.z_sem, T_render, callback=callback
            ).cpu()
        with self._references_lock:
            self._references.setdefault(session, {})[T_render] = reference
        return reference

    def _measure(
        self, sliders: AttributeClassifier | None, crop: Image.Image, names: Sequence[str]
    ) -> dict[str, float]:
        """The classifier on the rendered crop encoded again: what the picture shows."""
        if sliders is None:
            return {}
        with torch.inference_mode():
            z_sem = self.model.encode(image_to_tensor(crop)[None]).cpu()
        return self._probabilities(sliders, z_sem, names)

    @staticmethod
    def _probabilities(
        sliders: AttributeClassifier | None, z_sem: torch.Tensor, names: Sequence[str]
    ) -> dict[str, float]:
        if sliders is None:
            return {}
        values = sliders.probabilities(z_sem.float().cpu())[0].tolist()
        return dict(zip(names, values, strict=True))

    def attributes(
        self, session: Session, *, custom_attributes: Sequence[AttributeClassifier] = ()
    ) -> dict[str, float]:
        """Classifier probability of every attribute for the session's face (no rendering).

        Raises:
            NoAttributeClassifier: the model has no classifier and no custom attribute is given.
        """
        self._check_session(session)
        sliders = self.slider_set(custom_attributes)
        if sliders is None:
            raise NoAttributeClassifier(
                "this model has no attribute classifier, so there are no attributes to read"
            )
        return self._probabilities(sliders, session.z_sem, sliders.attribute_names)

    def reconstruct(
        self,
        session: Session,
        *,
        T_render: int | None = None,
        paste: str = "render",
        progress: ProgressCallback | None = None,
    ) -> EditResult:
        """The unedited render (how well the model reproduces the face); pasted back too.

        ``paste`` defaults to "render" here: "change" would give the photo back unchanged. The
        render is cached for the session, so "change" edits at this T_render need no extra one.
        """
        return self.render(session, T_render=T_render, paste=paste, progress=progress)

    # ------------------------------------------------------------------ interpolation

    def interpolate(
        self,
        session_a: Session,
        session_b: Session,
        frames: int,
        *,
        T_render: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[Image.Image]:
        """``frames`` crops from face a to face b: z_sem linearly, x_T spherically.

        The first and last frames equal the two reconstructions exactly (same T_render).

        Raises:
            StudioError: fewer than 2 frames, or the sessions come from another model.
        """
        self._check_session(session_a)
        self._check_session(session_b)
        if isinstance(frames, bool) or not isinstance(frames, int) or not 2 <= frames <= 256:
            raise StudioError(f"frames must be a whole number from 2 to 256, got {frames!r}")
        T_render = self._steps(T_render, "T_render")
        steps = _Progress(progress, frames * T_render)
        images = []
        for k in range(frames):
            t = k / (frames - 1)
            z_sem = lerp(session_a.z_sem, session_b.z_sem, t)
            x_T = slerp(session_a.x_T, session_b.x_T, t)
            with torch.inference_mode():
                rendered = self.model.render(
                    x_T, z_sem, T_render, callback=steps.ddim(f"rendering frame {k + 1}/{frames}")
                )
            images.append(_to_image(rendered.cpu()))
        steps.finish("rendered")
        return images

    # ------------------------------------------------------------------ random faces

    def sample_sessions(
        self,
        n: int,
        *,
        seed: int,
        T_render: int | None = None,
        T_latent: int | None = None,
        push: Mapping[str, float] | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[Session]:
        """Random faces from the latent DPM, as sessions ready to edit ("send to Edit").

        Face i depends only on (seed, i), not on n: the CPU generator draws x_T then the
        latent noise for face 0, then for face 1, and so on. Each session's crop is its
        render; rendering the session with no edit and the same T_render gives it again.

        Args:
            n: how many faces (1-64).
            seed: generator seed.
            T_render: DDIM steps of the image decoder; default the "balanced" preset's.
            T_latent: DDIM steps of the latent DPM; default the model's (the official 20).
            push: attribute -> strength applied to each sampled z_sem before rendering.
            progress: (step, total, message); total = n * (T_render + 1).

        Raises:
            NoLatentDPM: the model cannot sample.
        """
        if not self.has_latent_dpm:
            raise NoLatentDPM(
                f"model {self.model_id} has no latent DPM, so it cannot draw random faces; load "
                "a model with one (official *_autoenc_latent or our bundles)"
            )
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
            raise StudioError(f"n must be a whole number from 1 to 64, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise StudioError(f"seed must be a non-negative whole number, got {seed!r}")
        T_render = self._steps(T_render, "T_render")
        if T_latent is None:
            T_latent = self.model.config.default_latent_steps
        T_latent = self._steps(T_latent, "T_latent")
        sliders = self.slider_set()
        if push and sliders is None:
            raise NoAttributeClassifier(
                "this model has no attribute classifier, so samples cannot be pushed"
            )
        size = self.image_size
        width = self.model.config.latent_net.num_channels
        generator = torch.Generator().manual_seed(seed)
        steps = _Progress(progress, n * (T_render + 1))
        sessions = []
        for i in range(n):
            x_T = torch.randn(1, 3, size, size, generator=generator)
            noise = torch.randn(1, width, generator=generator)
            with torch.inference_mode():
                z_sem = self.model.sample_z(1, T_latent, noise=noise).cpu()
                steps.advance(f"sampling z_sem {i + 1}/{n}")
                if push:
                    z_sem = edit_z_sem(z_sem, sliders, push)
                rendered = self.model.render(
                    x_T, z_sem, T_render, callback=steps.ddim(f"rendering face {i + 1}/{n}")
                )
            crop = _to_image(rendered.cpu())
            sessions.append(
                Session(
                    kind="sample",
                    photo=crop,
                    photo_hash=_photo_hash(crop),
                    face_index=0,
                    num_faces=1,
                    aligned=None,
                    crop=crop,
                    z_sem=z_sem,
                    x_T=x_T,
                    T_inv=0,
                    model_id=self.model_id,
                    model_revision=self.model_revision,
                )
            )
        steps.finish("sampled")
        return sessions

    def sample(
        self,
        n: int,
        *,
        seed: int,
        T_render: int | None = None,
        T_latent: int | None = None,
        push: Mapping[str, float] | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[Image.Image]:
        """The images of :meth:`sample_sessions` (same arguments)."""
        sessions = self.sample_sessions(
            n, seed=seed, T_render=T_render, T_latent=T_latent, push=push, progress=progress
        )
        return [s.crop for s in sessions]

    # ------------------------------------------------------------------ custom attributes

    def semantic_codes(
        self,
        examples: Sequence[Session | torch.Tensor | ImageSource],
        *,
        aligned: bool = False,
    ) -> torch.Tensor:
        """z_sem of each example, (N, D) float32 on the CPU; encoder only, no inversion.

        Args:
            examples: sessions, z_sem tensors ((D,) or (1, D)), or images: photos (the best
                face is detected and aligned) or, with ``aligned=True``, aligned square crops.
        """
        codes = []
        width = self.model.config.autoencoder.z_sem_channels
        for example in examples:
            if isinstance(example, Session):
                self._check_session(example)
                codes.append(example.z_sem)
            elif isinstance(example, torch.Tensor):
                if example.numel() != width:
                    raise EditError(
                        f"a z_sem example must have {width} values, got {example.numel()}"
                    )
                codes.append(example.detach().reshape(1, width).float().cpu())
            else:
                image = load_image(example)
                if aligned:
                    if image.width != image.height:
                        raise StudioError(
                            f"an aligned face must be square, got {image.width}×{image.height}"
                        )
                    crop = image.resize((self.image_size,) * 2, Image.LANCZOS)
                else:
                    face = self._detect(image, _photo_hash(image))[0]
                    crop = align_face(image, face, self.image_size).image
                with torch.inference_mode():
                    codes.append(self.model.encode(image_to_tensor(crop)[None]).cpu())
        if not codes:
            return torch.zeros(0, width)
        return torch.cat(codes)

    def custom_attribute(
        self,
        positive: Sequence[Session | torch.Tensor | ImageSource],
        negative: Sequence[Session | torch.Tensor | ImageSource],
        name: str,
        *,
        aligned: bool = False,
    ) -> AttributeClassifier:
        """Fit a new slider from examples with (``positive``) and without (``negative``) it.

        Examples are as in :meth:`semantic_codes`; at least 2 of each (4+ work well). The
        direction is fitted in the slider set's normalised space (the classifier's statistics,
        else the latent DPM's), so its strengths mean the same as the other sliders'. Pass the
        result to :meth:`render` in ``custom_attributes``; save it with ``.save(path)``
        (the repository's ``classifiers/`` folder, or a bundle's) and load it with
        ``AttributeClassifier.load(path)``. It records :attr:`fit_fingerprint`, so apps list
        it only for this model.

        Raises:
            EditError: too few examples or a bad name. ClassifierError: the name is taken.
        """
        if name in self.attribute_names:
            raise ClassifierError(
                f"attribute name {name!r} is already one of the model's; choose another"
            )
        width = self.model.config.autoencoder.z_sem_channels
        if self.classifier is not None:
            z_mean, z_std = self.classifier.z_mean, self.classifier.z_std
        elif self.model.z_mean is not None:
            z_mean, z_std = self.model.z_mean.cpu(), self.model.z_std.cpu()
        else:
            z_mean, z_std = torch.zeros(width), torch.ones(width)
        fitted = fit_custom_attribute(
            self.semantic_codes(positive, aligned=aligned),
            self.semantic_codes(negative, aligned=aligned),
            name,
            z_mean=z_mean,
            z_std=z_std,
        )
        return dataclasses.replace(fitted, model_fingerprint=self.fit_fingerprint)

    # ------------------------------------------------------------------ recipes

    def apply_recipe(
        self,
        photo: ImageSource,
        recipe: Recipe,
        *,
        aligned: bool = False,
        paste: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> EditResult:
        """Replay a recipe on a photo (``aligned=True``: an aligned crop): same output, bit for bit.

        ``paste`` overrides the recipe's paste-back mode ("change" or "render").

        Raises:
            RecipeError: the recipe was made with another model, or for a sampled face.
        """
        if not isinstance(recipe, Recipe):
            raise RecipeError("expected a Recipe (use Recipe.from_json to read one)")
        if (recipe.model_id, recipe.model_revision) != self._model_key():
            raise RecipeError(
                f"the recipe was made with model {recipe.model_id} ({recipe.model_revision}) but "
                f"{self.model_id} ({self.model_revision}) is loaded; load that model to replay it"
            )
        if recipe.T_inv < 1:
            raise RecipeError(
                "the recipe was made on a random face, not a photo; it has no x_T to replay"
            )
        custom = [custom_attribute_from_dict(n, d) for n, d in recipe.custom_attributes.items()]
        if aligned:
            session = self.encode_aligned(photo, T_inv=recipe.T_inv, progress=progress)
        else:
            session = self.encode_photo(
                photo, face_index=recipe.face_index, T_inv=recipe.T_inv, progress=progress
            )
        return self.render(
            session,
            recipe.strengths,
            locks=recipe.locks,
            targets=recipe.targets,
            T_render=recipe.T_render,
            seed=recipe.seed,
            custom_attributes=custom,
            paste=recipe.paste if paste is None else paste,
            progress=progress,
        )

    # ------------------------------------------------------------------ encodings

    def export_encoding(self, session: Session, path: str | os.PathLike) -> Path:
        """Write the session's z_sem, x_T and crop to a safetensors file (no photo).

        Re-importing it with :meth:`import_encoding` renders identically (crops; there is no
        paste-back without the photo).
        """
        self._check_session(session)
        path = Path(path)
        tensors = {
            "z_sem": session.z_sem.contiguous(),
            "x_T": session.x_T.contiguous(),
            "crop": torch.from_numpy(np.asarray(session.crop, dtype=np.uint8).copy()),
        }
        metadata = {
            "format": ENCODING_FORMAT,
            "version": str(ENCODING_VERSION),
            "model_id": session.model_id,
            "model_revision": session.model_revision,
            "T_inv": str(session.T_inv),
            "face_index": str(session.face_index),
            "kind": session.kind,
            "photo_hash": session.photo_hash,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=metadata)
        return path

    def import_encoding(self, path: str | os.PathLike) -> Session:
        """Read an encoding written by :meth:`export_encoding` as an "imported" session.

        Raises:
            EncodingError: unreadable file, not an encoding, or made with another model.
        """
        path = Path(path)
        if not path.is_file():
            raise EncodingError(f"{path.name}: no such encoding file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception:  # safetensors raises several types for a bad header
            raise EncodingError(f"{path.name}: not a readable safetensors encoding file") from None
        if meta.get("format") != ENCODING_FORMAT or {"z_sem", "x_T", "crop"} - set(tensors):
            raise EncodingError(f"{path.name}: not a DiffAE Studio encoding")
        if (meta.get("model_id"), meta.get("model_revision")) != self._model_key():
            raise EncodingError(
                f"{path.name} was encoded with model {meta.get('model_id')} "
                f"({meta.get('model_revision')}), not the loaded {self.model_id} "
                f"({self.model_revision}); encode the photo again"
            )
        size = self.image_size
        width = self.model.config.autoencoder.z_sem_channels
        z_sem, x_T, crop = tensors["z_sem"], tensors["x_T"], tensors["crop"]
        if (
            tuple(z_sem.shape) != (1, width)
            or tuple(x_T.shape) != (1, 3, size, size)
            or tuple(crop.shape) != (size, size, 3)
            or crop.dtype != torch.uint8
        ):
            raise EncodingError(f"{path.name}: tensor shapes do not fit the loaded model")
        image = Image.fromarray(crop.numpy())
        try:
            T_inv = int(meta.get("T_inv", "0"))
            face_index = int(meta.get("face_index", "0"))
        except ValueError:
            raise EncodingError(f"{path.name}: malformed metadata") from None
        return Session(
            kind="imported",
            photo=image,
            photo_hash=str(meta.get("photo_hash", _photo_hash(image))),
            face_index=face_index,
            num_faces=1,
            aligned=None,
            crop=image,
            z_sem=z_sem.float(),
            x_T=x_T.float(),
            T_inv=T_inv,
            model_id=self.model_id,
            model_revision=self.model_revision,
        )


# --------------------------------------------------------------------------- exporters


def _check_frames(frames: Sequence[Image.Image]) -> list[Image.Image]:
    frames = [f.convert("RGB") for f in frames]
    if not frames:
        raise StudioError("no frames to write")
    if len({f.size for f in frames}) != 1:
        raise StudioError("all frames must have the same size")
    return frames


def write_gif(
    frames: Sequence[Image.Image],
    path: str | os.PathLike,
    *,
    frame_ms: int = 120,
    bounce: bool = False,
) -> Path:
    """Animated GIF of ``frames`` (looping forever); ``bounce`` plays back and forth."""
    frames = _check_frames(frames)
    if bounce and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=max(20, int(frame_ms)),
        loop=0,
        disposal=1,
    )
    return path


def write_strip(
    frames: Sequence[Image.Image], path: str | os.PathLike | None = None
) -> Image.Image:
    """The frames side by side in one image (written as PNG/JPEG by suffix when ``path`` is given)."""
    frames = _check_frames(frames)
    width, height = frames[0].size
    strip = Image.new("RGB", (width * len(frames), height))
    for k, frame in enumerate(frames):
        strip.paste(frame, (k * width, 0))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        strip.save(path)
    return strip


def grid(images: Sequence[Image.Image], columns: int | None = None) -> Image.Image:
    """Images in a grid, row by row (``columns`` default: about square)."""
    images = _check_frames(images)
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    sheet = Image.new("RGB", (width * columns, height * rows))
    for k, image in enumerate(images):
        sheet.paste(image, ((k % columns) * width, (k // columns) * height))
    return sheet

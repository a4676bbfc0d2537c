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

:class:`Studio` sequences the steps; each step lives in the module that owns it (``sessions``,
``rendering``, ``sampling``, ``custom_attributes``, ``recipes``, ``encoding_files``,
``loading``). This package is the only place that decides the device, the precision, inference
mode and random generators: every random draw comes from a CPU ``torch.Generator`` seeded by
the caller, so results do not depend on the device's generator.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image

from ..align import Face, LandmarkDetector, make_detector
from ..classifier import AttributeClassifier, ClassifierError
from ..diffae import PRECISIONS, DiffAE
from ..editing import merge_classifiers
from ..encoding_cache import EncodingCache
from ..errors import StudioError
from ..imaging import ImageSource, load_image
from ..paste import DEFAULT_PASTE
from ..precision import PrecisionChoice
from ..progress import CancelCheck, PreviewCallback
from ..reliability import EditReliability
from ..session import EditResult, ProgressCallback, Recipe, Session
from . import custom_attributes, encoding_files, recipes, rendering, sampling, sessions
from .fingerprints import fit_fingerprint, model_fingerprint
from .loading import (
    bundle_edit_reliability,
    choose_device,
    load_auto_precision,
    load_model,
    pick_classifier,
)

__all__ = ["Studio"]


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
        self.classifier = pick_classifier(model.classifiers, classifier)
        self._edit_reliability = bundle_edit_reliability(model.source)
        self._detector_spec = detector
        self._detector: LandmarkDetector | None = None if isinstance(detector, str) else detector
        self._detector_lock = threading.Lock()
        #: Unedited renders per session (weakly held) for "change" paste-back.
        self.references = rendering.ReferenceRenders()
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
            model_spec: "default" (the bundled SynthFaces-64 model,
                :data:`~diffae_app.studio.DEFAULT_MODEL_DIR`), a bundle folder, a Hugging Face
                Hub repo id ("owner/name"), an official checkpoint file (``last.ckpt``), or an
                official model or ``checkpoints/`` folder (its ``*_cls`` classifier is picked
                up when present).
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
            model, model_id, choice = load_auto_precision(
                model_spec, revision=revision, device=chosen_device
            )
        else:
            model, model_id = load_model(
                model_spec, revision=revision, device=chosen_device, precision=precision
            )
        studio = cls(model, model_id=model_id, detector=detector, classifier=classifier)
        studio.precision_choice = choice
        return studio

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

    def model_key(self) -> tuple[str, str]:
        """(model id, weight fingerprint): what sessions, recipes and encodings must match."""
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
        return list(sessions.detect(self, image, sessions.photo_hash(image), cache))

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
        return sessions.encode_photo(
            self, photo, face_index=face_index, T_inv=T_inv, progress=progress, cache=cache
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
        return sessions.encode_aligned(self, image, T_inv=T_inv, progress=progress, cache=cache)

    # ------------------------------------------------------------------ editing

    def slider_set(
        self, custom_attributes: Sequence[AttributeClassifier] = ()
    ) -> AttributeClassifier | None:
        """The model's classifier with custom attributes appended (None if there is neither)."""
        custom = tuple(custom_attributes)
        width = self.model.config.autoencoder.z_sem_channels
        for extra in custom:
            if extra.z_sem_channels != width:
                raise ClassifierError(
                    f"custom attribute {', '.join(extra.attribute_names)} is for "
                    f"{extra.z_sem_channels}-d z_sem, this model's is {width}-d"
                )
        if self.classifier is None:
            return merge_classifiers(*custom) if custom else None
        return merge_classifiers(self.classifier, *custom) if custom else self.classifier

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
        request = rendering.check_request(
            self,
            session,
            strengths,
            locks=locks,
            targets=targets,
            T_render=T_render,
            seed=seed,
            custom_attributes=custom_attributes,
            paste=paste,
            measure=measure,
        )
        return rendering.render(
            self, request, feather=feather, progress=progress, preview=preview, cancel=cancel
        )

    def attributes(
        self, session: Session, *, custom_attributes: Sequence[AttributeClassifier] = ()
    ) -> dict[str, float]:
        """Classifier probability of every attribute for the session's face (no rendering).

        Raises:
            NoAttributeClassifier: the model has no classifier and no custom attribute is given.
        """
        return rendering.attributes(self, session, custom_attributes)

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

    # ------------------------------------------------------------------ new faces

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
        return sampling.interpolate(
            self, session_a, session_b, frames, T_render=T_render, progress=progress
        )

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
        return sampling.sample_sessions(
            self, n, seed=seed, T_render=T_render, T_latent=T_latent, push=push, progress=progress
        )

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
        faces = self.sample_sessions(
            n, seed=seed, T_render=T_render, T_latent=T_latent, push=push, progress=progress
        )
        return [s.crop for s in faces]

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
        return custom_attributes.semantic_codes(self, examples, aligned=aligned)

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
        return custom_attributes.custom_attribute(self, positive, negative, name, aligned=aligned)

    # ------------------------------------------------------------------ recipes and encodings

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
        return recipes.apply_recipe(
            self, photo, recipe, aligned=aligned, paste=paste, progress=progress
        )

    def export_encoding(self, session: Session, path: str | os.PathLike) -> Path:
        """Write the session's z_sem, x_T and crop to a safetensors file (no photo).

        Re-importing it with :meth:`import_encoding` renders identically (crops; there is no
        paste-back without the photo).
        """
        return encoding_files.export_encoding(self, session, path)

    def import_encoding(self, path: str | os.PathLike) -> Session:
        """Read an encoding written by :meth:`export_encoding` as an "imported" session.

        Raises:
            EncodingError: unreadable file, not an encoding, or made with another model.
        """
        return encoding_files.import_encoding(self, path)

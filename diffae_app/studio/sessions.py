"""From a picture to a :class:`~diffae_app.session.Session`: detect, align, encode, invert.

The expensive work happens once per photo and face: a caller that wants re-uploads to be free
passes its own :class:`~diffae_app.encoding_cache.EncodingCache` (one per user, never shared);
the studio itself keeps nothing of a user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..align import AlignedFace, Face, align_face, detect_faces
from ..encoding_cache import EncodingCache
from ..errors import FaceIndexError, StudioError
from ..imaging import ImageSource, image_to_tensor, load_image
from ..progress import PhaseProgress
from ..session import ProgressCallback, Session
from .arguments import is_whole, steps_or_default

if TYPE_CHECKING:
    from .facade import Studio

__all__ = [
    "MIN_RELATIVE_FACE_SCORE",
    "check_model",
    "check_session",
    "detect",
    "encode_aligned",
    "encode_photo",
    "photo_hash",
    "new_session",
    "usable_faces",
]

#: Faces whose detector score is below this fraction of the best face's score are not offered:
#: dlib "finds" faces in patches and textures with low scores (see align's ranking rule).
MIN_RELATIVE_FACE_SCORE = 0.5

_OTHER_MODEL = "this face was encoded with model {theirs}, not the loaded {ours}; encode it again"


def usable_faces(faces: Sequence[Face]) -> list[Face]:
    """Faces scoring at least :data:`MIN_RELATIVE_FACE_SCORE` of the best, order kept."""
    if not faces:
        return []
    best = max(f.score for f in faces)
    return [f for f in faces if best <= 0 or f.score >= MIN_RELATIVE_FACE_SCORE * best]


def photo_hash(image: Image.Image) -> str:
    """sha256 hex of the image's size and RGB pixels: a photo's identity for caching."""
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def check_session(studio: Studio, session: Session) -> None:
    """A session encoded by this studio's model (id and weights), else a one-line error."""
    if not isinstance(session, Session):
        raise StudioError("no face is encoded yet; upload a photo first")
    key = (session.model_id, session.model_revision)
    check_model(studio, key, StudioError, _OTHER_MODEL)


def check_model(
    studio: Studio, key: tuple[str, str], error: type[StudioError], message: str
) -> None:
    """Raise ``error(message)`` unless ``key`` (model id, weight fingerprint) is the loaded
    model's; ``{theirs}`` and ``{ours}`` in the message become "<id> (<fingerprint>)" (plain
    replacement, so other braces, e.g. in a file name, stay as they are)."""
    if tuple(key) != studio.model_key():
        theirs = f"{key[0]} ({key[1]})"
        ours = f"{studio.model_id} ({studio.model_revision})"
        raise error(message.replace("{theirs}", theirs).replace("{ours}", ours))


def detect(
    studio: Studio, image: Image.Image, digest: str, cache: EncodingCache | None = None
) -> list[Face]:
    """The usable faces of an upright image whose :func:`photo_hash` is ``digest``."""
    faces = cache.faces.get(digest) if cache is not None else None
    if faces is None:
        faces = usable_faces(detect_faces(image, studio.detector))
        if cache is not None:
            cache.faces.put(digest, faces)
    return faces


def encode_photo(
    studio: Studio,
    photo: ImageSource,
    *,
    face_index: int,
    T_inv: int | None,
    progress: ProgressCallback | None,
    cache: EncodingCache | None,
) -> Session:
    """See :meth:`Studio.encode_photo`."""
    T_inv = steps_or_default(T_inv, "T_inv")
    image = load_image(photo)
    digest = photo_hash(image)
    if not is_whole(face_index, numpy_ok=True):
        raise FaceIndexError(f"face index must be a whole number, got {face_index!r}")
    key = ("photo", digest, int(face_index), studio.model_key(), T_inv)
    cached = _cached(cache, key, progress)
    if cached is not None:
        return cached
    steps = PhaseProgress(progress, T_inv + 2)
    faces = detect(studio, image, digest, cache)
    if not 0 <= face_index < len(faces):
        count = f"{len(faces)} face{'s' if len(faces) != 1 else ''}"
        raise FaceIndexError(
            f"face {face_index} requested but the photo has {count} (numbered from 0)"
        )
    aligned = align_face(image, faces[face_index], studio.image_size)
    steps.advance("aligning the face")
    z_sem, x_T = _encode_crop(studio, aligned.image, T_inv, steps)
    session = new_session(
        studio,
        "photo",
        aligned.image,
        z_sem,
        x_T,
        photo=image,
        digest=digest,
        face_index=int(face_index),
        num_faces=len(faces),
        aligned=aligned,
        T_inv=T_inv,
    )
    return _store(cache, key, session)


def encode_aligned(
    studio: Studio,
    image: ImageSource,
    *,
    T_inv: int | None,
    progress: ProgressCallback | None,
    cache: EncodingCache | None,
) -> Session:
    """See :meth:`Studio.encode_aligned`."""
    T_inv = steps_or_default(T_inv, "T_inv")
    picture = load_image(image)
    crop = square_crop(
        picture, studio.image_size, hint="encode it as a photo to detect and align the face"
    )
    digest = photo_hash(picture)
    key = ("aligned", digest, studio.model_key(), T_inv)
    cached = _cached(cache, key, progress)
    if cached is not None:
        return cached
    steps = PhaseProgress(progress, T_inv + 2)
    steps.advance("preparing the face")
    z_sem, x_T = _encode_crop(studio, crop, T_inv, steps)
    session = new_session(
        studio, "aligned", crop, z_sem, x_T, photo=picture, digest=digest, T_inv=T_inv
    )
    return _store(cache, key, session)


def square_crop(picture: Image.Image, size: int, *, hint: str = "") -> Image.Image:
    """An already-aligned square face at the model's side ``size`` (Lanczos when resized).

    Raises:
        StudioError: the picture is not square (``hint`` says what to do instead).
    """
    if picture.width != picture.height:
        raise StudioError(
            f"an aligned face must be square, got {picture.width}×{picture.height}"
            + (f"; {hint}" if hint else "")
        )
    return picture if picture.width == size else picture.resize((size, size), Image.LANCZOS)


def new_session(
    studio: Studio,
    kind: str,
    crop: Image.Image,
    z_sem: torch.Tensor,
    x_T: torch.Tensor,
    *,
    photo: Image.Image | None = None,
    digest: str | None = None,
    face_index: int = 0,
    num_faces: int = 1,
    aligned: AlignedFace | None = None,
    T_inv: int = 0,
) -> Session:
    """A session of this studio's model. ``photo`` defaults to the crop (a sampled face, an
    imported encoding), ``digest`` to the photo's :func:`photo_hash`."""
    photo = crop if photo is None else photo
    return Session(
        kind=kind,
        photo=photo,
        photo_hash=digest if digest is not None else photo_hash(photo),
        face_index=face_index,
        num_faces=num_faces,
        aligned=aligned,
        crop=crop,
        z_sem=z_sem,
        x_T=x_T,
        T_inv=T_inv,
        model_id=studio.model_id,
        model_revision=studio.model_revision,
    )


def _cached(
    cache: EncodingCache | None, key: tuple, progress: ProgressCallback | None
) -> Session | None:
    """The caller's cached session under ``key`` (progress then jumps to done), or None."""
    cached = cache.sessions.get(key) if cache is not None else None
    if cached is not None:
        PhaseProgress(progress, 1).finish("encoding (cached)")
    return cached


def _store(cache: EncodingCache | None, key: tuple, session: Session) -> Session:
    """The new session, kept under ``key`` in the caller's cache (if any)."""
    if cache is not None:
        cache.sessions.put(key, session)
    return session


def _encode_crop(
    studio: Studio, crop: Image.Image, T_inv: int, steps: PhaseProgress
) -> tuple[torch.Tensor, torch.Tensor]:
    """z_sem (1, D) and x_T (1, 3, S, S), on the CPU."""
    x = image_to_tensor(crop)[None]
    with torch.inference_mode():
        z_sem = studio.model.encode(x)
        steps.advance("encoding (semantic encoder)")
        x_T = studio.model.encode_stochastic(
            x, z_sem, T_inv, callback=steps.ddim("inverting (DDIM)")
        )
    steps.finish("encoded")
    return z_sem.cpu(), x_T.cpu()

"""face-alignment's weight files: where they live, their sha256 check, the opt-in download.

face-alignment itself would download missing weights silently on first use; here nothing is
fetched without ``allow_download=True``, and every file is checked against the sha256 prefix in
its name (torch hub's convention) on download and before use.

Code that swaps these settings (tests, a benchmark with stand-in weights) patches them on this
module: the functions below read them from here at call time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from .errors import DetectorUnavailable

__all__ = [
    "FAN_WEIGHTS_URL",
    "FAN_WEIGHT_FILES",
    "check_fan_weights",
    "download_fan_weights",
    "fan_hash_prefix",
    "fan_weights_dir",
    "ready_fan_weights",
]

#: Files face-alignment 1.5 looks for in ``$TORCH_HOME/hub/checkpoints`` (the S3FD detector and
#: the 2D FAN-4 landmark network); without them it would try to download them.
FAN_WEIGHT_FILES = ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar")
#: Where those files are published.
FAN_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/"

# Files read with this many bytes per chunk while hashing (~90 MB each).
_HASH_CHUNK = 1 << 20


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


def download_fan_weights(folder: Path, names: Sequence[str]) -> None:
    """Fetch ``names`` from :data:`FAN_WEIGHTS_URL` into ``folder``, each hash-checked.

    Raises:
        DetectorUnavailable: one line naming the file whose download failed and why.
    """
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


def ready_fan_weights(*, allow_download: bool) -> tuple[Path, ...]:
    """The checked weight files, in :data:`FAN_WEIGHT_FILES` order (detector first).

    Args:
        allow_download: fetch missing files first (~90 MB each); never by default.

    Raises:
        DetectorUnavailable: a file is missing (and could not be downloaded) or fails its
            hash check; one line saying which and where it goes.
    """
    folder = fan_weights_dir()
    missing = [name for name in FAN_WEIGHT_FILES if not (folder / name).is_file()]
    if missing and allow_download:
        download_fan_weights(folder, missing)
        missing = []
    if missing:
        raise DetectorUnavailable(
            f"face-alignment weights missing: put {' and '.join(missing)} (from "
            f"{FAN_WEIGHTS_URL}) in {folder} or point TORCH_HOME elsewhere"
        )
    paths = tuple(folder / name for name in FAN_WEIGHT_FILES)
    for path in paths:
        check_fan_weights(path)
    return paths

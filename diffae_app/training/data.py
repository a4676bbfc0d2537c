"""Training data: image folders, the official LMDB datasets, and generated SynthFaces.

Every source is a map-style dataset returning float32 (3, S, S) tensors in [-1, 1]. A file
that cannot be decoded raises `UnreadableItem`; `BatchReader` skips it (counted, one
warning per file) by taking the next index, so an epoch never crashes on a bad file and
every rank still reads a deterministic sequence.
"""

from __future__ import annotations

import io
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm"}


class DatasetError(ValueError):
    """The dataset cannot be used at all (empty, missing, wrong resolution)."""


class UnreadableItem(Exception):
    """One item could not be decoded; the reader skips it."""


def to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> (3, size, size) float32 in [-1, 1]: RGB, centre square crop, resize."""
    image = image.convert("RGB")
    w, h = image.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def _decode(data: bytes | Path, size: int, name: str) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            image.load()
            return to_tensor(image, size)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,  # truncated GIF/TIFF frames
        zlib.error,  # corrupt PNG data streams
        Image.DecompressionBombError,  # not an OSError: would otherwise end the epoch
    ) as exc:
        raise UnreadableItem(f"{name}: {exc}") from None


class ImageFolder(torch.utils.data.Dataset):
    """All images below `root` (recursive, sorted), resized to `size`."""

    def __init__(self, root: str | os.PathLike, size: int) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"image folder {self.root} does not exist")
        self.size = size
        self.files = sorted(
            p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.files:
            raise DatasetError(
                f"image folder {self.root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )

    def __len__(self) -> int:
        return len(self.files)

    def item_id(self, index: int) -> str:
        return str(self.files[index].relative_to(self.root))

    def __getitem__(self, index: int) -> torch.Tensor:
        return _decode(self.files[index], self.size, str(self.files[index]))


_LMDB_ENVIRONMENTS: dict[tuple[int, str], object] = {}


class LmdbImages(torch.utils.data.Dataset):
    """The official DiffAE LMDB layout: key b'length' -> count; f'{res}-{i:05d}' -> image bytes.

    `resolution` is the one the LMDB was written at (256 for ffhq256.lmdb); images are then
    resized to `size`.
    """

    def __init__(self, path: str | os.PathLike, size: int, resolution: int | None = None) -> None:
        try:
            import lmdb
        except ImportError:
            raise DatasetError(
                "reading LMDB datasets needs the lmdb package of requirements-train.txt; run "
                "`pip install -r requirements-train.txt`"
            ) from None

        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"LMDB {self.path} does not exist")
        self.size = size
        self.resolution = resolution or size
        self._env = None
        env = self._open(lmdb)
        with env.begin(write=False) as txn:
            length = txn.get(b"length")
            if length is None:
                raise DatasetError(
                    f"LMDB {self.path} has no 'length' key; not a DiffAE dataset LMDB"
                )
            self.length = int(length.decode("utf-8"))
            if self.length <= 0:
                raise DatasetError(f"LMDB {self.path} is empty (length {self.length})")
            if txn.get(self._key(0)) is None:
                raise DatasetError(
                    f"LMDB {self.path} has no item {self._key(0).decode()}: it was written for "
                    f"another resolution than {self.resolution}; pass the right --lmdb-resolution"
                )

    def _open(self, lmdb_module=None):
        if self._env is None:
            if lmdb_module is None:
                import lmdb as lmdb_module
            # lmdb refuses to open one environment twice in a process ("already open"), so
            # datasets on the same file (e.g. training + encoding) share one read-only handle.
            key = (os.getpid(), os.path.realpath(self.path))
            env = _LMDB_ENVIRONMENTS.get(key)
            if env is None:
                env = lmdb_module.open(
                    str(self.path),
                    readonly=True,
                    lock=False,
                    readahead=False,
                    meminit=False,
                    max_readers=64,
                )
                _LMDB_ENVIRONMENTS[key] = env
            self._env = env
        return self._env

    def _key(self, index: int) -> bytes:
        return f"{self.resolution}-{str(index).zfill(5)}".encode()

    def __len__(self) -> int:
        return self.length

    def item_id(self, index: int) -> str:
        return self._key(index).decode()

    def __getitem__(self, index: int) -> torch.Tensor:
        with self._open().begin(write=False) as txn:
            data = txn.get(self._key(index))
        if data is None:
            raise UnreadableItem(f"{self.path}: key {self._key(index).decode()} is missing")
        return _decode(bytes(data), self.size, f"{self.path}:{self._key(index).decode()}")

    def __getstate__(self):  # an lmdb environment cannot cross process boundaries
        state = dict(self.__dict__)
        state["_env"] = None
        return state


class SynthFacesImages(torch.utils.data.Dataset):
    """Procedural faces drawn on the fly from seeds [start, start + length)."""

    def __init__(self, size: int, start: int = 0, length: int = 1_000_000) -> None:
        from ..data import synthfaces

        self._render = synthfaces.generate
        self.size, self.start, self.length = size, start, length

    def __len__(self) -> int:
        return self.length

    def item_id(self, index: int) -> str:
        return f"synthfaces-{self.start + index}"

    def __getitem__(self, index: int) -> torch.Tensor:
        image, _ = self._render(self.start + index, self.size)
        return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1.0


def open_dataset(spec: str, size: int, *, lmdb_resolution: int | None = None):
    """A dataset from a spec: a folder path, `lmdb:PATH` (or a *.lmdb path), or
    `synthfaces[:START[:COUNT]]`."""
    if spec.startswith("synthfaces"):
        parts = spec.split(":")[1:]
        start = int(parts[0]) if parts else 0
        length = int(parts[1]) if len(parts) > 1 else 1_000_000
        return SynthFacesImages(size, start, length)
    if spec.startswith("lmdb:") or spec.rstrip("/").endswith(".lmdb"):
        return LmdbImages(spec.removeprefix("lmdb:"), size, lmdb_resolution)
    return ImageFolder(spec, size)


@dataclass
class BatchReader:
    """Reads batches by index, skipping unreadable items deterministically."""

    dataset: torch.utils.data.Dataset
    max_consecutive_failures: int = 50

    def __post_init__(self) -> None:
        self.skipped: set[int] = set()

    def read(self, index: int) -> torch.Tensor:
        n = len(self.dataset)
        for attempt in range(self.max_consecutive_failures):
            i = (index + attempt) % n
            try:
                return self.dataset[i]
            except UnreadableItem as exc:
                if i not in self.skipped:
                    self.skipped.add(i)
                    log.warning("skipping unreadable item (%d so far): %s", len(self.skipped), exc)
        raise DatasetError(
            f"{self.max_consecutive_failures} consecutive unreadable items from index {index}; "
            "is the dataset corrupt?"
        )

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.read(int(i)) for i in indices])


def epoch_order(num_items: int, epoch: int, seed: int) -> torch.Tensor:
    """The shuffled item order of an epoch: the same on every rank and after a resume."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_items, generator=generator)


def global_batch_indices(num_items: int, step: int, global_batch: int, seed: int) -> torch.Tensor:
    """Item indices of optimiser step `step` (0-based) for all ranks together.

    Steps walk through shuffled epochs; a batch that crosses an epoch boundary takes the
    rest of one epoch and the start of the next.
    """
    start = step * global_batch
    out = []
    while len(out) < global_batch:
        epoch, offset = divmod(start + len(out), num_items)
        order = epoch_order(num_items, epoch, seed)
        out.extend(order[offset : offset + global_batch - len(out)].tolist())
    return torch.tensor(out)

"""Shared pieces of the app tests (imported by the other tests/test_app_*.py modules).

* :func:`build_tiny_bundle`: a tiny32 bundle with random weights, a latent DPM and a
  SynthFaces-named classifier artefact: the whole app runs on it in seconds.
* :func:`app_model`: the model the app tests run on: the bundled SynthFaces-64 when it is
  installed (server tests), the tiny bundle for the in-process handler tests (fast);
  ``DIFFAE_TEST_MODEL=tiny|bundled`` overrides.
* :class:`AppServer`: ``python app.py`` in a subprocess on a free port, waited for by its
  ready line, with its output collected (the real launch path, as a user runs it).
* bad-input file makers shared by the handler and browser tests.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "assets" / "models" / "synthfaces64"
EXAMPLES = REPO / "assets" / "examples"
ARTIFACTS = REPO / "test-artifacts" / "app"


def build_tiny_bundle(folder: Path, config: Any = None) -> Path:
    """A complete bundle (autoencoder, latent DPM, classifier) with random weights, of the
    tiny32 preset or of the given ModelConfig (e.g. :func:`tiny256_config`)."""
    from diffae_app.classifier import AttributeClassifier
    from diffae_app.config import preset
    from diffae_app.data.synthfaces import ATTRIBUTES, generate
    from diffae_app.diffae import DiffAE
    from diffae_app.imaging import image_to_tensor
    from diffae_app.models import AutoencoderNet, LatentNet

    if (folder / "config.json").is_file():
        return folder
    config = config or preset("tiny32")
    size = config.autoencoder.image_size
    generator = torch.manual_seed(1234)
    autoencoder = AutoencoderNet(config.autoencoder)
    latent = LatentNet(config.latent_net)
    width = config.autoencoder.z_sem_channels
    model = DiffAE.from_state(
        config,
        autoencoder.state_dict(),
        latent_state=latent.state_dict(),
        z_mean=torch.zeros(width),
        z_std=torch.ones(width),
    )
    # Statistics of real inputs, so the classifier's probabilities are spread out.
    faces = torch.stack([image_to_tensor(Image.fromarray(generate(s, size)[0])) for s in range(16)])
    z = model.encode(faces)
    z_mean, z_std = z.mean(0), z.std(0).clamp_min(1e-3)
    weight = torch.randn(len(ATTRIBUTES), width, generator=generator) / width**0.5
    classifier = AttributeClassifier(
        attribute_names=tuple(ATTRIBUTES),
        weight=weight,
        bias=torch.zeros(len(ATTRIBUTES)),
        z_mean=z_mean,
        z_std=z_std,
        source="random test classifier",
    )
    model = DiffAE.from_state(
        config,
        autoencoder.state_dict(),
        latent_state=latent.state_dict(),
        z_mean=z_mean,
        z_std=z_std,
        classifiers={"synthfaces": classifier},
    )
    model.save_pretrained(folder, model_card="tiny random test bundle\n")
    return folder


def tiny256_config() -> Any:
    """A 256-px model of tiny width (16 channels): the FFHQ256 image size, so the app's
    256-px paths (previews, paste-back) run, at a small fraction of FFHQ256's cost."""
    from diffae_app.config import AutoencoderConfig, LatentNetConfig, ModelConfig, preset

    autoencoder = AutoencoderConfig(
        image_size=256,
        model_channels=16,
        # One width everywhere: the skip concatenations (32) stay divisible by GroupNorm's 32.
        channel_mult=(1, 1, 1, 1, 1, 1),
        encoder_channel_mult=(1, 1, 1, 1, 1, 1, 1),
        num_res_blocks=1,
        encoder_num_res_blocks=1,
        attention_resolutions=(16,),
        time_embed_channels=32,
        z_sem_channels=64,
        dropout=0.0,
    )
    latent = LatentNetConfig(
        num_channels=64, num_hid_channels=128, num_layers=3, skip_layers=(1, 2)
    )
    return ModelConfig("tiny256", autoencoder, latent, sampler=preset("synthfaces64").sampler)


def app_model(tmp_root: Path, *, prefer: str = "bundled") -> str:
    """Folder of the model the app tests use.

    ``DIFFAE_TEST_MODEL`` = ``bundled`` or ``tiny`` decides; otherwise (``auto``) ``prefer``
    does, and the bundled model is used only when it is installed.
    """
    choice = os.environ.get("DIFFAE_TEST_MODEL", "auto")
    if choice == "auto":
        choice = prefer
    if choice == "bundled" and (BUNDLED / "config.json").is_file():
        return str(BUNDLED)
    return str(build_tiny_bundle(tmp_root / "tiny32-bundle"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny32")


# --------------------------------------------------------------------------- photos


def real_photo(folder: Path) -> Path:
    """skimage's astronaut (512×512) as a PNG file; skips the test when unavailable."""
    skimage_data = pytest.importorskip("skimage.data")
    path = folder / "astronaut.png"
    if not path.is_file():
        Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def bad_inputs(folder: Path) -> dict[str, Path]:
    """Files for every bad-input case of issue 7, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    face = Image.open(EXAMPLES / "face_a.png").convert("RGB")
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **kwargs)
        return buffer.getvalue()

    put("not_an_image.png", b"this is a text file, not a picture\n" * 20)
    put("empty.jpg", b"")
    jpeg = encoded(face, "JPEG", quality=90)
    put("truncated.jpg", jpeg[: len(jpeg) // 3])
    put("corrupt.png", encoded(face, "PNG")[:60] + os.urandom(400))
    # A decompression bomb: a ~100 kB PNG that inflates to 30000×30000 pixels.
    put("bomb.png", png_bomb(30000))
    # 12000×12000 (144 Mpx, over the 50 Mpx limit): a real, highly compressible JPEG.
    put("huge.jpg", encoded(Image.new("L", (12000, 12000), 128), "JPEG", quality=30))
    put("tiny_face.png", encoded(face.resize((40, 40), Image.LANCZOS), "PNG"))
    put("grayscale.png", encoded(face.convert("L"), "PNG"))
    put("cmyk.jpg", encoded(face.convert("CMYK"), "JPEG", quality=92))
    sixteen = (np.asarray(face.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    put("sixteen_bit.png", encoded(Image.fromarray(sixteen), "PNG"))
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.new("L", face.size, 200))
    put("rgba.png", encoded(rgba, "PNG"))
    put("palette.png", encoded(face.convert("P", palette=Image.ADAPTIVE), "PNG"))
    frames = [face, face.transpose(Image.FLIP_LEFT_RIGHT)]
    put("animated.gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    # A phone photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to view).
    exif = Image.Exif()
    exif[0x0112] = 6
    put("exif_rotated.jpg", encoded(face.transpose(Image.ROTATE_90), "JPEG", quality=92, exif=exif))
    put("no_face.png", encoded(Image.new("RGB", (256, 256), (90, 140, 200)), "PNG"))
    two = Image.open(EXAMPLES / "two_faces.png").convert("RGB")
    put("two_faces.png", encoded(two, "PNG"))
    # A real face at the left border: its FFHQ crop square leaves the photo (padding needed).
    skimage_data = pytest.importorskip("skimage.data")
    astronaut = Image.fromarray(skimage_data.astronaut())
    put("face_at_border.png", encoded(astronaut.crop((160, 0, 512, 420)), "PNG"))
    return files


def png_bomb(side: int) -> bytes:
    """A valid 1-bit PNG of side × side black pixels: tiny file, huge image."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``python app.py`` in a subprocess; ``url`` once its ready line was printed."""

    READY = "DiffAE Studio ready at"

    def __init__(self, model: str, *, env: dict[str, str] | None = None, timeout: float = 240):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        full_env = dict(os.environ)
        full_env.update(
            {
                "DIFFAE_MODEL": model,
                "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_SERVER_PORT": str(self.port),
                "GRADIO_ANALYTICS_ENABLED": "False",
                "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                if self.READY in line:
                    ready.set()

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("app.py did not start:\n" + "".join(self.lines[-60:]))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


_SERVER: AppServer | None = None


def shared_server(tmp_path_factory: pytest.TempPathFactory) -> AppServer:
    """One ``python app.py`` for all app test modules of a pytest run (stopped at exit)."""
    global _SERVER
    if _SERVER is None or _SERVER.process.poll() is not None:
        import atexit

        model = app_model(tmp_path_factory.getbasetemp())
        _SERVER = AppServer(model)
        atexit.register(_SERVER.stop)
    return _SERVER

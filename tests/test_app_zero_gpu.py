"""ZeroGPU start-up, simulated: the real ``spaces`` package in ZeroGPU mode, with a stub of the
platform's device API on 127.0.0.1 (issue 21).

``spaces`` refuses to load once CUDA is initialised, so ``app.py`` must import it before the
device choice runs; with it imported first, torch's CUDA calls are emulated, the model's move
to ``cuda`` is recorded and its weights packed, and the app reports to the device API before
it listens. Requests cannot be simulated: a ``@spaces.GPU`` call attaches a real GPU.
"""

from __future__ import annotations

import http.server
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diffae_app.ui import runtime

ROOT = Path(__file__).resolve().parents[1]
READY = "DiffAE Studio ready at"


class _DeviceApiStub(http.server.BaseHTTPRequestHandler):
    """Answers every call 200 with an empty body (all that start-up needs) and records it."""

    calls: list[str]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.calls.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def device_api() -> Iterator[tuple[str, list[str]]]:
    calls: list[str] = []
    handler = type("Handler", (_DeviceApiStub,), {"calls": calls})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", calls
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_lines(stream, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def test_zero_gpu_startup_with_stub_device_api(device_api, tmp_path: Path) -> None:
    pytest.importorskip("spaces", reason="`spaces` is in requirements.txt")
    url, calls = device_api
    offload = tmp_path / "zerogpu-tensors"
    env = {
        **os.environ,
        "SPACES_ZERO_GPU": "true",
        "SPACES_ZERO_DEVICE_API_URL": url,
        "SPACE_ID": "test/diffae-studio",
        # Where `spaces` packs the weights, and which cached files it may delete after
        # packing (by default the user's Hugging Face cache): both inside the test folder.
        "ZEROGPU_OFFLOAD_DIR": str(offload),
        "ZEROGPU_MMAP_AUTOPRUNE_PATTERN": str(tmp_path / "no-such-cache" / "*"),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(_free_port()),
        "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DIFFAE_MODEL", None)
    env.pop("DIFFAE_DEVICE", None)
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None and lines.empty():
                    break
                continue
            output.append(line)
            if READY in line:
                break
        log = "".join(output)
        assert "CUDA has been initialized before importing the `spaces` package" not in log
        assert any(READY in line for line in output), f"app did not start:\n{log[-3000:]}"
        # ZeroGPU's placement: the model was moved to (emulated) CUDA at start-up, so its
        # weights were packed for transfer to the GPU of each @spaces.GPU call...
        packed = sum(f.stat().st_size for f in offload.iterdir())
        assert packed > 10_000_000, f"only {packed} bytes of weights packed"
        # ...and the app reported to the platform before listening.
        assert "POST /startup-report" in calls
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_spaces_is_imported_only_on_zero_gpu(monkeypatch) -> None:
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert runtime.import_spaces_if_zero_gpu() is False

    def plain(x: int) -> int:
        return x

    assert runtime.gpu()(plain) is plain


def test_zero_gpu_without_spaces_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", None)  # makes `import spaces` fail
    with pytest.raises(SystemExit, match="`spaces` package is not installed"):
        runtime.import_spaces_if_zero_gpu()

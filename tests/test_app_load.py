"""Load: 8 concurrent API clients editing for 60 s against ``python app.py``.

Each client uploads its own photo, of a size no other client uses, then edits it over and
over with strengths only it sends. Checked: no request fails, every result is the client's
own (its photo size, its strengths), and the server's resident memory grows by less than 10%
between the end of the warm-up and the end of the run.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from .test_app_fixtures import EXAMPLES, AppServer, app_model

pytestmark = pytest.mark.slow

CLIENTS = int(os.environ.get("DIFFAE_LOAD_CLIENTS", "8"))
DURATION_S = float(os.environ.get("DIFFAE_LOAD_SECONDS", "60"))
ATTRIBUTES = ("Smiling", "Eyeglasses", "Bangs", "Blond_Hair", "Wearing_Hat", "Beard")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc; no extra dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    if not Path("/proc/self/status").is_file():
        pytest.skip("memory is measured through /proc")
    app = AppServer(
        app_model(tmp_path_factory.getbasetemp()),
        env={"DIFFAE_CONCURRENCY": "2", "DIFFAE_QUEUE_SIZE": "64"},
    )
    yield app
    app.stop()


def client_photos(folder: Path) -> list[Path]:
    """One photo per client: an example face on a canvas of a size unique to that client."""
    faces = sorted(EXAMPLES.glob("face_*.png"))
    paths = []
    for k in range(CLIENTS):
        face = Image.open(faces[k % len(faces)]).convert("RGB")
        canvas = Image.new("RGB", (256 + 16 * k, 256 + 8 * k), (200, 190, 180))
        canvas.paste(face, (8 * k, 4 * k))
        path = folder / f"client{k}.png"
        canvas.save(path)
        paths.append(path)
    return paths


def test_eight_clients_for_a_minute(server: AppServer, tmp_path: Path):
    from gradio_client import Client, handle_file

    photos = client_photos(tmp_path)
    errors: list[str] = []
    mismatches: list[str] = []
    counts = [0] * CLIENTS
    warmed = threading.Barrier(CLIENTS + 1)
    stop = threading.Event()

    def work(k: int) -> None:
        rng = random.Random(k)
        expected_size = Image.open(photos[k]).size
        try:
            c = Client(server.url, verbose=False)
            c.predict(handle_file(str(photos[k])), 0, "preview", False, api_name="/encode")
            c.predict({"Smiling": 0.1}, [], {}, "preview", -1, api_name="/edit")
        except Exception as error:  # noqa: BLE001
            errors.append(f"client {k} warm-up: {error!r}")
            warmed.abort()
            return
        try:
            warmed.wait(timeout=600)
        except threading.BrokenBarrierError:
            return
        while not stop.is_set():
            strengths = {rng.choice(ATTRIBUTES): round(rng.uniform(-1, 1), 3), "Smiling": k / 10}
            try:
                _, photo, result = c.predict(strengths, [], {}, "preview", -1, api_name="/edit")
            except Exception as error:  # noqa: BLE001
                errors.append(f"client {k}: {error!r}")
                continue
            size = Image.open(photo).size
            if size != expected_size or result["recipe"]["strengths"] != strengths:
                mismatches.append(f"client {k}: got {size}, {result['recipe']['strengths']}")
            counts[k] += 1

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        warmed.wait(timeout=600)
    except threading.BrokenBarrierError:
        pytest.fail("warm-up failed: " + "; ".join(errors))
    baseline = rss_bytes(server.process.pid)
    time.sleep(DURATION_S)
    stop.set()
    for t in threads:
        t.join(timeout=300)
    final = rss_bytes(server.process.pid)

    growth = (final - baseline) / baseline
    report = (
        f"{CLIENTS} clients, {DURATION_S:.0f} s: {sum(counts)} edits {counts}; "
        f"server RSS {baseline / 2**20:.0f} -> {final / 2**20:.0f} MiB ({growth:+.1%})"
    )
    print(report)
    assert not errors, errors[:5]
    assert not mismatches, mismatches[:5]
    assert all(n > 0 for n in counts), report
    assert growth < 0.10, report

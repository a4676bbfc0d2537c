"""The app's resident memory under load: ``python app.py`` driven by API clients for minutes.

    python benchmarks/app_memory.py [--clients 4] [--minutes 5] [--photo-mpx 2]

Starts the app on the bundled model as a user would (``python app.py``, offline), then each
client encodes its own photo (a real portrait, scaled to ``--photo-mpx`` megapixels and to a
size no other client uses) and edits it over and over through ``/edit`` (balanced quality,
random strengths), the same calls as the browser's slider releases. Prints the server's RSS
at launch, after the first encode of every client (warm-up: detector and first-use buffers)
and then every ``--every`` seconds, as a table; the growth that matters is the one after
warm-up.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _bench import REPO, machine_line, table
from PIL import Image

ATTRIBUTES = ("Smiling", "Eyeglasses", "Bangs", "Blond_Hair", "Wearing_Hat", "Beard")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "app.py")],
        cwd=REPO,
        env={
            **os.environ,
            "GRADIO_SERVER_PORT": str(port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "DiffAE Studio ready at" in line:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process
    raise RuntimeError("app.py exited before it was ready")


def client_photos(folder: Path, count: int, megapixels: float) -> list[Path]:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as source:
        portrait = Image.open(source).convert("RGB")
    scale = (megapixels * 1e6 / (portrait.width * portrait.height)) ** 0.5
    paths = []
    for k in range(count):
        size = (round(portrait.width * scale) + 8 * k, round(portrait.height * scale) + 8 * k)
        path = folder / f"client{k}.jpg"
        portrait.resize(size, Image.LANCZOS).save(path, quality=92)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=60.0)
    parser.add_argument("--photo-mpx", type=float, default=2.0)
    parser.add_argument("--quality", default="balanced")
    parser.add_argument(
        "--new-photo-every",
        type=int,
        default=0,
        help="each client uploads a new, distinct photo after this many edits (0: never)",
    )
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    folder = Path(tempfile.mkdtemp(prefix="diffae-memory-"))
    photos = client_photos(folder, args.clients, args.photo_mpx)
    port = free_port()
    app = start_app(port, {"GRADIO_TEMP_DIR": str(folder / "gradio")})
    url = f"http://127.0.0.1:{port}/"
    rows = [["launch", 0, f"{rss_mib(app.pid):.0f}"]]
    edits = [0] * args.clients
    errors: list[str] = []
    warmed = threading.Barrier(args.clients + 1)
    stop = threading.Event()

    def work(k: int) -> None:
        rng = random.Random(k)
        client = Client(url, verbose=False)
        client.predict(handle_file(str(photos[k])), 0, args.quality, False, api_name="/encode")
        warmed.wait()
        uploads = 0
        while not stop.is_set():
            strengths = {rng.choice(ATTRIBUTES): round(rng.uniform(-1.5, 1.5), 2)}
            try:
                every = args.new_photo_every
                if every and edits[k] and edits[k] % every == 0:
                    uploads += 1  # a new photo: same portrait, a size never uploaded before
                    path = folder / f"client{k}-{uploads}.jpg"
                    with Image.open(photos[k]) as photo:
                        size = (photo.width + 2 * uploads, photo.height + 2 * uploads)
                        photo.resize(size).save(path, quality=92)
                    client.predict(
                        handle_file(str(path)), 0, args.quality, False, api_name="/encode"
                    )
                client.predict(strengths, [], {}, args.quality, -1, api_name="/edit")
                edits[k] += 1
            except Exception as error:  # noqa: BLE001 - reported, the run goes on
                errors.append(repr(error))

    try:
        threads = [
            threading.Thread(target=work, args=(k,), daemon=True) for k in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        warmed.wait(timeout=900)
        start = time.monotonic()
        rows.append(["all clients encoded (warm-up)", sum(edits), f"{rss_mib(app.pid):.0f}"])
        while (elapsed := time.monotonic() - start) < args.minutes * 60:
            time.sleep(min(args.every, args.minutes * 60 - elapsed))
            minutes = (time.monotonic() - start) / 60
            rows.append([f"{minutes:.1f} min of edits", sum(edits), f"{rss_mib(app.pid):.0f}"])
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        app.terminate()
        app.wait(30)
    churn = f", a new photo every {args.new_photo_every} edits" if args.new_photo_every else ""
    print(f"# App memory under load: {args.clients} clients, {args.photo_mpx:g} Mpx photos{churn}")
    print(f"{machine_line()}; {len(errors)} errors")
    print()
    print(table(["moment", "edits so far", "server RSS (MiB)"], rows))


if __name__ == "__main__":
    main()

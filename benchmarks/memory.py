"""Peak memory (RSS) of an editing session: load a bundle, encode, invert, render.

    python benchmarks/memory.py [--configs ffhq256] [--precisions float32 bfloat16] [--steps 2]
        [--pythons python /path/to/cpu-venv/bin/python]

Each measurement runs in a fresh subprocess so peaks do not mix. The bundle is written once
with random weights (same size as a real one) to a temporary folder. A session = the
`DiffAE.from_pretrained` load, `encode` of one image, `encode_stochastic(T=steps)` and
`render(T=steps)`: step counts do not change the peak (activations are freed each step).
On a CUDA machine the session runs on the GPU and its peak allocated GPU memory is added.

Reported: the kernel's peak resident set (VmHWM, /proc/self/status), its anonymous part
(RssAnon, sampled every 2 ms: the memory the process itself allocated), and what
`import torch` alone costs (shared-library pages: ~0.7 GB for the CUDA build of torch, of
which ~0.4 GB are file-backed library pages shared with every other torch process).
`--pythons` runs the session under other interpreters too, e.g. a venv with the CPU-only
build of torch (what a CPU deployment installs), so both builds land in one table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _bench import CONFIG_ALIASES, machine_line, table


def _status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process in bytes."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) * 1024
    return values


class _PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_anon = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak_anon = max(self.peak_anon, _status()["RssAnon"])
            time.sleep(0.002)


def child(bundle: str, precision: str, steps: int) -> None:
    """Runs in the subprocess: one session, prints a JSON line."""
    sampler = _PeakSampler()
    sampler.start()
    import torch

    from diffae_app import DiffAE

    report: dict[str, object] = {"import": _status()}
    start = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = DiffAE.from_pretrained(bundle, precision=precision, device=device)
    report["load_seconds"] = time.perf_counter() - start
    report["loaded"] = _status()
    report["load_peak_anon"] = sampler.peak_anon
    size = model.image_size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=gen) * 2 - 1
    z_sem = model.encode(x)
    x_T = model.encode_stochastic(x, z_sem, T=steps)
    model.render(x_T, z_sem, T=steps)
    sampler.running = False
    sampler.join()
    report["end"] = _status()
    report["peak_anon"] = sampler.peak_anon
    report["gpu_peak"] = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    report["weights"] = sum(p.numel() * p.element_size() for p in model.autoencoder.parameters())
    report["torch"] = torch.__version__
    print("RESULT " + json.dumps(report))


def make_bundle(config_name: str, directory: Path) -> None:
    """A bundle of random weights in its own subprocess (keeps the parent small)."""
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[3]);"
        "from _bench import random_model;"
        "random_model(sys.argv[1], precision='float32', device=torch.device('cpu'))"
        ".save_pretrained(sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", code, config_name, str(directory), str(Path(__file__).parent)],
        check=True,
    )


def measure(bundle: Path, precision: str, steps: int, python: str) -> dict:
    # Another interpreter's venv need not have the project installed: put the repo on its path.
    repo = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
    }
    out = subprocess.run(
        [python, __file__, "--child", str(bundle), precision, str(steps)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["ffhq256"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--pythons", nargs="+", default=[sys.executable], help="interpreters to run sessions in"
    )
    args = parser.parse_args()
    print("# memory:", machine_line())

    def mb(value: float) -> str:
        return f"{value / 1e6:.0f} MB"

    rows = []
    for name in args.configs:
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / name
            make_bundle(name, bundle)
            file_mb = (bundle / "autoencoder.safetensors").stat().st_size
            for python, precision in [(py, pr) for py in args.pythons for pr in args.precisions]:
                r = measure(bundle, precision, args.steps, python)
                rows.append(
                    [
                        f"{name} ({CONFIG_ALIASES.get(name, name)})",
                        r["torch"],
                        precision,
                        mb(file_mb),
                        mb(r["weights"]),
                        mb(r["import"]["VmRSS"]),
                        mb(r["loaded"]["VmRSS"]),
                        mb(r["end"]["VmHWM"]),
                        mb(r["import"]["RssAnon"]),
                        mb(r["peak_anon"]),
                        mb(r["end"]["VmHWM"] - r["import"]["VmRSS"]),
                        f"{r['load_seconds']:.1f} s",
                        mb(r["gpu_peak"]) if r["gpu_peak"] else "-",
                    ]
                )
                print(
                    f"  {name} {r['torch']} {precision}: peak {mb(r['end']['VmHWM'])}", flush=True
                )
    print()
    print(
        table(
            [
                "model",
                "torch",
                "precision",
                "bundle file",
                "weights held",
                "RSS after import torch",
                "RSS after load",
                "peak RSS (VmHWM)",
                "anon after import",
                "peak anon",
                "peak − import",
                "load time",
                "GPU peak allocated",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()

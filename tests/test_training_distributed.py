"""Two CPU processes (torchrun, gloo): the autoencoder stage trains with DDP, checkpoints and
exports from rank 0 alone, and both ranks took part; the sharded encoder gives the same
latents file as one process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffae_app import DiffAE
from diffae_app.data.synthfaces import write_image_folder
from diffae_app.training.latents import load_latents

TRAIN = Path(__file__).resolve().parents[1] / "train"


def _torchrun(script: str, *args: object) -> subprocess.CompletedProcess:
    # `accelerate launch --multi_gpu --num_processes 2 ...` starts the same two processes on a
    # CPU-only machine (its `--cpu` flag forces a single process); torchrun needs no config.
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(TRAIN / script), *(str(a) for a in args),
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_two_process_cpu_run_trains_checkpoints_exports_and_encodes(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "faces", 0, 7, 32)  # odd count: uneven shards when encoding
    run = tmp_path / "run"
    result = _torchrun(
        "autoencoder.py",
        "--data", tmp_path / "faces", "--preset", "tiny32", "--run-dir", run,
        "--steps", 2, "--batch-size", 4, "--save-every", 1, "--threads", 1,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ranks_seen"] == [0, 1] and summary["processes"] == 2
    options = json.loads((run / "options.json").read_text())
    assert options["processes"] == 2 and options["per_process_batch"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "state-00000001.pt",
        "state-00000002.pt",
    ]  # rank 0 alone wrote: no temporaries left from a second writer
    model = DiffAE.from_pretrained(run / "bundle")

    result = _torchrun(
        "encode_dataset.py",
        "--model", run / "bundle", "--data", tmp_path / "faces",
        "--out", tmp_path / "latents2.safetensors", "--batch-size", 2, "--threads", 1,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = load_latents(tmp_path / "latents2.safetensors")
    assert sharded.ids == tuple(f"{i:08d}.png" for i in range(7))
    from diffae_app.training.data import ImageFolder

    images = ImageFolder(tmp_path / "faces", 32)
    expected = model.encode(torch.stack([images[i] for i in range(7)]))
    assert torch.allclose(sharded.z_sem, expected, atol=1e-5)
    assert torch.allclose(sharded.z_std, expected.std(0), atol=1e-5)


def test_encode_shards_cover_the_dataset_once() -> None:
    spec = importlib.util.spec_from_file_location("train_encode", TRAIN / "encode_dataset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for n in (1, 5, 7, 8):
        for world in (1, 2, 3):
            shards = [list(script._shard(n, world, rank)) for rank in range(world)]
            assert sum(shards, []) == list(range(n))

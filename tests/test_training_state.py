"""Resumable training state (diffae_app/training/state.py and the loop): atomic checkpoints,
refusal of truncated ones, and the acceptance test: a run killed with SIGKILL and resumed with
`--resume latest` ends with bit-identical weights to an uninterrupted run (CPU, fixed seed)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffae_app.data.synthfaces import write_image_folder
from diffae_app.training.state import (
    TrainingStateError,
    checkpoint_path,
    ema_decay_at,
    ema_update,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 10
KILL_AFTER = 3


def _state(step: int) -> dict:
    return {"stage": "test", "step": step, "model": {"w": torch.full((64, 64), float(step))}}


def test_checkpoints_are_atomic_pruned_and_ignore_leftover_temporaries(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, _state(step))
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "state-00000002.pt",
        "state-00000003.pt",
    ]
    # A crash mid-write leaves only a temporary file, which is never taken for a checkpoint.
    (tmp_path / "checkpoints" / "state-00000004.pt.tmp").write_bytes(b"half")
    assert resolve_resume(tmp_path, "latest") == checkpoint_path(tmp_path, 3)
    assert resolve_resume(tmp_path, None) is None
    assert resolve_resume(tmp_path / "fresh", "latest") is None  # first run: nothing to resume
    with pytest.raises(TrainingStateError, match="no such checkpoint file"):
        resolve_resume(tmp_path, str(tmp_path / "nope.pt"))
    assert load_checkpoint(checkpoint_path(tmp_path, 3))["step"] == 3


def test_truncated_checkpoint_is_refused_and_names_the_good_one(tmp_path: Path) -> None:
    for step in (1, 2):
        save_checkpoint(tmp_path, step, _state(step))
    newest = checkpoint_path(tmp_path, 2)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(TrainingStateError) as error:
        load_checkpoint(newest)
    message = str(error.value)
    assert "state-00000002.pt is truncated or corrupt" in message
    assert "previous checkpoint" in message and "state-00000001.pt is intact" in message
    assert "\n" not in message
    (tmp_path / "other.pt").write_bytes(b"")
    with pytest.raises(TrainingStateError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "other.pt")


def test_ema_update_and_warmup() -> None:
    ema, online = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = ema.weight.detach().clone()
    ema_update(ema, online, 0.75)
    assert torch.allclose(ema.weight, 0.75 * before + 0.25 * online.weight)
    assert ema_decay_at(0, 0.9999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.9999) == 0.9999 and ema_decay_at(0, 0.99, warmup=False) == 0.99


# --------------------------------------------------------------------------- kill and resume


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    write_image_folder(folder, 100, 12, 32)
    return folder


def _command(data: Path, run_dir: Path, resume: str | None = None) -> list[str]:
    command = [
        sys.executable, str(ROOT / "train" / "autoencoder.py"),
        "--data", str(data), "--preset", "tiny32", "--run-dir", str(run_dir),
        "--steps", str(STEPS), "--batch-size", "4", "--save-every", "1", "--log-every", "1",
        "--warmup-steps", "2", "--lr-decay", "cosine", "--ema-warmup", "--seed", "7",
        "--threads", "1",
    ]  # fmt: skip
    return command + (["--resume", resume] if resume else [])


def _env() -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def _train(data: Path, run_dir: Path, resume: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(data, run_dir, resume), env=_env(), capture_output=True, text=True, timeout=600
    )


def _train_here(data: Path, run_dir: Path, resume: str | None = None) -> int:
    """The same run in this process (saves a Python start-up); one torch thread, as above."""
    spec = importlib.util.spec_from_file_location(
        "train_autoencoder", ROOT / "train" / "autoencoder.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    try:
        return script.main(_command(data, run_dir, resume)[2:])
    finally:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        torch.set_num_threads(threads)


def _assert_same_weights(a: Path, b: Path) -> None:
    left = torch.load(a, weights_only=True)
    right = torch.load(b, weights_only=True)
    assert left["step"] == right["step"] == STEPS
    for part in ("model", "ema"):
        assert left[part].keys() == right[part].keys()
        for key, tensor in left[part].items():
            assert torch.equal(tensor, right[part][key]), f"{part}.{key} differs"
    for index, state in left["optimizer"]["state"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, right["optimizer"]["state"][index][key]), f"adam {key}"


@pytest.fixture(scope="module")
def uninterrupted(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    assert _train_here(faces, run_dir) == 0
    return run_dir


@pytest.mark.slow
def test_sigkill_and_resume_ends_with_identical_weights(
    faces: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(
        _command(faces, run_dir),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = checkpoint_path(run_dir, KILL_AFTER)
    deadline = time.monotonic() + 300
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    reached = [int(p.stem.split("-")[1]) for p in list_checkpoints(run_dir)]
    assert KILL_AFTER <= max(reached) < STEPS and not (run_dir / "summary.json").exists()

    result = _train(faces, run_dir, resume="latest")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run_dir / f"options-resume-{max(reached):08d}.json").is_file()
    _assert_same_weights(checkpoint_path(uninterrupted, STEPS), checkpoint_path(run_dir, STEPS))


@pytest.mark.slow
def test_truncated_checkpoint_stops_resume_and_the_previous_one_still_works(
    faces: Path, uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    newest, previous = checkpoint_path(run_dir, STEPS), checkpoint_path(run_dir, STEPS - 1)
    newest.write_bytes(newest.read_bytes()[:5000])  # e.g. a disk that filled up

    assert _train_here(faces, run_dir, resume="latest") == 2
    stderr = capsys.readouterr().err
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in stderr
    assert "state-00000010.pt is truncated or corrupt" in error_lines[0]
    assert f"the previous checkpoint {previous} is intact, resume from it" in error_lines[0]
    assert previous.is_file() and load_checkpoint(previous)["step"] == STEPS - 1

    assert _train_here(faces, run_dir, resume=str(previous)) == 0
    _assert_same_weights(checkpoint_path(uninterrupted, STEPS), newest)

"""Training that a newcomer cannot hurt themselves with (issue 20): run folders are not silently
overwritten, resumes say what they do, exports are checked, warnings are readable, --help and
train/README.md are complete. Real (short) runs on the tiny32 preset, one thread."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffae_app.config import preset
from diffae_app.data.synthfaces import write_image_folder
from diffae_app.training.attributes import read_label_csv
from diffae_app.training.latents import LatentCodes, latent_stats, save_latents

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "train"
SCRIPTS = sorted(p.stem for p in TRAIN.glob("*.py"))


def _script(name: str):
    """A train/ script as a module, so its main(argv) runs in this process."""
    spec = importlib.util.spec_from_file_location(f"train_{name}", TRAIN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main(name: str, *args: object) -> int:
    try:
        return _script(name).main([str(a) for a in args])
    finally:
        # Accelerate keeps process-wide singletons; each script run starts from a clean state.
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faces") / "faces"
    write_image_folder(folder, 0, 8, 32)
    return folder


def _train(faces: Path, run: Path, *extra: object, steps: int = 2) -> int:
    return _main(
        "autoencoder", "--data", faces, "--preset", "tiny32", "--run-dir", run,
        "--steps", steps, "--batch-size", 2, "--save-every", 2, "--threads", 1, *extra,
    )  # fmt: skip


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------- 1. run folders


@pytest.mark.slow
def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert _train(faces, run) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    options = (run / "options.json").read_text()
    capsys.readouterr()

    # The same command again (or with another preset) must not start over in place.
    assert _train(faces, run, "--seed", 1) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "already holds an autoencoder run of tiny32" in line
    assert "--resume latest" in line and "--overwrite" in line
    assert {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()} == before
    assert (run / "options.json").read_text() == options

    # --overwrite clears the old run: no stale checkpoint survives to be exported later.
    (run / "checkpoints" / "state-00000002.pt").rename(run / "checkpoints" / "state-00000098.pt")
    assert _train(faces, run, "--overwrite", "--seed", 1) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["state-00000002.pt"]
    assert json.loads((run / "options.json").read_text())["loop"]["seed"] == 1


@pytest.mark.slow
def test_export_refuses_a_checkpoint_that_does_not_fit_the_runs_config(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert _train(faces, run) == 0
    # What an unprotected restart with another preset left behind: another run's options.json.
    options = json.loads((run / "options.json").read_text())
    options["stage_options"]["model"]["autoencoder"]["model_channels"] = 16
    (run / "options.json").write_text(json.dumps(options))
    capsys.readouterr()
    assert _main("export", run, "--out", tmp_path / "bundle") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "does not fit" in line and "disagree" in line
    assert not (tmp_path / "bundle").exists()


def test_two_loss_weightings_at_once_are_one_line(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    assert _train(faces, tmp_path / "run", "--p2-gamma", 1, "--x0-loss-cap", 100) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--x0-loss-cap" in line and "--p2-gamma" in line
    assert _train(faces, tmp_path / "x0", "--x0-loss-cap", 100) == 0
    options = json.loads((tmp_path / "x0" / "options.json").read_text())
    assert options["stage_options"]["x0_loss_cap"] == 100.0


def test_the_face_region_weight_is_recorded_and_checked(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert _train(faces, tmp_path / "run", "--face-region-weight", 4) == 0
    options = json.loads((tmp_path / "run" / "options.json").read_text())
    assert options["stage_options"]["face_region_weight"] == 4.0
    capsys.readouterr()
    assert _train(faces, tmp_path / "bad", "--face-region-weight", -1) == 2
    assert "face-region weight" in _one_error_line(capsys.readouterr().err)


def test_the_model_card_names_no_local_paths(faces: Path, tmp_path: Path) -> None:
    """Issue 13: a card travels to the Hub; the trainer's folders are nobody's business."""
    run = tmp_path / "runs" / "mine" / "autoencoder"
    assert _train(faces, run) == 0
    out = tmp_path / "bundle"
    assert _main("export", run, "--out", out) == 0
    card = (out / "README.md").read_text()
    assert str(tmp_path) not in card and "runs/mine" not in card and str(faces) not in card
    assert "<local>/autoencoder" in card  # the run folder's own name is kept
    assert 'from_pretrained("path/to/this/folder")' in card  # the usage snippet is untouched


@pytest.mark.slow
def test_export_loads_the_bundle_before_replacing_the_old_one(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffae_app import DiffAE

    run = tmp_path / "run"
    assert _train(faces, run) == 0
    out = tmp_path / "bundle"
    assert _main("export", run, "--out", out) == 0
    good = (out / "autoencoder.safetensors").read_bytes()

    def broken(cls, *args, **kwargs):
        raise RuntimeError("simulated: the written bundle does not load")

    monkeypatch.setattr(DiffAE, "from_pretrained", classmethod(broken))
    capsys.readouterr()
    assert _main("export", run, "--out", out) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "does not load" in line and "nothing was written" in line
    assert (out / "autoencoder.safetensors").read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


# --------------------------------------------------------------------------- 2. other architecture


@pytest.mark.slow
def test_resuming_with_another_architecture_is_one_line(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert _train(faces, run) == 0
    other = tmp_path / "other.json"
    config = preset("tiny32").to_dict()
    config["autoencoder"]["model_channels"] = 16
    other.write_text(json.dumps(config))
    capsys.readouterr()

    code = _main(
        "autoencoder", "--data", faces, "--config", other, "--run-dir", run, "--steps", 4,
        "--batch-size", 2, "--threads", 1, "--resume", "latest",
    )  # fmt: skip
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot resume" in line and "autoencoder.model_channels: 32 -> 16" in line

    # An explicit checkpoint of another architecture, into a fresh folder: also one line.
    code = _main(
        "autoencoder", "--data", faces, "--config", other, "--run-dir", tmp_path / "fresh",
        "--steps", 4, "--batch-size", 2, "--threads", 1,
        "--resume", run / "checkpoints" / "state-00000002.pt",
    )  # fmt: skip
    assert code == 2
    assert "does not fit this model" in _one_error_line(capsys.readouterr().err)


def test_a_run_recorded_by_an_older_version_resumes(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An upgrade must not strand an interrupted run: fields the older options.json lacks take
    their (behaviour-preserving) defaults, and sampler settings, which training never reads,
    may differ. Seen for real: a run started before the official-fields work refused to resume.
    """
    run = tmp_path / "run"
    assert _train(faces, run) == 0
    options_file = run / "options.json"
    options = json.loads(options_file.read_text())
    model = options["stage_options"]["model"]
    for later_field in ("conv_resample", "new_attention_order", "num_head_channels"):
        del model["autoencoder"][later_field]
    model["sampler"]["solver"] = "dpmpp_2m"
    model["default_render_steps"] = 7
    options_file.write_text(json.dumps(options))
    capsys.readouterr()

    assert _train(faces, run, "--resume", "latest", steps=4) == 0
    assert "cannot resume" not in capsys.readouterr().err


@pytest.mark.slow
def test_resuming_a_latent_run_with_another_mlp_is_one_line(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert _train(faces, tmp_path / "ae") == 0
    z = torch.randn(16, preset("tiny32").autoencoder.z_sem_channels)
    z_mean, z_std = latent_stats(z)
    latents = tmp_path / "latents.safetensors"
    save_latents(latents, LatentCodes(z, tuple(f"{i}.png" for i in range(16)), z_mean, z_std))
    common = [
        "--latents", latents, "--autoencoder", tmp_path / "ae" / "bundle", "--run-dir",
        tmp_path / "latent", "--batch-size", 4, "--save-every", 2, "--threads", 1,
    ]  # fmt: skip
    assert _main("latent_dpm", *common, "--steps", 2) == 0
    capsys.readouterr()
    code = _main("latent_dpm", *common, "--steps", 4, "--latent-layers", 5, "--resume", "latest")
    assert code == 2
    assert "cannot resume" in _one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- 3. EMA


def test_ema_initial_share_is_the_product_of_the_decays() -> None:
    from diffae_app.training.runs import ema_initial_share

    assert ema_initial_share(60, 0.9999, warmup=False) == pytest.approx(0.9999**60)
    assert ema_initial_share(60, 0.9999, warmup=True) < 1e-6
    assert ema_initial_share(3, 0.9999, warmup=True) == pytest.approx(1 / 10 * 2 / 11 * 3 / 12)


@pytest.mark.slow
def test_ema_warms_up_by_default_and_a_near_initial_ema_is_warned_about(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert _train(faces, tmp_path / "default", steps=4) == 0
    err = capsys.readouterr().err
    options = json.loads((tmp_path / "default" / "options.json").read_text())
    assert options["loop"]["ema_warmup"] is True
    assert "random initialisation" not in err
    # Four steps cannot reconstruct anything: the logged reconstruction is warned about.
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["recon_psnr_T20"] < 20
    assert any("reconstruction" in w for w in summary["warnings"])
    assert re.search(r"^warning: the reconstruction logged at step 4 is only", err, re.M)

    assert _train(faces, tmp_path / "official", "--no-ema-warmup", steps=4) == 0
    err = capsys.readouterr().err
    assert re.search(r"^warning: the EMA weights are still 100% their random init", err, re.M)
    assert _main("export", tmp_path / "official", "--out", tmp_path / "bundle") == 0
    err = capsys.readouterr().err
    assert re.search(r"^warning: the EMA weights are still 100% their random init", err, re.M)
    assert "random initialisation" in (tmp_path / "bundle" / "README.md").read_text()


# --------------------------------------------------------------------------- 4. resumes


@pytest.mark.slow
def test_a_resume_says_where_it_continues_and_records_it(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert _train(faces, run) == 0
    capsys.readouterr()
    assert _train(faces, run, "--resume", "latest", steps=4) == 0
    assert "resuming from state-00000002.pt (step 2 of 4)" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == "state-00000002.pt" and summary["start_step"] == 2
    recorded = json.loads((run / "options-resume-00000002.json").read_text())
    assert recorded["resumed_from"].endswith("state-00000002.pt")


# --------------------------------------------------------------------------- 5. skipped images


@pytest.mark.slow
def test_skipped_images_are_announced_on_their_own_line_and_counted(
    faces: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_image_folder(data, 0, 6, 32)
    (data / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")  # read mid-run
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(TRAIN / "autoencoder.py"), "--data", str(data), "--preset",
         "tiny32", "--run-dir", str(run), "--steps", "4", "--batch-size", "2", "--threads", "1"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.split("\n") if "skipping unreadable" in line]
    assert lines, result.stderr[-2000:]
    for line in lines:
        # What the terminal shows of the line: the text after its last carriage return.
        assert line.split("\r")[-1].startswith("warning: skipping unreadable item"), repr(line)
    assert json.loads((run / "summary.json").read_text())["skipped_unreadable"] == 1


# --------------------------------------------------------------------------- 6. empty label cells


def test_empty_label_cells_are_counted_per_attribute(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv = tmp_path / "labels.csv"
    rows = ["image_id,Smiling,Bangs,Glasses"]
    rows += [
        f"{i}.png,{'' if i < 3 else i % 2},{'' if i == 5 else 1 - i % 2},{i % 2}" for i in range(12)
    ]
    csv.write_text("\n".join(rows) + "\n")
    table = read_label_csv(csv)
    assert dict(table.empty_cells) == {"Smiling": 3, "Bangs": 1}
    assert table.empty_cells_line().endswith("4 empty cells read as unknown (Smiling 3, Bangs 1)")

    z = torch.randn(12, 8)
    z_mean, z_std = latent_stats(z)
    latents = tmp_path / "latents.safetensors"
    save_latents(latents, LatentCodes(z, tuple(f"{i}.png" for i in range(12)), z_mean, z_std))
    code = _main(
        "classifiers", "--latents", latents, "--labels", csv, "--out", tmp_path / "c.safetensors",
        "--held-out", 0.25,
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert re.search(r"^warning: .*labels\.csv.*: 4 empty cells read as unknown", err, re.M)


# --------------------------------------------------------------------------- 7. --help


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_every_default_and_keeps_the_examples_lines(
    name: str, capsys: pytest.CaptureFixture
) -> None:
    module = _script(name)
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    help_text = capsys.readouterr().out
    flat = " ".join(help_text.split())
    for action in module.build_parser()._actions:
        default = action.default
        if not action.option_strings or default in (None, False, "==SUPPRESS=="):
            continue
        assert f"default: {default}" in flat, (
            f"{name}.py --help: {action.option_strings[0]} does not show its default {default!r}"
        )
    # Example commands continued with a backslash keep their line breaks (a docstring that
    # is not raw turns backslash-newline into nothing, gluing the lines together).
    docstring = (TRAIN / f"{name}.py").read_text().split('"""')[1]
    continued = [line.strip() for line in docstring.splitlines() if line.endswith("\\")]
    shown = {line.strip() for line in help_text.splitlines()}
    for line in continued:
        assert line in shown, f"{name}.py --help lost the line break after: {line}"


# --------------------------------------------------------------------------- 8. extras


def test_missing_training_extras_name_the_requirements_file(
    faces: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)  # `import accelerate` now fails
    for name, args in [
        ("autoencoder", ["--data", faces, "--preset", "tiny32", "--run-dir", tmp_path / "r",
                         "--steps", 2]),
        ("encode_dataset", ["--model", tmp_path, "--data", faces, "--out", tmp_path / "z"]),
    ]:  # fmt: skip
        assert _script(name).main([str(a) for a in args]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "accelerate not installed" in line
        assert "pip install -r requirements-train.txt" in line


def test_lmdb_data_without_lmdb_names_the_requirements_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffae_app.training.data import DatasetError, open_dataset

    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(DatasetError, match=r"pip install -r requirements-train\.txt"):
        open_dataset(f"lmdb:{tmp_path}", 32)


# --------------------------------------------------------------------------- 9. SynthFaces data


def test_synthfaces_data_script_writes_images_and_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "sf"
    assert _main("synthfaces_data", out, "--count", 3, "--size", 32) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "00000000.png",
        "00000001.png",
        "00000002.png",
        "attributes.csv",
    ]
    assert len(read_label_csv(out / "attributes.csv").ids) == 3
    assert _main("synthfaces_data", out, "--count", 3) == 2
    assert "already exists" in _one_error_line(capsys.readouterr().err)
    assert _main("synthfaces_data", out, "--count", 2, "--start", 5, "--overwrite") == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["00000005.png", "00000006.png"]


# --------------------------------------------------------------------------- 8-10. the README


def _readme_commands() -> list[list[str]]:
    """The README's `python train/X.py ...` commands (continuation lines joined)."""
    text = (TRAIN / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).strip()
            if re.match(r"(python|accelerate launch) train/\w+\.py", line):
                commands.append(shlex.split(line.replace("accelerate launch", "python")))
    return commands


def test_readme_installs_the_extras_and_explains_runs_ema_and_tiny32() -> None:
    text = (TRAIN / "README.md").read_text()
    assert "pip install -r requirements-train.txt" in text
    assert re.search(r"tiny32[^\n]*32 px|32 px[^\n]*tiny32", text)
    assert "--no-ema-warmup" in text and "short run" in text.lower()
    assert "--overwrite" in text and "--resume latest" in text
    assert "train/synthfaces_data.py" in text


def test_every_readme_command_is_accepted_by_its_script() -> None:
    commands = _readme_commands()
    names = {c[1] for c in commands}
    assert {"train/synthfaces_data.py", "train/autoencoder.py", "train/export.py"} <= names
    for command in commands:
        script = Path(command[1]).stem
        try:
            _script(script).parse_args(command[2:])
        except SystemExit as exc:  # argparse's exit on an unknown or missing option
            pytest.fail(f"train/README.md: `{shlex.join(command)}` is refused ({exc})")

"""Reading official checkpoints safely: Lightning layout without Lightning, refused pickles,
broken files, community state_dict copies and the official-to-ours key mapping."""

from __future__ import annotations

import os
import shlex
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from diffae_app import DiffAE
from diffae_app.checkpoints import (
    CheckpointError,
    check_state_dict,
    load_official,
    load_official_classifier,
    official_to_ours,
    read_official,
    split_official_state_dict,
)
from diffae_app.convert import convert_official
from diffae_app.models import AutoencoderNet

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def reference(official_dir: Path) -> Path:
    return official_dir / "reference"


def _one_line_error(call, *args, **kwargs) -> str:
    """The CheckpointError message of `call(*args)`, checked to be a single line."""
    with pytest.raises(CheckpointError) as exc:
        call(*args, **kwargs)
    message = str(exc.value)
    assert message and "\n" not in message, message
    return message


# --------------------------------------------------------------------------- the official layout


def test_reads_lightning_checkpoint_without_lightning(reference: Path) -> None:
    state = read_official(reference / "tiny_autoenc.ckpt")
    assert {
        "epoch",
        "global_step",
        "pytorch-lightning_version",
        "state_dict",
        "callbacks",
        "optimizer_states",
        "lr_schedulers",
        "native_amp_scaling_state",
        "hparams_name",
        "hyper_parameters",
    } <= set(state)
    assert state["pytorch-lightning_version"] == "1.4.5"
    (callback_class,) = state["callbacks"]
    assert callback_class.__name__ == "_LightningModelCheckpoint"  # our inert stand-in
    assert "pytorch_lightning" not in sys.modules
    keys = list(state["state_dict"])
    assert keys[0] == "x_T" and any(k.startswith("ema_model.") for k in keys)


def test_latent_checkpoint_aliases_share_storage_and_collapse(reference: Path) -> None:
    sd = read_official(reference / "tiny_autoenc_latent.ckpt")["state_dict"]
    a = sd["ema_model.latent_net.layers.0.linear_emb.weight"]
    b = sd["ema_model.latent_net.layers.0.cond_layers.1.weight"]
    assert a.data_ptr() == b.data_ptr()
    weights = load_official(reference / "tiny_autoenc_latent.ckpt")
    assert not any("cond_layers" in k for k in weights.latent_net)
    assert torch.equal(weights.latent_net["layers.0.linear_emb.weight"], a)
    assert weights.z_mean.shape == weights.z_std.shape == (512,)
    assert (
        weights.global_step == read_official(reference / "tiny_autoenc_latent.ckpt")["global_step"]
    )


def test_official_to_ours_mapping() -> None:
    assert official_to_ours("latent_net.layers.3.cond_layers.1.weight") == (
        "latent_net.layers.3.linear_emb.weight"
    )
    assert official_to_ours("latent_net.layers.3.cond_layers.1.bias") == (
        "latent_net.layers.3.linear_emb.bias"
    )
    for same in ("input_blocks.1.0.in_layers.0.weight", "latent_net.layers.0.linear.weight"):
        assert official_to_ours(same) == same


def test_aliases_with_different_values_are_refused() -> None:
    sd = {
        "ema_model.latent_net.layers.0.linear_emb.weight": torch.zeros(2, 2),
        "ema_model.latent_net.layers.0.cond_layers.1.weight": torch.ones(2, 2),
    }
    with pytest.raises(CheckpointError, match="aliased keys"):
        split_official_state_dict(sd)


def test_ema_and_online_branches_differ(reference: Path) -> None:
    ema = load_official(reference / "tiny_autoenc.ckpt").autoencoder
    online = load_official(reference / "tiny_autoenc.ckpt", use_ema=False).autoencoder
    assert ema.keys() == online.keys()
    assert not any(torch.equal(ema[k], online[k]) for k in ema)


def test_flat_hparams_without_model_conf(reference: Path, tmp_path: Path) -> None:
    """Older or hand-trimmed files carry only the flat TrainConfig fields."""
    state = read_official(reference / "tiny_autoenc.ckpt")
    hparams = {k: v for k, v in state["hyper_parameters"].items() if k != "model_conf"}
    assert hparams["net_latent_layers"] is None
    path = tmp_path / "flat.ckpt"
    torch.save({"state_dict": state["state_dict"], "hyper_parameters": hparams}, path)
    assert load_official(path).config == load_official(reference / "tiny_autoenc.ckpt").config


def test_plain_state_dict_copy_loads(reference: Path, tmp_path: Path) -> None:
    """Community copies: a torch.save of the bare state_dict (tensors only)."""
    official = reference / "tiny_autoenc_latent.ckpt"
    sd = read_official(official)["state_dict"]
    path = tmp_path / "diffae_ffhq.pt"
    torch.save({k: v.clone() for k, v in sd.items()}, path)
    refs = torch.load(reference / "tiny_autoenc_latent_refs.pt", weights_only=True)
    config = load_official(official).config
    copy, original = DiffAE.from_official(path, config=config), DiffAE.from_official(official)
    assert torch.equal(copy.encode(refs["x"]), original.encode(refs["x"]))
    assert torch.equal(copy.z_mean, original.z_mean)
    z = copy.sample_z(2, T=10, noise=refs["sample_latent_noise"])
    assert (z - refs["latent_sample_T10_cond"]).abs().max() < 1e-4
    # Without a config the architecture is unknown: say so and name a preset to pass.
    message = _one_line_error(DiffAE.from_official, path)
    assert str(path) in message and "preset" in message


def test_classifier_and_autoencoder_files_are_told_apart(reference: Path) -> None:
    message = _one_line_error(load_official, reference / "tiny_cls.ckpt")
    assert "load_official_classifier" in message
    message = _one_line_error(load_official_classifier, reference / "tiny_autoenc.ckpt")
    assert "not an attribute-classifier checkpoint" in message


def test_check_state_dict_names_problems(tiny_config) -> None:
    with torch.device("meta"):
        net = AutoencoderNet(tiny_config().autoencoder)
    tensors = dict(net.state_dict())
    del tensors["out.2.bias"]
    tensors["encoder.out.3.weight"] = torch.empty(4, 4, device="meta")
    tensors["unknown"] = torch.empty(1, device="meta")
    message = _one_line_error(check_state_dict, net, tensors, source="x.safetensors")
    assert message.startswith("x.safetensors does not fit")
    assert "1 missing keys (e.g. out.2.bias)" in message
    assert "1 unexpected keys (e.g. unknown)" in message
    assert "encoder.out.3.weight: file (4, 4) vs model (16, 16, 1, 1)" in message


# --------------------------------------------------------------------------- hostile and broken files


class _RunsCommand:
    """Pickles as a call to os.system: loading it with plain pickle runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _touch(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _handwritten_zip(path: Path, pickle_bytes: bytes) -> Path:
    """A torch-style zip archive around a hand-written pickle."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/version", b"3\n")
        archive.writestr("archive/byteorder", b"little")
    return path


def test_malicious_torch_save_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "last.ckpt"
    torch.save(
        {"state_dict": {"x_T": torch.zeros(1)}, "callbacks": _RunsCommand(_touch(marker))}, path
    )
    # The payload is live: an unsafe loader would run it.
    canary = tmp_path / "CANARY"
    live = tmp_path / "live.ckpt"
    torch.save({"payload": _RunsCommand(_touch(canary))}, live)
    torch.load(live, weights_only=False)
    assert canary.exists()

    for call in (read_official, load_official, load_official_classifier, DiffAE.from_official):
        message = _one_line_error(call, path)
        assert message.startswith(f"{path}: refused") and "posix.system" in message
    message = _one_line_error(convert_official, path, tmp_path / "bundle")
    assert "refused" in message
    assert not marker.exists()
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(
    ("payload", "global_name"),
    [
        (b"cos\nsystem\n(S'touch {m}'\ntR.", "system"),
        (b'cbuiltins\nexec\n(S\'open("{m}", "w")\'\ntR.', "exec"),
        (b"csubprocess\ncall\n((S'touch'\nS'{m}'\nltR.", "call"),
    ],
    ids=["os.system", "builtins.exec", "subprocess.call"],
)
def test_handwritten_malicious_pickle_is_refused(
    tmp_path: Path, payload: bytes, global_name: str
) -> None:
    marker = tmp_path / "MARKER"
    path = _handwritten_zip(tmp_path / "evil.ckpt", payload.replace(b"{m}", str(marker).encode()))
    message = _one_line_error(read_official, path)
    assert message.startswith(f"{path}: refused") and global_name in message
    assert not marker.exists()


def test_handwritten_payload_is_live(tmp_path: Path) -> None:
    """Control for the test above: the same archive does run code under an unsafe load."""
    marker = tmp_path / "MARKER"
    path = _handwritten_zip(
        tmp_path / "evil.ckpt",
        b'cbuiltins\nexec\n(S\'open("%s", "w")\'\ntR.' % str(marker).encode(),
    )
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_checkpoint(reference: Path, tmp_path: Path, keep: float) -> None:
    data = (reference / "tiny_autoenc.ckpt").read_bytes()
    path = tmp_path / "last.ckpt"
    path.write_bytes(data[: int(len(data) * keep)])
    message = _one_line_error(read_official, path)
    assert message.startswith(str(path)) and "truncated" in message
    assert _one_line_error(DiffAE.from_official, path) == message


def test_corrupt_pickle_inside_valid_zip(reference: Path, tmp_path: Path) -> None:
    source = reference / "tiny_autoenc.ckpt"
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 2 : start + 200] = bytes(range(198))
    path = tmp_path / "last.ckpt"
    path.write_bytes(bytes(data))
    message = _one_line_error(read_official, path)
    assert message.startswith(str(path)) and "not plain checkpoint data" in message


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is not a checkpoint\n", bytes(range(256)) * 20],
    ids=["empty", "text", "random"],
)
def test_garbage_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(content)
    message = _one_line_error(read_official, path)
    assert message == (
        f"{path}: not a PyTorch checkpoint (expected a zip-format .ckpt/.pt file; "
        "truncated download or wrong file?)"
    )


def test_other_wrong_inputs(tmp_path: Path) -> None:
    assert "no such file" in _one_line_error(read_official, tmp_path / "missing.ckpt")
    assert "is a folder" in _one_line_error(read_official, tmp_path)
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    assert "not a PyTorch checkpoint" in _one_line_error(read_official, legacy)
    other_zip = tmp_path / "photos.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert "unreadable checkpoint" in _one_line_error(read_official, other_zip)
    a_list = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], a_list)
    assert "expected a dict" in _one_line_error(read_official, a_list)
    no_sd = tmp_path / "meta.pt"
    torch.save({"epoch": 1, "note": "hi"}, no_sd)
    assert "no 'state_dict'" in _one_line_error(read_official, no_sd)

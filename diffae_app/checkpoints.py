"""Checkpoint I/O: safe reading of the official Lightning files and our safetensors bundles.

Official `last.ckpt` files are PyTorch Lightning 1.4.5 checkpoints. Their pickle refers to
one foreign class (Lightning's ModelCheckpoint, as a dict key of `callbacks`), so we load
with `weights_only=True` and allow exactly that name, bound to a harmless stand-in. Any
other global (a pickle that would run code) is refused.

A bundle is a folder:
    config.json                 ModelConfig + format tag
    autoencoder.safetensors     EMA weights of encoder + decoder UNet (official key names)
    latent_net.safetensors      EMA latent DPM (optional) with `z_mean`/`z_std` it normalises by
    classifiers/*.safetensors   attribute classifier artefacts (optional)
    README.md                   model card
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .classifier import CELEBA_ATTRIBUTES, AttributeClassifier, ClassifierError
from .config import ModelConfig, preset
from .models import AutoencoderNet, LatentNet
from .official_fields import UnsupportedField, has_architecture, official_config
from .safetensors_io import read_safetensors

BUNDLE_FORMAT = "diffae-studio-bundle"
BUNDLE_VERSION = 1
_LIGHTNING_CALLBACK = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
# The latent net registers one Linear twice; the second name is an alias of `linear_emb`.
_ALIAS = re.compile(r"^(latent_net\.layers\.\d+\.)cond_layers\.1\.(weight|bias)$")


class CheckpointError(ValueError):
    """A checkpoint or bundle cannot be used; the message names the file and the problem."""


class _LightningModelCheckpoint:
    """Inert stand-in for Lightning's ModelCheckpoint class; never instantiated."""


# --------------------------------------------------------------------------- official files


def read_official(path: str | os.PathLike) -> dict[str, Any]:
    """Read an official Lightning checkpoint without running any code from it.

    Returns its top-level dict (`state_dict`, `hyper_parameters`, `global_step`, ...).
    Tensors are memory-mapped, so a 2 GB file does not take 2 GB of RAM.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; pass the checkpoint file (e.g. last.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (expected a zip-format .ckpt/.pt file; "
            "truncated download or wrong file?)"
        )
    allowed = [(_LightningModelCheckpoint, _LIGHTNING_CALLBACK)]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        # torch words this differently by case ("Unsupported global: GLOBAL exec ...",
        # "unsupported GLOBAL posix.system whose module ..."); anything else is bad data.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:
            reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
            raise CheckpointError(
                f"{path}: refused, its pickle is not plain checkpoint data (corrupt or crafted "
                f"file?): {reason.group(1).strip() if reason else 'invalid pickle'}"
            ) from None
        raise CheckpointError(
            f"{path}: refused, its pickle refers to {found.group(1)}, which loading would "
            "execute; official DiffAE checkpoints contain only tensors and Lightning's "
            "ModelCheckpoint"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: unreadable checkpoint (truncated or corrupt?): {first}"
        ) from None
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}: expected a dict at the top level, found {type(state).__name__}"
        )
    if "state_dict" not in state and all(isinstance(v, torch.Tensor) for v in state.values()):
        # A plain state_dict (community copies on the Hub): treat it as the state_dict.
        state = {"state_dict": dict(state)}
    if "state_dict" not in state:
        raise CheckpointError(f"{path}: no 'state_dict' inside; keys are {sorted(state)[:8]}")
    return dict(state)


@dataclass(frozen=True)
class OfficialWeights:
    """What an official autoencoder checkpoint holds for inference."""

    config: ModelConfig
    autoencoder: dict[str, torch.Tensor]
    latent_net: dict[str, torch.Tensor] | None
    z_mean: torch.Tensor | None  # (512,) the latent DPM's normalisation
    z_std: torch.Tensor | None
    global_step: int | None


def official_to_ours(key: str) -> str:
    """Our parameter name for an official `model.`/`ema_model.`-stripped key."""
    alias = _ALIAS.match(key)
    if alias:
        return f"{alias.group(1)}linear_emb.{alias.group(2)}"
    return key


def split_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, use_ema: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(autoencoder, latent_net) tensors under our names, from one branch (EMA by default).

    Aliased latent keys must hold the same values as the name they alias.
    """
    prefix = "ema_model." if use_ema else "model."
    autoencoder: dict[str, torch.Tensor] = {}
    latent: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = official_to_ours(key[len(prefix) :])
        target = latent if name.startswith("latent_net.") else autoencoder
        if name.startswith("latent_net."):
            name = name[len("latent_net.") :]
        if name in target:
            if not torch.equal(target[name], tensor):
                raise CheckpointError(f"aliased keys for {prefix}{name} hold different values")
            continue
        target[name] = tensor
    return autoencoder, latent


def load_official(
    path: str | os.PathLike,
    *,
    config: ModelConfig | str | None = None,
    official_fields: Mapping[str, Any] | None = None,
    use_ema: bool = True,
) -> OfficialWeights:
    """Read an official autoencoder(+latent) checkpoint into our names and config.

    The architecture and samplers come from `config` when given (a ModelConfig or preset
    name); else from the checkpoint's stored hyper-parameters (the top-level TrainConfig
    fields, see official_fields.py), with `official_fields` stating or overriding fields by
    their official names, e.g. {'net_latent_activation': 'lrelu'} for a value the file
    cannot store; else from the checkpoint folder's name when it is a preset name (e.g.
    checkpoints/ffhq256_autoenc/last.ckpt). A field value that cannot be honoured is
    refused with a one-line CheckpointError naming it.
    """
    path = Path(path)
    state = read_official(path)
    sd = state["state_dict"]
    name = path.parent.name if path.name == "last.ckpt" else path.stem
    autoencoder, latent = split_official_state_dict(sd, use_ema=use_ema)
    if not autoencoder:
        raise CheckpointError(
            f"{path}: no '{'ema_model' if use_ema else 'model'}.*' weights; is this a classifier "
            "checkpoint? Load those with load_official_classifier()"
        )
    if config is not None and official_fields:
        raise CheckpointError(
            f"{path}: pass either config or official_fields, not both (official_fields "
            "describe the model in the official TrainConfig's terms)"
        )
    if isinstance(config, str):
        try:
            config = preset(config)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    znormalize = True
    if config is None:
        config, znormalize = _described_config(path, state, name, bool(latent), official_fields)
    if (
        latent
        and config.latent_net is None
        and not (official_fields and official_fields.get("net_latent_net_type") is not None)
    ):
        raise CheckpointError(
            f"{path}: holds a latent DPM but the given config does not describe one; pass a "
            "*_latent preset"
        )
    if not latent and config.latent_net is not None:
        config = config.replace(latent_net=None)
    if config.latent_net is None:
        latent = {}
    z_mean = z_std = None
    if latent:
        z_mean, z_std = _latent_statistics(path, sd, config.latent_net.num_channels, znormalize)
    _check_buildable(config, path)
    return OfficialWeights(
        config=config,
        autoencoder=autoencoder,
        latent_net=latent or None,
        z_mean=z_mean,
        z_std=z_std,
        global_step=state.get("global_step"),
    )


def _described_config(
    path: Path,
    state: Mapping[str, Any],
    name: str,
    has_latent_weights: bool,
    official_fields: Mapping[str, Any] | None,
) -> tuple[ModelConfig, bool]:
    """(config, latent_znormalize) from the checkpoint's stored hyper-parameters completed by
    ``official_fields``, else from the preset its folder is named after."""
    hparams = state.get("hyper_parameters")
    hparams = dict(hparams) if isinstance(hparams, Mapping) else {}
    if has_architecture({**hparams, **(official_fields or {})}):
        try:
            described = official_config(
                hparams,
                name=name,
                has_latent_weights=has_latent_weights,
                fields=official_fields,
            )
        except UnsupportedField as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        return described.config, described.latent_znormalize
    if official_fields:
        raise CheckpointError(
            f"{path}: stores no hyper-parameters, so official_fields has nothing to "
            "complete; state img_size, net_ch and net_ch_mult too, or pass a config"
        )
    try:
        return preset(name), True
    except ValueError:
        raise CheckpointError(
            f"{path}: no stored hyper-parameters to rebuild the architecture from; "
            "pass a preset, e.g. config='ffhq256_autoenc_latent'"
        ) from None


def _latent_statistics(
    path: Path, sd: Mapping[str, torch.Tensor], width: int, znormalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_mean, z_std) the latent DPM's codes are normalised by."""
    if not znormalize:
        # latent_znormalize=False: the latent DPM models z_sem itself; identity stats
        # make the de-normalisation exact (z * 1 + 0).
        return torch.zeros(width), torch.ones(width)
    if "conds_mean" not in sd or "conds_std" not in sd:
        raise CheckpointError(
            f"{path}: latent DPM without its conds_mean/conds_std statistics "
            "(latent_znormalize=True needs them)"
        )
    z_mean = sd["conds_mean"].reshape(-1).float()
    z_std = sd["conds_std"].reshape(-1).float()
    if z_mean.numel() != width or z_std.numel() != width:
        raise CheckpointError(
            f"{path}: conds_mean/conds_std hold {z_mean.numel()} values, the latent "
            f"DPM's codes are {width}-d"
        )
    return z_mean, z_std


def _check_buildable(config: ModelConfig, path: Path) -> None:
    """Build the networks on the meta device: a config torch cannot build (say GroupNorm
    widths that do not split into groups) becomes one line, not a stack trace."""
    try:
        with torch.device("meta"):
            AutoencoderNet(config.autoencoder)
            if config.latent_net is not None:
                LatentNet(config.latent_net)
    except (ValueError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: the architecture its fields describe cannot be built: {first}"
        ) from None


def load_official_classifier(
    path: str | os.PathLike, *, use_ema: bool = False
) -> AttributeClassifier:
    """The official ffhq256_autoenc_cls checkpoint as a classifier artefact.

    The released manipulation recipe uses the non-EMA `classifier.*` weights with the
    classifier's own conds_mean/conds_std, so that is the default.
    """
    path = Path(path)
    state = read_official(path)
    sd = state["state_dict"]
    prefix = "ema_classifier." if use_ema else "classifier."
    hparams = state.get("hyper_parameters")
    # manipulate_znormalize=False (not in any release): the classifier reads raw z_sem and
    # the file has no statistics; identity ones make normalisation exact.
    raw_z = isinstance(hparams, Mapping) and hparams.get("manipulate_znormalize") is False
    needed = [f"{prefix}weight", f"{prefix}bias"] + ([] if raw_z else ["conds_mean", "conds_std"])
    missing = [k for k in needed if k not in sd]
    if missing:
        raise CheckpointError(f"{path}: not an attribute-classifier checkpoint, missing {missing}")
    weight = sd[f"{prefix}weight"].float()
    if raw_z:
        z_mean, z_std = torch.zeros(weight.shape[1]), torch.ones(weight.shape[1])
    else:
        z_mean = sd["conds_mean"].reshape(-1).float().clone()
        z_std = sd["conds_std"].reshape(-1).float().clone()
    names = (
        CELEBA_ATTRIBUTES
        if weight.shape[0] == len(CELEBA_ATTRIBUTES)
        else tuple(f"attribute_{i}" for i in range(weight.shape[0]))
    )
    try:
        return AttributeClassifier(
            attribute_names=names,
            weight=weight.clone(),
            bias=sd[f"{prefix}bias"].float().clone(),
            z_mean=z_mean,
            z_std=z_std,
            source=f"official DiffAE classifier {path.name}",
        )
    except ClassifierError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- state dict checks


def check_state_dict(
    module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], *, source: str
) -> None:
    """Raise CheckpointError naming missing/unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:4])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:4])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:3])})")
    if problems:
        raise CheckpointError(f"{source} does not fit the configured model: " + "; ".join(problems))


# --------------------------------------------------------------------------- bundles


def save_bundle(
    directory: str | os.PathLike,
    config: ModelConfig,
    autoencoder: Mapping[str, torch.Tensor],
    *,
    latent_net: Mapping[str, torch.Tensor] | None = None,
    z_mean: torch.Tensor | None = None,
    z_std: torch.Tensor | None = None,
    classifiers: Mapping[str, AttributeClassifier] | None = None,
    model_card: str | None = None,
    dtype: torch.dtype = torch.float32,
    latent_dtype: torch.dtype | None = None,
) -> Path:
    """Write a bundle folder (see module docstring). Tensors are stored in `dtype`, the
    latent DPM's in `latent_dtype` (default `dtype`; z statistics always float32)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def prepared(
        tensors: Mapping[str, torch.Tensor], as_dtype: torch.dtype = dtype
    ) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", as_dtype).contiguous() for k, v in tensors.items()}

    save_file(
        prepared(autoencoder), str(directory / "autoencoder.safetensors"), {"format": BUNDLE_FORMAT}
    )
    if latent_net is not None:
        if z_mean is None or z_std is None:
            raise ValueError("a latent DPM needs the z_mean/z_std it was trained with")
        tensors = prepared(latent_net, latent_dtype or dtype)
        tensors["z_mean"] = z_mean.detach().reshape(-1).float().contiguous()
        tensors["z_std"] = z_std.detach().reshape(-1).float().contiguous()
        save_file(tensors, str(directory / "latent_net.safetensors"), {"format": BUNDLE_FORMAT})
    for name, classifier in (classifiers or {}).items():
        classifier.save(directory / "classifiers" / f"{name}.safetensors")
    meta = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "model": config.to_dict()}
    (directory / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    if model_card is not None:
        (directory / "README.md").write_text(model_card)
    return directory


def write_bundle_into_place(out_dir: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write a bundle with ``write(folder)`` into a temporary sibling of ``out_dir``, give it
    ordinary permissions, then swap it into place: nobody sees a half-written bundle, and a
    failure (also one raised by ``write`` after checking the folder) leaves ``out_dir`` as it was.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write(staging)
        _share_permissions(staging)
        if out_dir.exists():
            old = out_dir.with_name(out_dir.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _share_permissions(folder: Path) -> None:
    """The usual umask-based modes: mkdtemp makes 0700 folders and safetensors 0600 files,
    which would hide a shipped bundle from other users (a web server, a container)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@dataclass(frozen=True)
class Bundle:
    """A bundle read from disk (tensors loaded, networks not yet built)."""

    path: Path
    config: ModelConfig
    autoencoder: dict[str, torch.Tensor]
    latent_net: dict[str, torch.Tensor] | None
    z_mean: torch.Tensor | None
    z_std: torch.Tensor | None
    classifiers: dict[str, AttributeClassifier]


def read_bundle_config(directory: str | os.PathLike) -> ModelConfig:
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{directory}: not a DiffAE Studio bundle (no config.json); convert an official "
            "checkpoint with `python -m diffae_app convert CKPT OUT_DIR`"
        )
    try:
        meta = json.loads(config_path.read_text())
        if meta.get("format") != BUNDLE_FORMAT:
            raise CheckpointError(
                f"{config_path}: format is {meta.get('format')!r}, not {BUNDLE_FORMAT!r}"
            )
        return ModelConfig.from_dict(meta["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{config_path}: malformed bundle config: {exc}") from None


def read_bundle(directory: str | os.PathLike) -> Bundle:
    directory = Path(directory)
    config = read_bundle_config(directory)
    auto_path = directory / "autoencoder.safetensors"
    if not auto_path.is_file():
        raise CheckpointError(f"{directory}: bundle lacks autoencoder.safetensors")
    autoencoder = read_safetensors(auto_path, error=CheckpointError)[1]
    latent = z_mean = z_std = None
    latent_path = directory / "latent_net.safetensors"
    if latent_path.is_file():
        latent = read_safetensors(latent_path, error=CheckpointError)[1]
        z_mean, z_std = latent.pop("z_mean", None), latent.pop("z_std", None)
        if z_mean is None or z_std is None:
            raise CheckpointError(f"{latent_path}: lacks the z_mean/z_std statistics")
    if (latent is None) != (config.latent_net is None):
        raise CheckpointError(
            f"{directory}: config.json and latent_net.safetensors disagree on whether a latent DPM exists"
        )
    classifiers = {}
    for path in sorted((directory / "classifiers").glob("*.safetensors")):
        try:
            classifiers[path.stem] = AttributeClassifier.load(path)
        except ClassifierError as exc:
            raise CheckpointError(str(exc)) from None
    return Bundle(directory, config, autoencoder, latent, z_mean, z_std, classifiers)


def resolve_bundle_path(
    name_or_path: str | os.PathLike, *, revision: str | None = None, cache_dir: str | None = None
) -> Path:
    """A local bundle folder, or a Hub repo id fetched (or found in the cache) via huggingface_hub.

    Honours HF_HUB_OFFLINE: offline, only what is in the cache is used.
    """
    path = Path(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: expected a bundle folder, got a file")
        return path
    text = str(name_or_path)
    if text.count("/") != 1 or text.startswith((".", "/")):
        raise CheckpointError(
            f"{text}: no such folder, and not a Hub repo id of the form 'owner/name'"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id=text,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=["config.json", "*.safetensors", "classifiers/*", "README.md"],
            )
        )
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{text}: not in the local Hugging Face cache and the Hub cannot be reached "
            "(offline?); download it once online or pass a local folder"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(f"{text}: cannot fetch from the Hub: {exc}") from None

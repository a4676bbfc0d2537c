"""Training checkpoint -> EMA-only inference bundle, with a model card.

A run folder (written by `loop.train`) holds `options.json` (the resolved options, with the
model config under `stage_options.model`) and `checkpoints/state-*.pt` (online + EMA weights,
optimiser, ...). Exporting keeps only the EMA weights, in the bundle layout of
`diffae_app.checkpoints`, so a run can be exported at any checkpoint, e.g. one stopped early.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import (
    CheckpointError,
    check_state_dict,
    read_bundle_config,
    save_bundle,
    write_bundle_into_place,
)
from ..classifier import AttributeClassifier, ClassifierError
from ..config import ModelConfig, SamplerConfig
from ..safetensors_io import read_safetensors
from .runs import quality_warnings
from .state import TrainingStateError, list_checkpoints, load_checkpoint

# Prefix of the autoencoder weights inside the autoencoder stage's training module
# (train/autoencoder.py wraps AutoencoderNet as `.net` so DDP sees one forward).
AUTOENCODER_PREFIX = "net."


class ExportError(ValueError):
    """A run, checkpoint or bundle cannot be exported or read as training input."""


# A path-like token: at least one "/" between word characters, not a URL.
_LOCAL_PATH = re.compile(r"(?<![\w:/.<])(?:~|\.{1,2})?/?(?:[A-Za-z_.][\w.\-]*/)+([\w.\-]+)")


def without_local_paths(value: Any) -> Any:
    """`value` (a string, or JSON-like data of them) with every file path cut to its last
    name behind ``<local>/``: a model card travels to the Hub, the folders of the machine
    that trained it mean nothing there (and are nobody's business)."""
    if isinstance(value, str):
        return _LOCAL_PATH.sub(lambda m: f"<local>/{m.group(1)}", value)
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_local_paths(v) for v in value]
    return value


def model_card(
    config: ModelConfig, *, title: str, data: str, summary: dict[str, Any], extra: str = ""
) -> str:
    """A short README.md for a bundle: what it is, how it was trained, how to load it."""
    return f"""---
library_name: diffae-studio
tags: [diffusion-autoencoder, diffae, image-editing]
---
# {title}

A DiffAE (Diffusion Autoencoder) bundle for DiffAE Studio: EMA weights in safetensors,
`config.json` holds the architecture.

- architecture: `{config.name}`, {config.autoencoder.image_size} px, net_ch {config.autoencoder.model_channels}, ch_mult {list(config.autoencoder.channel_mult)}, encoder mult {list(config.autoencoder.encoder_channel_mult)}
- latent DPM: {"yes" if config.latent_net else "no"}
- training data: {without_local_paths(data)}
- training: {json.dumps(summary, default=str)}

{extra}

```python
from diffae_app import DiffAE
model = DiffAE.from_pretrained("path/to/this/folder")
```
"""


def classifier_table(classifier: AttributeClassifier) -> str:
    """Markdown table of a classifier artefact's held-out metrics (see training/attributes.py)."""
    rows = [
        "| attribute | held-out n | accuracy | balanced acc. | AUROC | weight norm |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in classifier.attribute_names:
        m = classifier.metrics.get(name, {})

        def fmt(key: str, m: dict = m) -> str:
            value = m.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return "n/a"
            return f"{value:.3f}"

        rows.append(
            f"| {name} | {int(m.get('n_test', 0))} | {fmt('accuracy')} | "
            f"{fmt('balanced_accuracy')} | {fmt('auroc')} | {fmt('weight_norm')} |"
        )
    return "\n".join(rows)


def _card_extra(
    classifiers: Mapping[str, AttributeClassifier], options: dict[str, Any] | None
) -> str:
    parts = []
    for name, classifier in classifiers.items():
        parts.append(
            f"## Attribute classifier `{name}`\n\n{without_local_paths(classifier.source)}\n\n"
            f"{classifier_table(classifier)}\n"
        )
    if options is not None:
        # The z statistics are in latent_net.safetensors; 2 x D numbers would drown the card.
        stage_options = {
            k: v
            for k, v in options.get("stage_options", {}).items()
            if k not in ("z_mean", "z_std")
        }
        parts.append(
            "## Resolved training options\n\n```json\n"
            + json.dumps(
                without_local_paths({**options, "stage_options": stage_options}),
                indent=1,
                default=str,
            )
            + "\n```\n"
        )
    return "\n".join(parts)


def export_autoencoder(
    ema_state: dict, config: ModelConfig, out_dir: Path, *, data: str, summary: dict[str, Any]
) -> Path:
    # An autoencoder-only bundle must not announce a latent DPM (presets such as tiny32 and
    # synthfaces64 carry one): read_bundle refuses a config.json without its latent weights.
    return write_bundle(
        out_dir,
        config.replace(latent_net=None),
        ema_state,
        title=f"DiffAE autoencoder {config.name}",
        data=data,
        summary=summary,
    )


# --------------------------------------------------------------------------- reading runs


def read_run_options(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The resolved options a run wrote before step 1 (`options.json`)."""
    path = Path(run_dir) / "options.json"
    if not path.is_file():
        raise ExportError(f"{run_dir} is not a training run folder (no options.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} is not valid JSON: {exc}") from None


def run_checkpoint(run_dir: str | os.PathLike, checkpoint: str | os.PathLike | None) -> Path:
    """The checkpoint to export: the given file or the newest of the run."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ExportError(f"checkpoint {path} does not exist")
        return path
    found = list_checkpoints(Path(run_dir))
    if not found:
        raise ExportError(f"{run_dir} has no checkpoints yet (checkpoints/state-*.pt)")
    return found[-1]


def load_run_state(
    run_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """(options.json, checkpoint dict, checkpoint path) of a run, checked to belong together."""
    options = read_run_options(run_dir)
    path = run_checkpoint(run_dir, checkpoint)
    try:
        state = load_checkpoint(path)
    except TrainingStateError as exc:
        raise ExportError(str(exc)) from None
    if state.get("stage") != options.get("stage"):
        raise ExportError(
            f"{path} is a {state.get('stage')!r} checkpoint but {run_dir} is a "
            f"{options.get('stage')!r} run"
        )
    return options, state, path


def strip_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys under `prefix`, with the prefix removed (wrapper module -> inner network)."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_autoencoder_source(
    source: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None
) -> tuple[ModelConfig, dict[str, torch.Tensor], str]:
    """EMA autoencoder weights from a bundle folder, a run folder or a checkpoint file.

    Returns (config without latent DPM, AutoencoderNet state dict, description of the source).
    A bundle's latent DPM entry is ignored: only the autoencoder is read.
    """
    path = Path(source)
    if path.is_file():  # a checkpoint file inside RUN/checkpoints/
        checkpoint, path = path, path.parent.parent
    if not path.is_dir():
        raise ExportError(f"{source}: no such bundle or run folder")
    if (path / "config.json").is_file():
        try:
            config = read_bundle_config(path)
        except CheckpointError as exc:
            raise ExportError(str(exc)) from None
        weights = path / "autoencoder.safetensors"
        if not weights.is_file():
            raise ExportError(f"{path}: bundle lacks autoencoder.safetensors")
        tensors = read_safetensors(weights, error=ExportError)[1]
        return config.replace(latent_net=None), tensors, f"bundle {path}"
    if not (path / "options.json").is_file():
        raise ExportError(f"{path}: neither a bundle (config.json) nor a run folder (options.json)")
    options, state, ckpt = load_run_state(path, checkpoint)
    if options.get("stage") != "autoencoder":
        raise ExportError(f"{path} is a {options.get('stage')!r} run, not an autoencoder run")
    config = ModelConfig.from_dict(options["stage_options"]["model"])
    tensors = strip_prefix(state["ema"], AUTOENCODER_PREFIX)
    return (
        config.replace(latent_net=None),
        tensors,
        f"EMA of {ckpt} (step {state['step']})",
    )


# --------------------------------------------------------------------------- writing bundles


def _check_loads(folder: Path, out_dir: Path) -> None:
    """Load a freshly written bundle the way users will, before it replaces ``out_dir``."""
    from ..diffae import DiffAE

    try:
        DiffAE.from_pretrained(folder)
    except (CheckpointError, ClassifierError, OSError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(
            f"the bundle for {out_dir} does not load ({first}); nothing was written"
        ) from None


def check_weights_fit(
    config: ModelConfig, tensors: Mapping[str, torch.Tensor], *, latent: bool, source: str
) -> None:
    """The checkpoint's weights fit the config recorded for its run (else one-line error).

    A run folder whose options.json comes from another run than its checkpoints (possible
    before runs were protected from restarts) must not export a bundle that cannot load.
    """
    from ..models import AutoencoderNet, LatentNet

    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        if latent:
            if config.latent_net is None:
                raise ExportError(f"{source}: the run's config has no latent_net")
            module: torch.nn.Module = LatentNet(config.latent_net)
        else:
            module = AutoencoderNet(config.autoencoder)
    try:
        check_state_dict(module, tensors, source=source)
    except CheckpointError as exc:
        raise ExportError(f"{exc}; the checkpoint and the run's options.json disagree") from None


def load_classifiers(paths: list[str | os.PathLike]) -> dict[str, AttributeClassifier]:
    """Classifier artefacts by file stem (their name in a bundle's classifiers/ folder)."""
    out: dict[str, AttributeClassifier] = {}
    for p in paths:
        try:
            out[Path(p).stem] = AttributeClassifier.load(p)
        except ClassifierError as exc:
            raise ExportError(str(exc)) from None
    return out


def write_bundle(
    out_dir: str | os.PathLike,
    config: ModelConfig,
    autoencoder: Mapping[str, torch.Tensor],
    *,
    latent_net: Mapping[str, torch.Tensor] | None = None,
    z_mean: torch.Tensor | None = None,
    z_std: torch.Tensor | None = None,
    classifiers: Mapping[str, AttributeClassifier] | None = None,
    title: str,
    data: str,
    summary: dict[str, Any],
    options: dict[str, Any] | None = None,
    latent_dtype: torch.dtype = torch.float32,
) -> Path:
    """save_bundle into a temporary sibling folder, then swap it into place.

    The model card records the data, the step and loss summary, the classifier metrics and
    the resolved training options.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    classifiers = dict(classifiers or {})
    width = config.autoencoder.z_sem_channels
    for name, classifier in classifiers.items():
        if classifier.z_sem_channels != width:
            raise ExportError(
                f"classifier {name!r} works on {classifier.z_sem_channels}-d z_sem, the "
                f"model's z_sem has {width}"
            )

    def write(folder: Path) -> None:
        save_bundle(
            folder,
            config,
            autoencoder,
            latent_net=latent_net,
            latent_dtype=latent_dtype,
            z_mean=z_mean,
            z_std=z_std,
            classifiers=classifiers,
            model_card=model_card(
                config,
                title=title,
                data=data,
                summary=summary,
                extra=_card_extra(classifiers, options),
            ),
        )
        _check_loads(folder, out_dir)  # before it replaces what is there

    return write_bundle_into_place(out_dir, write)


def export_latent_bundle(
    out_dir: str | os.PathLike,
    *,
    autoencoder_bundle: str | os.PathLike,
    config: ModelConfig,
    latent_state: Mapping[str, torch.Tensor],
    z_mean: torch.Tensor,
    z_std: torch.Tensor,
    classifiers: Mapping[str, AttributeClassifier] | None = None,
    data: str,
    summary: dict[str, Any],
    options: dict[str, Any] | None = None,
    latent_dtype: torch.dtype = torch.float32,
) -> Path:
    """The autoencoder bundle's files + the EMA latent DPM (and its z statistics).

    Classifiers already in the autoencoder bundle are kept; `classifiers` adds or replaces.
    """
    ae_config, autoencoder, _ = load_autoencoder_source(autoencoder_bundle)
    if ae_config.autoencoder != config.autoencoder:
        raise ExportError(
            f"{autoencoder_bundle}: its autoencoder config differs from the one the latent DPM "
            "run recorded; pass the bundle the latents were encoded with"
        )
    existing = sorted((Path(autoencoder_bundle) / "classifiers").glob("*.safetensors"))
    merged = {**load_classifiers(existing), **dict(classifiers or {})}
    return write_bundle(
        out_dir,
        config,
        autoencoder,
        latent_net=latent_state,
        latent_dtype=latent_dtype,
        z_mean=z_mean,
        z_std=z_std,
        classifiers=merged,
        title=f"DiffAE autoencoder + latent DPM {config.name}",
        data=data,
        summary=summary,
        options=options,
    )


def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    autoencoder_bundle: str | os.PathLike | None = None,
    classifiers: list[str | os.PathLike] = (),
    sampler: SamplerConfig | None = None,
    latent_dtype: torch.dtype = torch.float32,
    on_warning: Callable[[str], None] | None = None,
) -> Path:
    """EMA-only bundle of an autoencoder or latent DPM run at its newest (or a given) checkpoint.

    The checkpoint's weights are checked against the run's config and the bundle is loaded
    before it replaces ``out_dir``. ``on_warning`` hears why the bundle may be useless (EMA
    still near its random start, a poor logged reconstruction); the model card records it.

    A latent DPM run is exported on top of the autoencoder bundle it recorded (or
    `autoencoder_bundle`, when that folder moved). `sampler` replaces the image sampler the
    run's config names (an inference choice, made after training); `latent_dtype` float16
    halves the latent MLP's file (it is loaded back in float32).
    """
    run_dir = Path(run_dir)
    options, state, ckpt = load_run_state(run_dir, checkpoint)
    stage_options = options.get("stage_options", {})
    config = ModelConfig.from_dict(stage_options["model"])
    if sampler is not None:
        config = config.replace(sampler=sampler)
    summary: dict[str, Any] = {
        "stage": options["stage"],
        "step": int(state["step"]),
        "steps_planned": options["loop"]["steps"],
        "checkpoint": ckpt.name,
    }
    run_summary = run_dir / "summary.json"
    if run_summary.is_file():
        done = json.loads(run_summary.read_text())
        if done.get("steps") == summary["step"]:
            kept = ("final_loss", "mean_loss_last_100", "recon_psnr_T20")
            summary.update({k: done[k] for k in kept if k in done})
    summary["warnings"] = quality_warnings(options, summary["step"], summary)
    for warning in summary["warnings"]:
        if on_warning is not None:
            on_warning(warning)
    extra_classifiers = load_classifiers(list(classifiers))
    latent = options["stage"] == "latent_dpm"
    weights = state["ema"] if latent else strip_prefix(state["ema"], AUTOENCODER_PREFIX)
    check_weights_fit(config, weights, latent=latent, source=f"EMA weights of {ckpt}")
    if options["stage"] == "autoencoder":
        return write_bundle(
            out_dir,
            config.replace(latent_net=None),
            weights,
            classifiers=extra_classifiers,
            title=f"DiffAE autoencoder {config.name}",
            data=stage_options.get("data", "?"),
            summary=summary,
            options=options,
        )
    if options["stage"] == "latent_dpm":
        bundle = autoencoder_bundle or stage_options["autoencoder_bundle"]
        if not Path(bundle).is_dir():
            raise ExportError(
                f"the autoencoder bundle {bundle} this run was trained for is gone; pass "
                "--autoencoder-bundle"
            )
        return export_latent_bundle(
            out_dir,
            autoencoder_bundle=bundle,
            config=config,
            latent_state=weights,
            latent_dtype=latent_dtype,
            z_mean=torch.tensor(stage_options["z_mean"], dtype=torch.float32),
            z_std=torch.tensor(stage_options["z_std"], dtype=torch.float32),
            classifiers=extra_classifiers,
            data=stage_options.get("data", "?"),
            summary=summary,
            options=options,
        )
    raise ExportError(f"{run_dir}: don't know how to export a {options['stage']!r} run")

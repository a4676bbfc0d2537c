"""Training checkpoint -> EMA-only inference bundle, with a model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checkpoints import save_bundle
from ..config import ModelConfig


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
- training data: {data}
- training: {json.dumps(summary, default=str)}

{extra}

```python
from diffae_app import DiffAE
model = DiffAE.from_pretrained("path/to/this/folder")
```
"""


def export_autoencoder(
    ema_state: dict, config: ModelConfig, out_dir: Path, *, data: str, summary: dict[str, Any]
) -> Path:
    return save_bundle(
        out_dir,
        config,
        ema_state,
        model_card=model_card(
            config, title=f"DiffAE autoencoder {config.name}", data=data, summary=summary
        ),
    )

"""Typed, frozen configurations for every network and noise schedule.

A config is the single source of truth for a module's shape: the module is built from it,
and `to_dict`/`from_dict` are what `config.json` in a bundle holds. Field names are ours;
the official `TrainConfig` name each one replaces is given beside it so DiffAE users can
map their templates (https://github.com/phizaz/diffae, `templates*.py`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _tuple(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


@dataclass(frozen=True)
class AutoencoderConfig:
    """The semantic encoder plus the conditional (BeatGANs) decoder UNet.

    Defaults are those of the released FFHQ256 autoencoder.
    """

    image_size: int = 256  # img_size
    in_channels: int = 3
    out_channels: int = 3
    model_channels: int = 128  # net_ch: channels at the first level
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)  # net_ch_mult (decoder UNet)
    num_res_blocks: int = 2  # net_num_res_blocks; the decoder uses one more per level
    # net_num_input_res_blocks: ResBlocks per level on the UNet's input side (None: as
    # num_res_blocks). The output side keeps num_res_blocks + 1 per level either way.
    num_input_res_blocks: int | None = None
    attention_resolutions: tuple[int, ...] = (16,)  # net_attn, in pixels
    encoder_channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4, 4)  # net_enc_channel_mult
    encoder_num_res_blocks: int = 2  # net_enc_num_res_blocks
    encoder_attention_resolutions: tuple[int, ...] | None = None  # net_enc_attn; None: as decoder
    num_heads: int = 1  # net_beatgans_attn_head
    # model_conf.num_head_channels: channels per attention head; -1 uses num_heads instead.
    num_head_channels: int = -1
    # model_conf.use_new_attention_order: False (every release) splits the qkv channels per
    # head first ([q, k, v] inside each head); True splits q, k, v first, then heads.
    new_attention_order: bool = False
    # Width of the time embedding MLP (net_beatgans_embed_channels). Separate from the z_sem
    # width: the official tiny reference checkpoints use 64 here and 512 for z_sem.
    time_embed_channels: int = 512
    z_sem_channels: int = 512  # style_ch: size of the semantic code and its ResBlock input
    dropout: float = 0.1
    resblock_updown: bool = True  # net_resblock_updown: resample inside ResBlocks
    # model_conf.conv_resample: with resblock_updown False, resample with a 3x3 conv (True)
    # or with parameter-free average pooling / nearest upsampling (False).
    conv_resample: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", _tuple(self.channel_mult))
        object.__setattr__(self, "attention_resolutions", _tuple(self.attention_resolutions))
        object.__setattr__(self, "encoder_channel_mult", _tuple(self.encoder_channel_mult))
        if self.encoder_attention_resolutions is not None:
            object.__setattr__(
                self, "encoder_attention_resolutions", _tuple(self.encoder_attention_resolutions)
            )
        levels = max(len(self.channel_mult), len(self.encoder_channel_mult))
        if self.image_size % (2 ** (levels - 1)):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by 2^{levels - 1}, "
                f"which {levels} resolution levels need"
            )
        if self.num_input_res_blocks is not None and self.num_input_res_blocks < 1:
            raise ValueError(f"num_input_res_blocks must be >= 1, got {self.num_input_res_blocks}")
        if self.num_head_channels == 0 or self.num_head_channels < -1:
            raise ValueError(f"num_head_channels must be -1 or > 0, got {self.num_head_channels}")

    @property
    def input_res_blocks(self) -> int:
        """ResBlocks per level on the UNet's input side."""
        return self.num_input_res_blocks or self.num_res_blocks

    def heads_for(self, channels: int) -> int:
        """Attention heads at a width of `channels` (num_head_channels wins when set)."""
        return channels // self.num_head_channels if self.num_head_channels > 0 else self.num_heads

    @property
    def encoder_attention(self) -> tuple[int, ...]:
        if self.encoder_attention_resolutions is None:
            return self.attention_resolutions
        return self.encoder_attention_resolutions


# The official `Activation` enum's values (model/latentnet.py): none, relu, lrelu (slope
# 0.2), silu, tanh.
LATENT_ACTIVATIONS: tuple[str, ...] = ("none", "relu", "lrelu", "silu", "tanh")


@dataclass(frozen=True)
class LatentNetConfig:
    """The latent DPM's MLP with skip inputs ('skip' net of the official code).

    Defaults are those of the released FFHQ256 latent DPM.
    """

    num_channels: int = 512  # style_ch: the z_sem width it denoises
    num_hid_channels: int = 2048  # net_latent_num_hid_channels
    num_layers: int = 10  # net_latent_layers
    skip_layers: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)  # net_latent_skip_layers
    use_norm: bool = True  # net_latent_use_norm: LayerNorm after the time modulation
    condition_bias: float = 1.0  # net_latent_condition_bias: h * (bias + scale(t))
    time_emb_channels: int = 64  # net_latent_time_emb_channels
    dropout: float = 0.0  # net_latent_dropout
    # net_latent_activation: of the time MLP, of each layer's time projection and of the
    # hidden layers; one of LATENT_ACTIVATIONS. Not stored in official checkpoints.
    activation: str = "silu"
    last_act: str = "none"  # net_latent_net_last_act: applied to the net's output
    num_time_layers: int = 2  # net_latent_num_time_layers: Linear layers of the time MLP
    time_last_act: bool = False  # net_latent_time_last_act: activation after the time MLP

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip_layers", _tuple(self.skip_layers))
        if self.num_layers < 2:
            raise ValueError("the latent net needs at least 2 layers")
        if self.num_time_layers < 1:
            raise ValueError("the latent net's time MLP needs at least 1 layer")
        for name in ("activation", "last_act"):
            if getattr(self, name) not in LATENT_ACTIVATIONS:
                raise ValueError(
                    f"latent net {name} must be one of {', '.join(LATENT_ACTIVATIONS)}, "
                    f"got {getattr(self, name)!r}"
                )


@dataclass(frozen=True)
class DiffusionConfig:
    """The training-time noise schedule; samplers respace it to `num_steps` at call time."""

    num_timesteps: int = 1000  # T (the official latent DPM shares the image T)
    beta_schedule: str = "linear"  # 'linear' for images; the latent DPM uses 'const0.008'
    loss: str = "mse"  # eps-prediction loss: 'mse' (autoencoder) or 'l1' (latent DPM)
    # Clip predicted x_0 to [-1, 1] at every DDIM step: True for images; latent_clip_sample
    # for the latent DPM (False in every release).
    clip_denoised: bool = True
    # beatgans_/latent_rescale_timesteps: the network sees t * 1000 / num_timesteps (a float)
    # instead of the integer t. Makes a difference only when num_timesteps != 1000.
    rescale_timesteps: bool = False


SOLVERS: tuple[str, ...] = ("ddim", "ddim_extrapolated", "dpmpp_2m")


@dataclass(frozen=True)
class SamplerConfig:
    """How the image DDIM picks its K timesteps and inverts: inference choices, not training.

    The default is the official sampler (uniform 'ddimN' spacing, plain inversion), which is
    what the released presets use, so their outputs match the official code. On the bundled
    SynthFaces-64 model, power-1.25 spacing with one fixed-point iteration per inversion step
    raised 20-step reconstruction from 27.4 to 41.3 dB (fp32, 16 held-out faces; the
    T_inv x T_render grid is in benchmarks/RESULTS.md); the extrapolated inversion
    ('ddim_extrapolated') then gave the same reconstruction in 45% fewer UNet calls.
    """

    spacing: str = "uniform"  # 'uniform' (official) or 'power' (see diffusion.ddim_timesteps)
    power: float = 1.0  # exponent of the 'power' spacing
    inversion_fixed_point_iterations: int = 0  # see diffusion.ddim_invert (DDIM only)
    # 'ddim' (official: DDIM render, DDIM inversion with the fixed-point option above);
    # 'ddim_extrapolated': DDIM render, inversion with an extrapolated landing eps and one
    # correction, one UNet call per step (diffusion.ddim_invert_extrapolated);
    # 'dpmpp_2m': DPM-Solver++(2M) render and inversion, one call per step (Lu et al. 2022,
    # https://arxiv.org/abs/2211.01095). benchmarks/RESULTS.md has the study.
    solver: str = "ddim"

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(
                f"sampler solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}"
            )
        if self.spacing not in ("uniform", "power"):
            raise ValueError(f"sampler spacing must be 'uniform' or 'power', got {self.spacing!r}")
        if self.power <= 0:
            raise ValueError(f"sampler power must be > 0, got {self.power}")
        if self.inversion_fixed_point_iterations < 0:
            raise ValueError("inversion_fixed_point_iterations must be >= 0")


OFFICIAL_SAMPLER = SamplerConfig()
IMAGE_DIFFUSION = DiffusionConfig(num_timesteps=1000, beta_schedule="linear", loss="mse")
LATENT_DIFFUSION = DiffusionConfig(
    num_timesteps=1000, beta_schedule="const0.008", loss="l1", clip_denoised=False
)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a DiffAE model: what a bundle's config.json holds."""

    name: str
    autoencoder: AutoencoderConfig
    latent_net: LatentNetConfig | None = None
    diffusion: DiffusionConfig = IMAGE_DIFFUSION
    latent_diffusion: DiffusionConfig = LATENT_DIFFUSION
    # Defaults the official templates evaluate with (T_eval, latent_T_eval).
    default_render_steps: int = 20
    default_latent_steps: int = 20
    sampler: SamplerConfig = OFFICIAL_SAMPLER  # the image DDIM (the latent DPM's is official)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        def build(kind: type, values: dict[str, Any] | None) -> Any:
            if values is None:
                return None
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"unknown {kind.__name__} fields in config: {sorted(unknown)}")
            return kind(**values)

        data = dict(data)
        return cls(
            name=data.pop("name"),
            autoencoder=build(AutoencoderConfig, data.pop("autoencoder")),
            latent_net=build(LatentNetConfig, data.pop("latent_net", None)),
            diffusion=build(DiffusionConfig, data.pop("diffusion", None)) or IMAGE_DIFFUSION,
            latent_diffusion=build(DiffusionConfig, data.pop("latent_diffusion", None))
            or LATENT_DIFFUSION,
            sampler=build(SamplerConfig, data.pop("sampler", None)) or OFFICIAL_SAMPLER,
            **data,
        )

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# Released-model presets. Numbers come from the official templates (see
# tests/data/official/manifests/*.json `config_values`).
_FFHQ256 = AutoencoderConfig()
_FFHQ128 = AutoencoderConfig(
    image_size=128,
    channel_mult=(1, 1, 2, 3, 4),
    encoder_channel_mult=(1, 1, 2, 3, 4, 4),
)
# The 72M FFHQ128 variant of the paper: net_ch 64 with the 64-px multipliers of autoenc_base.
_FFHQ128_72M = AutoencoderConfig(
    image_size=128,
    model_channels=64,
    channel_mult=(1, 2, 4, 8),
    encoder_channel_mult=(1, 2, 4, 8, 8),
)


# The bundled demonstration model: 64 px, sized to train on a 2-core CPU in about two hours.
_SYNTHFACES64 = AutoencoderConfig(
    image_size=64,
    model_channels=32,
    channel_mult=(1, 2, 2, 4),
    encoder_channel_mult=(1, 2, 2, 4, 4),
    num_res_blocks=1,
    encoder_num_res_blocks=1,
    attention_resolutions=(16,),
    time_embed_channels=256,
    dropout=0.0,
)
# Chosen on the trained bundle by benchmarks/fidelity_study.py --solvers (RESULTS.md): the
# extrapolated inversion at 16 + 16 steps (32 UNet calls) reconstructs within 0.3 dB of the
# former fixed-point inversion at 20 + 20 (58 calls).
_SYNTHFACES64_SAMPLER = SamplerConfig(spacing="power", power=1.25, solver="ddim_extrapolated")
_SMALL_LATENT = LatentNetConfig(num_hid_channels=1024, num_layers=6, skip_layers=(1, 2, 3, 4, 5))
# A few-hundred-thousand-parameter model for tests.
_TINY32 = AutoencoderConfig(
    image_size=32,
    model_channels=32,
    channel_mult=(1, 1),
    encoder_channel_mult=(1, 2, 2),
    attention_resolutions=(16,),
    time_embed_channels=64,
    z_sem_channels=64,
    dropout=0.0,
)
_TINY_LATENT = LatentNetConfig(
    num_channels=64, num_hid_channels=128, num_layers=3, skip_layers=(1, 2)
)


def _presets() -> dict[str, ModelConfig]:
    latent = LatentNetConfig()
    return {
        "ffhq256_autoenc": ModelConfig("ffhq256_autoenc", _FFHQ256),
        "ffhq256_autoenc_latent": ModelConfig("ffhq256_autoenc_latent", _FFHQ256, latent),
        "ffhq128_autoenc_130M": ModelConfig("ffhq128_autoenc_130M", _FFHQ128),
        "ffhq128_autoenc_72M": ModelConfig("ffhq128_autoenc_72M", _FFHQ128_72M),
        "ffhq128_autoenc_latent": ModelConfig("ffhq128_autoenc_latent", _FFHQ128, latent),
        "bedroom128_autoenc": ModelConfig("bedroom128_autoenc", _FFHQ128),
        "bedroom128_autoenc_latent": ModelConfig("bedroom128_autoenc_latent", _FFHQ128, latent),
        "horse128_autoenc": ModelConfig("horse128_autoenc", _FFHQ128),
        "horse128_autoenc_latent": ModelConfig("horse128_autoenc_latent", _FFHQ128, latent),
        # Our own small architectures (not released by the DiffAE authors).
        "synthfaces64": ModelConfig(
            "synthfaces64", _SYNTHFACES64, _SMALL_LATENT, sampler=_SYNTHFACES64_SAMPLER
        ),
        "tiny32": ModelConfig(
            "tiny32", _TINY32, _TINY_LATENT, default_render_steps=10, default_latent_steps=10
        ),
    }


PRESET_NAMES: tuple[str, ...] = tuple(_presets())


def preset(name: str) -> ModelConfig:
    """The config of a released model by its official name, e.g. 'ffhq256_autoenc_latent'."""
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}")
    return presets[name]


@dataclass(frozen=True)
class ClassifierInfo:
    """Metadata of a linear attribute classifier artefact (weights live in safetensors)."""

    attribute_names: tuple[str, ...]
    source: str = ""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

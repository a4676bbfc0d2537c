"""The official DiffAE `TrainConfig` fields, read into our `ModelConfig`.

An official checkpoint stores `conf.as_dict_jsonable()` as `hyper_parameters`: every
JSON-able `TrainConfig` field at the top level, plus the derived `model_conf`. The official
`LitModel` always rebuilds its network from the top-level fields (`make_model_conf()`), so
those are the truth; `model_conf` is used only for the few settings it alone holds, and as a
fallback for files that lack the top level. In a released `*_autoenc_latent/last.ckpt` its
`latent_net_conf` is stale (None) although the file holds a latent DPM.

Enum-valued fields (`net_latent_activation`, the sampler types, ...) are never stored; they
take the released templates' values unless the caller states them (`fields=`). A field whose
value we cannot honour, or that the official code itself cannot run, is refused by
`UnsupportedField`, a one-line message naming the field and its value.
docs/OFFICIAL_FIELDS.md lists every field and what happens to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import (
    LATENT_ACTIVATIONS,
    LATENT_DIFFUSION,
    AutoencoderConfig,
    DiffusionConfig,
    LatentNetConfig,
    ModelConfig,
)


class UnsupportedField(ValueError):
    """A field value we cannot honour; the message is `field=value: reason`."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(f"{field}={value!r}: {reason}")
        self.field = field
        self.value = value


# Every JSON-able TrainConfig field of phizaz/diffae@00c57d3: what `hyper_parameters` holds.
STORED_FIELDS: frozenset[str] = frozenset(
    "T T_eval T_sampler accum_batches autoenc_mid_attn base_dir batch_size batch_size_eval "
    "beatgans_rescale_timesteps beta_scheduler continue_from data_cache_dir data_name "
    "data_val_name diffusion_type dropout ema_decay eval_ema_every_samples eval_every_samples "
    "eval_num_images eval_path eval_programs fid_use_torch fp16 grad_clip img_size "
    "latent_T_eval latent_beta_scheduler latent_clip_sample latent_infer_path "
    "latent_rescale_timesteps latent_znormalize lr manipulate_cls manipulate_seed "
    "manipulate_shots manipulate_znormalize model_conf name net_attn net_autoenc_stochastic "
    "net_beatgans_attn_head net_beatgans_embed_channels net_beatgans_gradient_checkpoint "
    "net_beatgans_resnet_cond_channels net_beatgans_resnet_two_cond "
    "net_beatgans_resnet_use_zero_module net_ch net_ch_mult net_enc_attn net_enc_channel_mult "
    "net_enc_grad_checkpoint net_enc_k net_enc_num_cls net_enc_num_res_blocks net_enc_pool "
    "net_enc_use_time net_latent_channel_mult net_latent_condition_bias net_latent_dropout "
    "net_latent_layers net_latent_num_hid_channels net_latent_num_time_layers "
    "net_latent_skip_layers net_latent_time_emb_channels net_latent_time_last_act "
    "net_latent_use_norm net_num_input_res_blocks net_num_res_blocks net_resblock_updown "
    "num_workers parallel postfix pretrain sample_every_samples sample_size save_every_samples "
    "seed style_ch total_samples train_cond0_prob train_interpolate_img train_interpolate_prob "
    "train_pred_xstart_detach use_cache_dataset warmup weight_decay work_cache_dir".split()
)

# Enum-valued TrainConfig fields: never stored (`as_dict_jsonable` drops them). Each maps
# the spellings we accept (enum member name or value) to the member name; the default is
# the value every released template uses.
_TRAIN_MODE = {
    "diffusion": "diffusion",
    "latent_diffusion": "latent_diffusion",
    "latentdiffusion": "latent_diffusion",
    "manipulate": "manipulate",
}
_MEAN_TYPE = {
    "eps": "eps",
    "start_x": "start_x",
    "x_start": "start_x",
    "prev_x": "prev_x",
    "x_prev": "prev_x",
}
_VAR_TYPE = {v: v for v in ("learned", "fixed_small", "fixed_large", "learned_range")}
_LOSS = {
    "mse": "mse",
    "l1": "l1",
    "mse_rescaled": "mse_rescaled",
    "kl": "kl",
    "kl_rescaled": "kl_rescaled",
}
_GEN = {"ddpm": "ddpm", "ddim": "ddim"}
_ACTIVATION = {a: a for a in LATENT_ACTIVATIONS}
ENUM_FIELDS: dict[str, tuple[dict[str, str], str]] = {
    "train_mode": (_TRAIN_MODE, "diffusion"),
    "model_name": (
        {"beatgans_autoenc": "beatgans_autoenc", "beatgans_ddpm": "beatgans_ddpm"},
        "beatgans_autoenc",
    ),
    "model_type": ({"autoencoder": "autoencoder", "ddpm": "ddpm"}, "autoencoder"),
    "beatgans_gen_type": (_GEN, "ddim"),
    "latent_gen_type": (_GEN, "ddim"),
    "beatgans_loss_type": (_LOSS, "mse"),
    "latent_loss_type": (_LOSS, "l1"),
    "beatgans_model_mean_type": (_MEAN_TYPE, "eps"),
    "latent_model_mean_type": (_MEAN_TYPE, "eps"),
    "beatgans_model_var_type": (_VAR_TYPE, "fixed_large"),
    "latent_model_var_type": (_VAR_TYPE, "fixed_large"),
    "net_latent_net_type": ({"none": "none", "skip": "skip"}, "skip"),
    "net_latent_activation": (_ACTIVATION, "silu"),
    "net_latent_net_last_act": (_ACTIVATION, "none"),
    "net_beatgans_resnet_scale_at": (
        {"after_norm": "after_norm", "afternorm": "after_norm"},
        "after_norm",
    ),
    "optimizer": ({"adam": "adam", "adamw": "adamw"}, "adam"),
    "manipulate_mode": ({}, ""),  # classifier training only: any value
    "manipulate_loss": ({}, ""),
}

# Settings only `model_conf` holds: `make_model_conf()` fixes them, so a stock official run
# always has these values; a modified one records its own in `model_conf`.
MODEL_CONF_ONLY: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "num_head_channels": -1,
    "num_heads_upsample": -1,
    "use_new_attention_order": False,
    "conv_resample": True,
    "dims": 2,
    "num_classes": None,
    "input_channel_mult": None,
    "time_embed_channels": None,
    "use_checkpoint": False,
    "attn_checkpoint": False,
    "resnet_use_zero_module": True,
}

# Top-level field -> its name in model_conf (and in model_conf.latent_net_conf).
_IN_MODEL_CONF = {
    "img_size": "image_size",
    "net_ch": "model_channels",
    "net_ch_mult": "channel_mult",
    "net_num_res_blocks": "num_res_blocks",
    "net_num_input_res_blocks": "num_input_res_blocks",
    "net_attn": "attention_resolutions",
    "net_enc_channel_mult": "enc_channel_mult",
    "net_enc_num_res_blocks": "enc_num_res_block",
    "net_enc_attn": "enc_attn_resolutions",
    "net_beatgans_attn_head": "num_heads",
    "net_beatgans_embed_channels": "embed_channels",
    "style_ch": "enc_out_channels",
    "dropout": "dropout",
    "net_resblock_updown": "resblock_updown",
    "net_beatgans_resnet_two_cond": "resnet_two_cond",
    "net_beatgans_resnet_cond_channels": "resnet_cond_channels",
    "net_enc_pool": "enc_pool",
}
_IN_LATENT_CONF = {
    "net_latent_layers": "num_layers",
    "net_latent_skip_layers": "skip_layers",
    "net_latent_num_hid_channels": "num_hid_channels",
    "net_latent_time_emb_channels": "num_time_emb_channels",
    "net_latent_use_norm": "use_norm",
    "net_latent_condition_bias": "condition_bias",
    "net_latent_dropout": "dropout",
    "net_latent_num_time_layers": "num_time_layers",
    "net_latent_time_last_act": "time_last_act",
}
# Values of the released templates, for files that lack a field altogether.
_TEMPLATE_DEFAULTS: dict[str, Any] = {
    "net_num_res_blocks": 2,
    "net_num_input_res_blocks": None,
    "net_attn": (16,),
    "net_enc_channel_mult": None,
    "net_enc_num_res_blocks": 2,
    "net_enc_attn": None,
    "net_beatgans_attn_head": 1,
    "net_beatgans_embed_channels": 512,
    "style_ch": 512,
    "dropout": 0.1,
    "net_resblock_updown": True,
    "net_beatgans_resnet_two_cond": True,
    "net_beatgans_resnet_cond_channels": None,
    "net_enc_pool": "adaptivenonzero",
    "T": 1000,
    "T_eval": 20,
    "latent_T_eval": 20,
    "beta_scheduler": "linear",
    "latent_beta_scheduler": "const0.008",
    "beatgans_rescale_timesteps": False,
    "latent_rescale_timesteps": False,
    "latent_clip_sample": False,
    "latent_znormalize": True,
    "T_sampler": "uniform",
    "diffusion_type": "beatgans",
    "net_latent_layers": None,
    "net_latent_skip_layers": None,
    "net_latent_num_hid_channels": 2048,
    "net_latent_time_emb_channels": 64,
    "net_latent_use_norm": True,
    "net_latent_condition_bias": 1,
    "net_latent_dropout": 0,
    "net_latent_num_time_layers": 2,
    "net_latent_time_last_act": False,
}
# get_named_beta_schedule of the official code knows exactly these.
OFFICIAL_BETA_SCHEDULES: tuple[str, ...] = (
    "linear",
    "cosine",
    "const0.01",
    "const0.015",
    "const0.008",
    "const0.0065",
    "const0.0055",
    "const0.0045",
    "const0.0035",
    "const0.0025",
    "const0.0015",
)
# The official code cannot run the model (or the call) with anything else.
_ONLY = "the official code cannot run it either"


@dataclass(frozen=True)
class OfficialConfig:
    """What an official checkpoint's fields say: the architecture and samplers, and whether
    the latent DPM works on z-normalised codes (`latent_znormalize`)."""

    config: ModelConfig
    latent_znormalize: bool


def known_field(name: str) -> bool:
    return name in STORED_FIELDS or name in ENUM_FIELDS or name in MODEL_CONF_ONLY


def enum_value(field: str, value: Any) -> str:
    """The member name an enum field's value means: accepts the member name, its value,
    'Enum.member' (as str() of an official enum writes it) or an enum object."""
    aliases, _default = ENUM_FIELDS[field]
    if hasattr(value, "name") and not isinstance(value, str):
        value = value.name
    text = str(value).strip()
    if "." in text:
        text = text.rsplit(".", 1)[1]
    if not aliases:
        return text
    if text not in aliases:
        choices = ", ".join(sorted(set(aliases.values())))
        raise UnsupportedField(field, value, f"not a value of the official enum ({choices})")
    return aliases[text]


class _Fields:
    """Field lookup: caller's fields, then the top level, then model_conf, then defaults."""

    def __init__(self, hparams: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
        self.hparams = hparams
        self.overrides = overrides
        model_conf = hparams.get("model_conf")
        self.model_conf: Mapping[str, Any] = model_conf if isinstance(model_conf, Mapping) else {}
        latent_conf = self.model_conf.get("latent_net_conf")
        self.latent_conf: Mapping[str, Any] = (
            latent_conf if isinstance(latent_conf, Mapping) else {}
        )

    def has(self, field: str) -> bool:
        return (
            field in self.overrides
            or field in self.hparams
            or _IN_MODEL_CONF.get(field, "") in self.model_conf
            or _IN_LATENT_CONF.get(field, "") in self.latent_conf
        )

    def get(self, field: str) -> Any:
        if field in self.overrides:
            return self.overrides[field]
        if field in ENUM_FIELDS:
            # Official files never hold these; a hand-made config dict may.
            return self.hparams.get(field, ENUM_FIELDS[field][1])
        if field in MODEL_CONF_ONLY:
            return self.model_conf.get(field, MODEL_CONF_ONLY[field])
        if field in self.hparams:
            return self.hparams[field]
        if _IN_MODEL_CONF.get(field, "") in self.model_conf:
            return self.model_conf[_IN_MODEL_CONF[field]]
        if _IN_LATENT_CONF.get(field, "") in self.latent_conf:
            return self.latent_conf[_IN_LATENT_CONF[field]]
        return _TEMPLATE_DEFAULTS.get(field)

    def enum(self, field: str) -> str:
        return enum_value(field, self.get(field))

    def int(self, field: str, *, minimum: int = 1, optional: bool = False) -> int | None:
        value = self.get(field)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UnsupportedField(field, value, f"must be an integer >= {minimum}")
        return value

    def ints(self, field: str, *, optional: bool = False) -> tuple[int, ...] | None:
        value = self.get(field)
        if value is None and optional:
            return None
        try:
            items = tuple(value)
        except TypeError:
            raise UnsupportedField(field, value, "must be a list of integers") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise UnsupportedField(field, value, "must be a list of integers")
        return items

    def bool(self, field: str) -> bool:
        value = self.get(field)
        if not isinstance(value, bool):
            raise UnsupportedField(field, value, "must be true or false")
        return value

    def number(self, field: str) -> float:
        value = self.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UnsupportedField(field, value, "must be a number")
        return float(value)


def has_architecture(hparams: Mapping[str, Any]) -> bool:
    """Whether stored hyper-parameters describe the network at all (else: a preset)."""
    fields = _Fields(hparams, {})
    return all(fields.has(f) for f in ("img_size", "net_ch", "net_ch_mult"))


def _autoencoder_config(f: _Fields) -> AutoencoderConfig:
    """The UNet + encoder from the model_conf fields, after the geometry checks."""
    image_size = f.int("img_size")
    channel_mult = f.ints("net_ch_mult")
    encoder_mult = f.ints("net_enc_channel_mult", optional=True) or channel_mult
    if not channel_mult:
        raise UnsupportedField("net_ch_mult", f.get("net_ch_mult"), "needs at least one level")
    levels = max(len(channel_mult), len(encoder_mult))
    if image_size % 2 ** (levels - 1):
        raise UnsupportedField(
            "img_size",
            image_size,
            f"cannot be halved {levels - 1} times without a remainder, which the "
            f"{levels} levels of net_ch_mult/net_enc_channel_mult need ({_ONLY})",
        )
    style = f.int("style_ch")
    embed = f.int("net_beatgans_embed_channels")
    cond_channels = f.get("net_beatgans_resnet_cond_channels")
    if (cond_channels if cond_channels is not None else embed) != style:
        field, value = (
            ("net_beatgans_resnet_cond_channels", cond_channels)
            if cond_channels is not None
            else ("net_beatgans_embed_channels", embed)
        )
        raise UnsupportedField(
            field,
            value,
            f"the ResBlocks' z_sem input would not match style_ch={style}; the official "
            "forward pass fails on such a model",
        )
    attention = f.ints("net_attn")
    encoder_attention = f.ints("net_enc_attn", optional=True) or None  # () falls back too
    autoencoder = AutoencoderConfig(
        image_size=image_size,
        in_channels=f.int("in_channels"),
        out_channels=f.int("out_channels"),
        model_channels=f.int("net_ch"),
        channel_mult=channel_mult,
        num_res_blocks=f.int("net_num_res_blocks"),
        num_input_res_blocks=f.int("net_num_input_res_blocks", optional=True),
        attention_resolutions=attention,
        encoder_channel_mult=encoder_mult,
        encoder_num_res_blocks=f.int("net_enc_num_res_blocks"),
        encoder_attention_resolutions=encoder_attention,
        num_heads=f.int("net_beatgans_attn_head"),
        num_head_channels=f.int("num_head_channels", minimum=-1),
        new_attention_order=f.bool("use_new_attention_order"),
        time_embed_channels=embed,
        z_sem_channels=style,
        dropout=f.number("dropout"),
        resblock_updown=f.bool("net_resblock_updown"),
        conv_resample=f.bool("conv_resample"),
    )
    _check_heads(f, autoencoder)
    return autoencoder


def _diffusion_configs(f: _Fields) -> tuple[DiffusionConfig, DiffusionConfig]:
    """The image and latent diffusion processes (one T, two beta schedules)."""
    T = f.int("T")
    diffusion = DiffusionConfig(
        num_timesteps=T,
        beta_schedule=_beta_schedule(f, "beta_scheduler"),
        loss=f.enum("beatgans_loss_type"),
        clip_denoised=True,
        rescale_timesteps=f.bool("beatgans_rescale_timesteps"),
    )
    latent_diffusion = DiffusionConfig(
        num_timesteps=T,  # the official latent sampler shares T with the image sampler
        beta_schedule=_beta_schedule(f, "latent_beta_scheduler"),
        loss=f.enum("latent_loss_type"),
        clip_denoised=f.bool("latent_clip_sample"),
        rescale_timesteps=f.bool("latent_rescale_timesteps"),
    )
    return diffusion, latent_diffusion


def official_config(
    hparams: Mapping[str, Any],
    *,
    name: str,
    has_latent_weights: bool,
    fields: Mapping[str, Any] | None = None,
) -> OfficialConfig:
    """Our config from an official checkpoint's `hyper_parameters` plus `fields` the caller
    states (official TrainConfig names, e.g. {'net_latent_activation': 'lrelu'}), which win
    over stored values. Raises UnsupportedField for a value we cannot honour."""
    overrides = dict(fields or {})
    for key in overrides:
        if not known_field(key):
            raise UnsupportedField(key, overrides[key], "not a field of the official TrainConfig")
    f = _Fields(hparams, overrides)
    _check_not_built(f)

    autoencoder = _autoencoder_config(f)
    latent = _latent_config(f, autoencoder.z_sem_channels, has_latent_weights)
    diffusion, latent_diffusion = _diffusion_configs(f)
    latent_steps = f.int("latent_T_eval")
    if latent is None:
        # Without a latent DPM its sampler fields describe nothing (an autoencoder run keeps
        # the TrainConfig defaults there): keep ours, so equal models get equal configs.
        latent_diffusion, latent_steps = LATENT_DIFFUSION, ModelConfig.default_latent_steps
    config = ModelConfig(
        name=str(f.get("name") or name),
        autoencoder=autoencoder,
        latent_net=latent,
        diffusion=diffusion,
        latent_diffusion=latent_diffusion,
        default_render_steps=f.int("T_eval"),
        default_latent_steps=latent_steps,
    )
    return OfficialConfig(config, latent_znormalize=f.bool("latent_znormalize"))


def _check_not_built(f: _Fields) -> None:
    """Values the official code refuses or cannot run, and those we do not implement."""
    fixed = {
        "net_beatgans_resnet_two_cond": (
            True,
            "without two-condition ResBlocks the official autoencoder's forward raises "
            "NotImplementedError",
        ),
        "net_enc_pool": ("adaptivenonzero", "the official encoder knows no other pooling"),
        "model_name": ("beatgans_autoenc", "not a diffusion autoencoder (no semantic encoder)"),
        "model_type": ("autoencoder", "not a diffusion autoencoder (no semantic encoder)"),
        "beatgans_gen_type": ("ddim", "only DDIM sampling is implemented (every release uses it)"),
        "latent_gen_type": ("ddim", "only DDIM sampling is implemented (every release uses it)"),
        "beatgans_model_mean_type": ("eps", f"only eps prediction exists; {_ONLY}"),
        "latent_model_mean_type": ("eps", f"only eps prediction exists; {_ONLY}"),
        "T_sampler": ("uniform", f"the official LitModel knows only 'uniform'; {_ONLY}"),
        "diffusion_type": (
            "beatgans",
            f"the official samplers exist only for 'beatgans'; {_ONLY}",
        ),
        "dims": (2, "only 2-d images are supported"),
        "num_classes": (None, f"class-conditional UNets are not implemented; {_ONLY}"),
        "input_channel_mult": (None, "a separate input-side channel_mult is not implemented"),
        "num_heads_upsample": (
            -1,
            "the official UNet sets its upsampling heads only for -1 and fails otherwise",
        ),
        "in_channels": (3, "only RGB images are supported"),
        "out_channels": (3, "only eps prediction for RGB images is supported"),
    }
    for field, (wanted, reason) in fixed.items():
        value = f.get(field)
        shown = value
        if field in ENUM_FIELDS:
            value = enum_value(field, value)
        if value != wanted:
            raise UnsupportedField(field, shown, reason)
    mode = f.enum("train_mode")
    if mode == "manipulate":
        raise UnsupportedField(
            "train_mode",
            f.get("train_mode"),
            "an attribute-classifier checkpoint; load it with load_official_classifier()",
        )
    for field in ("beatgans_loss_type", "latent_loss_type"):
        if f.enum(field) not in ("mse", "l1"):
            raise UnsupportedField(
                field, f.get(field), f"the official training loss knows only mse and l1; {_ONLY}"
            )
    f.enum("beatgans_model_var_type")  # validated; DDIM (eta = 0) never uses the variance
    f.enum("latent_model_var_type")
    f.enum("net_beatgans_resnet_scale_at")


def _check_heads(f: _Fields, config: AutoencoderConfig) -> None:
    """Every attention width must split into the configured heads (the official
    QKVAttention asserts the same at its first forward pass)."""
    widths: set[int] = set()
    for mults, attention in (
        (config.channel_mult, config.attention_resolutions),
        (config.encoder_channel_mult, config.encoder_attention),
    ):
        resolution = config.image_size
        for level, mult in enumerate(mults):
            if resolution in attention:
                widths.add(config.model_channels * mult)
            if level != len(mults) - 1:
                resolution //= 2
        widths.add(config.model_channels * mults[-1])  # the middle block always attends
    for width in sorted(widths):
        if config.num_head_channels > 0:
            if width % config.num_head_channels:
                raise UnsupportedField(
                    "num_head_channels",
                    config.num_head_channels,
                    f"does not divide the {width} channels of an attention block ({_ONLY})",
                )
        elif width % config.num_heads:
            raise UnsupportedField(
                "net_beatgans_attn_head",
                config.num_heads,
                f"does not divide the {width} channels of an attention block ({_ONLY})",
            )


def _latent_config(f: _Fields, style: int, has_latent_weights: bool) -> LatentNetConfig | None:
    net_type = (
        f.enum("net_latent_net_type")
        if "net_latent_net_type" in f.overrides
        else ("skip" if has_latent_weights else "none")
    )
    if net_type == "none" or not has_latent_weights:
        return None
    layers = f.get("net_latent_layers")
    if layers is None:
        raise UnsupportedField(
            "net_latent_layers",
            None,
            "the checkpoint holds a latent DPM but does not say how many layers it has; "
            "state it with official_fields={'net_latent_layers': N, "
            "'net_latent_skip_layers': [...]}",
        )
    layers = f.int("net_latent_layers", minimum=2)
    skip = f.ints("net_latent_skip_layers", optional=True)
    if skip is None:
        raise UnsupportedField(
            "net_latent_skip_layers", None, f"the official MLPSkipNet needs a list; {_ONLY}"
        )
    return LatentNetConfig(
        num_channels=style,
        num_hid_channels=f.int("net_latent_num_hid_channels"),
        num_layers=layers,
        skip_layers=skip,
        use_norm=f.bool("net_latent_use_norm"),
        condition_bias=f.number("net_latent_condition_bias"),
        time_emb_channels=f.int("net_latent_time_emb_channels", minimum=2),
        dropout=f.number("net_latent_dropout"),
        activation=f.enum("net_latent_activation"),
        last_act=f.enum("net_latent_net_last_act"),
        num_time_layers=f.int("net_latent_num_time_layers"),
        time_last_act=f.bool("net_latent_time_last_act"),
    )


def _beta_schedule(f: _Fields, field: str) -> str:
    value = f.get(field)
    if value not in OFFICIAL_BETA_SCHEDULES:
        raise UnsupportedField(
            field,
            value,
            f"not a schedule of the official get_named_beta_schedule "
            f"({', '.join(OFFICIAL_BETA_SCHEDULES)})",
        )
    return value

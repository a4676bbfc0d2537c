"""The semantic encoder and the conditional decoder UNet of DiffAE.

`AutoencoderNet` is one module holding both, with the official parameter layout (the
`model.*` / `ema_model.*` keys of a released checkpoint, without the prefix):
`encoder.*` is the semantic encoder; everything else is the decoder UNet.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..config import AutoencoderConfig
from .blocks import (
    AttentionBlock,
    CondSequential,
    Downsample,
    ResBlock,
    Upsample,
    normalization,
    timestep_embedding,
)


class SemanticEncoder(nn.Module):
    """Half a UNet with attention and global pooling: image -> z_sem.

    Input (B, C, S, S) in [-1, 1]; output (B, z_sem_channels). Its ResBlocks take no time
    input ('adaptivenonzero' pooling head: GN, SiLU, global average pool, 1x1 conv).
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        base = config.model_channels
        ch = base * config.encoder_channel_mult[0]
        blocks: list[nn.Module] = [CondSequential(nn.Conv2d(config.in_channels, ch, 3, padding=1))]
        resolution = config.image_size
        last_level = len(config.encoder_channel_mult) - 1
        for level, mult in enumerate(config.encoder_channel_mult):
            for _ in range(config.encoder_num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, base * mult, dropout=config.dropout)]
                ch = base * mult
                if resolution in config.encoder_attention:
                    layers.append(_attention(config, ch))
                blocks.append(CondSequential(*layers))
            if level != last_level:
                resolution //= 2
                blocks.append(
                    CondSequential(_resample_block(config, ch, "down", conditioned=False))
                )
        self.input_blocks = nn.ModuleList(blocks)
        self.middle_block = CondSequential(
            ResBlock(ch, dropout=config.dropout),
            _attention(config, ch),
            ResBlock(ch, dropout=config.dropout),
        )
        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(ch, config.z_sem_channels, 1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inputs follow the weights' dtype, which the facade chooses (float32 or bf16/fp16).
        h = x.to(self.input_blocks[0][0].weight.dtype)
        for block in self.input_blocks:
            h = block(h)
        return self.out(self.middle_block(h)).float()


def _attention(config: AutoencoderConfig, ch: int) -> AttentionBlock:
    return AttentionBlock(ch, config.heads_for(ch), new_order=config.new_attention_order)


def _resample_block(
    config: AutoencoderConfig, ch: int, mode: str, *, conditioned: bool
) -> nn.Module:
    """Between levels: a ResBlock that resamples (resblock_updown, every release) or a plain
    Downsample / Upsample layer."""
    if not config.resblock_updown:
        if mode == "down":
            return Downsample(ch, config.conv_resample)
        return Upsample(ch, config.conv_resample)
    if conditioned:
        return ResBlock(
            ch,
            time_embed_channels=config.time_embed_channels,
            z_sem_channels=config.z_sem_channels,
            dropout=config.dropout,
            resample=mode,
        )
    return ResBlock(ch, dropout=config.dropout, resample=mode)


class _TimeEmbed(nn.Module):
    """Holds the time MLP under the official name `time_embed.time_embed`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.time_embed = nn.Sequential(
            nn.Linear(in_channels, out_channels), nn.SiLU(), nn.Linear(out_channels, out_channels)
        )

    def forward(self, t_emb: torch.Tensor) -> torch.Tensor:
        return self.time_embed(t_emb)


class AutoencoderNet(nn.Module):
    """Semantic encoder + conditional decoder UNet predicting the noise eps.

    `forward(x_t, t, z_sem)`: x_t (B, C, S, S), t (B,) integer timesteps in [0, T) of the
    training schedule, z_sem (B, z_sem_channels) -> eps (B, C, S, S), float32.
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        base = config.model_channels
        embed = config.time_embed_channels
        cond = {"time_embed_channels": embed, "z_sem_channels": config.z_sem_channels}
        self.time_embed = _TimeEmbed(base, embed)

        ch = base * config.channel_mult[0]
        blocks: list[nn.Module] = [CondSequential(nn.Conv2d(config.in_channels, ch, 3, padding=1))]
        # Channels of each stored skip, grouped per level: the decoder pops them in reverse.
        skip_channels: list[list[int]] = [[ch]] + [[] for _ in config.channel_mult[1:]]
        resolution = config.image_size
        last_level = len(config.channel_mult) - 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.input_res_blocks):
                layers: list[nn.Module] = [
                    ResBlock(ch, base * mult, dropout=config.dropout, **cond)
                ]
                ch = base * mult
                if resolution in config.attention_resolutions:
                    layers.append(_attention(config, ch))
                blocks.append(CondSequential(*layers))
                skip_channels[level].append(ch)
            if level != last_level:
                resolution //= 2
                blocks.append(CondSequential(_resample_block(config, ch, "down", conditioned=True)))
                skip_channels[level + 1].append(ch)
        self.input_blocks = nn.ModuleList(blocks)
        self.input_blocks_per_level = [len(s) for s in skip_channels]

        self.middle_block = CondSequential(
            ResBlock(ch, dropout=config.dropout, **cond),
            _attention(config, ch),
            ResBlock(ch, dropout=config.dropout, **cond),
        )

        out_blocks: list[nn.Module] = []
        self.output_blocks_per_level: list[int] = []
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                # Laterals are taken from the end of the level's list; when the input side
                # has more blocks, its first ones are never used, when it has fewer, the
                # last output blocks of the level get none (as in the official UNet).
                lateral = skip_channels[level].pop() if skip_channels[level] else 0
                layers = [
                    ResBlock(
                        ch, base * mult, dropout=config.dropout, lateral_channels=lateral, **cond
                    )
                ]
                ch = base * mult
                if resolution in config.attention_resolutions:
                    layers.append(_attention(config, ch))
                if level and i == config.num_res_blocks:
                    resolution *= 2
                    layers.append(_resample_block(config, ch, "up", conditioned=True))
                out_blocks.append(CondSequential(*layers))
            self.output_blocks_per_level.append(config.num_res_blocks + 1)
        self.output_blocks = nn.ModuleList(out_blocks)
        self.out = nn.Sequential(
            normalization(ch), nn.SiLU(), nn.Conv2d(ch, config.out_channels, 3, padding=1)
        )
        self.encoder = SemanticEncoder(config)

        # The decoder's ResBlocks that take t and z_sem, in forward order (a plain tuple: the
        # modules stay registered where they are).
        self._conditioned_blocks: tuple[ResBlock, ...] = tuple(
            m
            for name, m in self.named_modules()
            if isinstance(m, ResBlock) and m.conditioned and not name.startswith("encoder.")
        )

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the convolution weights, which activations follow."""
        return self.input_blocks[0][0].weight.dtype

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) integer timesteps -> (B, time_embed_channels) embedding fed to every ResBlock."""
        embedding = timestep_embedding(t, self.config.model_channels)
        return self.time_embed(embedding.to(self.time_embed.time_embed[0].weight.dtype))

    def prepare_time(self, t: torch.Tensor) -> dict[ResBlock, torch.Tensor]:
        """Each conditioned ResBlock's AdaGN (scale, shift) for timesteps t (K,): (K, 2C).

        These depend on t only. A sampler that visits K known timesteps can compute them
        once for all K (one small matmul per block instead of K) and pass row k,
        `{b: p[k : k + 1] for b, p in ...}`, as `time_projections` at step k: a (1, 2C) row
        broadcasts over any batch size.
        """
        time_emb = self.embed_time(t)
        return {block: block.project_time(time_emb) for block in self._conditioned_blocks}

    def prepare_z_sem(self, z_sem: torch.Tensor | None) -> dict[ResBlock, torch.Tensor | None]:
        """Each conditioned ResBlock's semantic scale for z_sem (B, D): (B, C) or None.

        Constant over every step of a render or an inversion: compute once, pass to each
        step as `z_sem_projections`.
        """
        if z_sem is None:
            return dict.fromkeys(self._conditioned_blocks)
        return {block: block.project_z_sem(z_sem) for block in self._conditioned_blocks}

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor | None = None,
        z_sem: torch.Tensor | None = None,
        *,
        time_projections: Mapping[ResBlock, torch.Tensor] | None = None,
        z_sem_projections: Mapping[ResBlock, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """eps for x_t (B, C, S, S) at timesteps t (B,) given z_sem (B, D), float32.

        `time_projections` / `z_sem_projections` (from `prepare_time` / `prepare_z_sem`)
        replace t / z_sem when given; with the same inputs the result is bit-identical.
        """
        if time_projections is None:
            if t is None:
                raise ValueError("AutoencoderNet.forward needs t or time_projections")
            time_projections = self.prepare_time(t)
        if z_sem_projections is None:
            z_sem_projections = self.prepare_z_sem(z_sem)
        conditioning = {
            block: (time_projections[block], z_sem_projections[block])
            for block in self._conditioned_blocks
        }
        # Inputs follow the weights' dtype, which the facade chooses (float32 or bf16/fp16).
        h = x_t.to(self.dtype)
        skips: list[list[torch.Tensor]] = []
        blocks = iter(self.input_blocks)
        for count in self.input_blocks_per_level:
            level_skips = []
            for _ in range(count):
                h = next(blocks)(h, conditioning=conditioning)
                level_skips.append(h)
            skips.append(level_skips)
        h = self.middle_block(h, conditioning=conditioning)
        blocks = iter(self.output_blocks)
        for level_skips, count in zip(reversed(skips), self.output_blocks_per_level, strict=True):
            for _ in range(count):
                lateral = level_skips.pop() if level_skips else None
                h = next(blocks)(h, lateral=lateral, conditioning=conditioning)
        # The facade may keep the output layer in float32 (see DiffAE): h follows its dtype.
        return self.out(h.to(self.out[-1].weight.dtype)).float()

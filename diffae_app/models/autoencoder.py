"""The semantic encoder and the conditional decoder UNet of DiffAE.

`AutoencoderNet` is one module holding both, with the official parameter layout (the
`model.*` / `ema_model.*` keys of a released checkpoint, without the prefix):
`encoder.*` is the semantic encoder; everything else is the decoder UNet.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import AutoencoderConfig
from .blocks import AttentionBlock, CondSequential, ResBlock, normalization, timestep_embedding


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
                    layers.append(AttentionBlock(ch, config.num_heads))
                blocks.append(CondSequential(*layers))
            if level != last_level:
                resolution //= 2
                blocks.append(
                    CondSequential(_resample_block(config, ch, "down", conditioned=False))
                )
        self.input_blocks = nn.ModuleList(blocks)
        self.middle_block = CondSequential(
            ResBlock(ch, dropout=config.dropout),
            AttentionBlock(ch, config.num_heads),
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
        h = x
        for block in self.input_blocks:
            h = block(h)
        return self.out(self.middle_block(h)).float()


def _resample_block(
    config: AutoencoderConfig, ch: int, mode: str, *, conditioned: bool
) -> nn.Module:
    if not config.resblock_updown:
        raise ValueError("only resblock_updown=True (the released models' setting) is supported")
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
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [
                    ResBlock(ch, base * mult, dropout=config.dropout, **cond)
                ]
                ch = base * mult
                if resolution in config.attention_resolutions:
                    layers.append(AttentionBlock(ch, config.num_heads))
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
            AttentionBlock(ch, config.num_heads),
            ResBlock(ch, dropout=config.dropout, **cond),
        )

        out_blocks: list[nn.Module] = []
        self.output_blocks_per_level: list[int] = []
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                lateral = skip_channels[level].pop() if skip_channels[level] else 0
                layers = [
                    ResBlock(
                        ch, base * mult, dropout=config.dropout, lateral_channels=lateral, **cond
                    )
                ]
                ch = base * mult
                if resolution in config.attention_resolutions:
                    layers.append(AttentionBlock(ch, config.num_heads))
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

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) integer timesteps -> (B, time_embed_channels) embedding fed to every ResBlock."""
        return self.time_embed(timestep_embedding(t, self.config.model_channels))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z_sem: torch.Tensor) -> torch.Tensor:
        time_emb = self.embed_time(t)
        h = x_t
        skips: list[list[torch.Tensor]] = []
        blocks = iter(self.input_blocks)
        for count in self.input_blocks_per_level:
            level_skips = []
            for _ in range(count):
                h = next(blocks)(h, time_emb, z_sem)
                level_skips.append(h)
            skips.append(level_skips)
        h = self.middle_block(h, time_emb, z_sem)
        blocks = iter(self.output_blocks)
        for level_skips, count in zip(reversed(skips), self.output_blocks_per_level, strict=True):
            for _ in range(count):
                lateral = level_skips.pop() if level_skips else None
                h = next(blocks)(h, time_emb, z_sem, lateral)
        return self.out(h).float()

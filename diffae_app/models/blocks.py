"""Building blocks shared by the encoder and the decoder UNet.

Parameter names (`in_layers`, `emb_layers`, `cond_emb_layers`, `out_layers`, `qkv`,
`proj_out`, ...) follow the official DiffAE modules on purpose: the released checkpoints
then load without a renaming table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, (B,) -> (B, dim), float32.

    The released weights expect cos before sin: [cos(t*f_k), sin(t*f_k)] with
    f_k = exp(-ln(max_period) * k / half), k < half.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that always normalises in float32 (keeps bf16/fp16 inference stable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return super().forward(x)
        weight, bias = self.weight.float(), self.bias.float()
        if x.device.type == "cpu":
            # The CPU kernel takes bf16/fp16 input with float32 gamma/beta and computes in
            # float32 itself, rounding only its output: the same numbers as the round trip
            # below (bit-identical for bf16 in tests/test_fast_paths.py) without two
            # float32 copies of the activations (2.3x faster on NHWC bf16).
            return F.group_norm(x, self.num_groups, weight, bias, self.eps).to(x.dtype)
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    return GroupNorm32(min(32, channels), channels)


def _resample(x: torch.Tensor, mode: str | None) -> torch.Tensor:
    if mode == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    if mode == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class ResBlock(nn.Module):
    """Residual block, optionally conditioned on time and on z_sem, optionally resampling.

    Conditioned (decoder UNet): h = conv(GN(x)); h = GN(h) * (1 + s_t) + b_t; h = h * (1 + s_z);
    out = skip(x) + conv(dropout(SiLU(h))), with (s_t, b_t) from the time embedding and s_z
    from z_sem (the paper's AdaGN, eq. 9). Unconditioned (semantic encoder): the released
    encoder blocks are only skip(x) + conv(SiLU(GN(x))), without a second conv.

    `lateral_channels` > 0 makes the block concatenate a skip tensor from the encoder path
    to its input, as the decoder's first block of each stage does.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        *,
        time_embed_channels: int | None = None,
        z_sem_channels: int | None = None,
        dropout: float = 0.0,
        resample: str | None = None,
        lateral_channels: int = 0,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        in_channels = channels + lateral_channels
        self.has_lateral = lateral_channels > 0
        self.resample = resample
        self.conditioned = time_embed_channels is not None
        self.in_layers = nn.Sequential(
            normalization(in_channels),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
        )
        if self.conditioned:
            self.emb_layers = nn.Sequential(
                nn.SiLU(), nn.Linear(time_embed_channels, 2 * out_channels)
            )
            if z_sem_channels is not None:
                self.cond_emb_layers = nn.Sequential(
                    nn.SiLU(), nn.Linear(z_sem_channels, out_channels)
                )
            self.out_layers = nn.Sequential(
                normalization(out_channels),
                nn.SiLU(),
                nn.Dropout(dropout),
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
            )
        self.skip_connection = (
            nn.Identity()
            if out_channels == in_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def project_time(self, time_emb: torch.Tensor) -> torch.Tensor:
        """Time embedding (B, E) -> AdaGN scale and shift (B, 2 * out_channels).

        Depends on t only, so a sampler may compute it once per timestep and pass it back
        through `forward(..., conditioning=...)` (see `AutoencoderNet.prepare_time`).
        """
        return self.emb_layers(time_emb.to(self.emb_layers[1].weight.dtype))

    def project_z_sem(self, z_sem: torch.Tensor) -> torch.Tensor | None:
        """z_sem (B, D) -> semantic scale (B, out_channels); None for blocks without one.

        Constant over the steps of a render or an inversion: compute it once per z_sem.
        """
        if not hasattr(self, "cond_emb_layers"):
            return None
        return self.cond_emb_layers(z_sem.to(self.cond_emb_layers[1].weight.dtype))

    def forward(
        self,
        x: torch.Tensor,
        time_emb: torch.Tensor | None = None,
        z_sem: torch.Tensor | None = None,
        lateral: torch.Tensor | None = None,
        *,
        conditioning: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """`conditioning` = (project_time(time_emb), project_z_sem(z_sem)) computed ahead;
        when given, `time_emb` and `z_sem` are not used. Same ops on the same tensors, so the
        result is bit-identical to passing time_emb and z_sem.
        """
        # Without autograd nothing needs the intermediate tensors, so the activations, the
        # AdaGN affine and the residual sum reuse their input's memory: the same arithmetic
        # in the same order (bit-identical), with a lower peak at 256 px (benchmarks/memory.py).
        in_place = not torch.is_grad_enabled()
        if self.has_lateral:
            x = torch.cat([x, lateral], dim=1)
        norm_in, act_in, conv_in = self.in_layers
        h = F.silu(norm_in(x), inplace=True) if in_place else act_in(norm_in(x))
        if self.resample is not None:
            # Resample between the activation and the conv, on both paths.
            h = conv_in(_resample(h, self.resample))
            x = _resample(x, self.resample)
        else:
            h = conv_in(h)
        if self.conditioned:
            if conditioning is None:
                z_scale = self.project_z_sem(z_sem) if z_sem is not None else None
                conditioning = (self.project_time(time_emb), z_scale)
            time_scale_shift, z_scale = conditioning
            norm, act, dropout, conv = self.out_layers
            scale, shift = time_scale_shift.to(h.dtype)[:, :, None, None].chunk(2, dim=1)
            z_factor = None if z_scale is None else 1 + z_scale.to(h.dtype)[:, :, None, None]
            if in_place:
                h = norm(h).mul_(1 + scale).add_(shift)
                if z_factor is not None:
                    h.mul_(z_factor)
                h = conv(dropout(F.silu(h, inplace=True)))
            else:
                h = norm(h) * (1 + scale) + shift
                if z_factor is not None:
                    h = h * z_factor
                h = conv(dropout(act(h)))
        skip = self.skip_connection(x)
        if in_place and skip.dtype == h.dtype:  # (under autocast they differ: promote instead)
            return h.add_(skip)  # h + skip == skip + h exactly
        return skip + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with a 1x1 qkv projection (single or multi-head).

    Channel layout of `qkv`: with the legacy order (every release) the channels are grouped
    by head first, [q, k, v] inside each head; with `new_order` they are [q | k | v], each
    then split into heads. Uses scaled_dot_product_attention, which computes the same
    softmax(q k^T / sqrt(d)) v.
    """

    def __init__(self, channels: int, num_heads: int = 1, *, new_order: bool = False) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"{channels} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.new_order = new_order
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        flat = x.reshape(b, c, height * width)
        qkv = self.qkv(self.norm(flat))
        head_ch = c // self.num_heads
        if self.new_order:
            # [q | k | v], each (B, heads*head_ch, L) -> (B, heads, L, head_ch).
            q, k, v = (
                part.reshape(b, self.num_heads, head_ch, -1).transpose(2, 3)
                for part in qkv.chunk(3, dim=1)
            )
        else:
            # (B*heads, 3*head_ch, L) -> three (B, heads, L, head_ch) tensors.
            q, k, v = (
                qkv.reshape(b, self.num_heads, 3 * head_ch, -1).transpose(2, 3).split(head_ch, -1)
            )
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(2, 3).reshape(b, c, -1)
        return (flat + self.proj_out(a)).reshape(b, c, height, width)


class Downsample(nn.Module):
    """Halves the resolution between levels when ResBlocks do not resample themselves
    (official `resblock_updown=False`): a 3x3 stride-2 conv named `op` (`use_conv`), or a
    parameter-free 2x2 average pool."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op = (
            nn.Conv2d(channels, channels, 3, stride=2, padding=1)
            if use_conv
            else nn.AvgPool2d(kernel_size=2, stride=2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling, then a 3x3 conv named `conv` when `use_conv`."""

    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class CondSequential(nn.Sequential):
    """A Sequential that hands time embedding, z_sem and the lateral skip to its ResBlocks.

    `conditioning` maps a ResBlock to its precomputed (time, z_sem) projections; blocks found
    in it use those instead of projecting `time_emb` and `z_sem` themselves.
    """

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        time_emb: torch.Tensor | None = None,
        z_sem: torch.Tensor | None = None,
        lateral: torch.Tensor | None = None,
        conditioning: Mapping[nn.Module, tuple[torch.Tensor, torch.Tensor | None]] | None = None,
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                own = conditioning.get(layer) if conditioning is not None else None
                x = layer(x, time_emb, z_sem, lateral, conditioning=own)
            else:
                x = layer(x)
        return x

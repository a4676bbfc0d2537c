"""The latent DPM network: an MLP with skip inputs that predicts eps for normalised z_sem."""

from __future__ import annotations

import torch
from torch import nn

from ..config import LatentNetConfig
from .blocks import timestep_embedding


def activation(name: str) -> nn.Module:
    """The official `Activation` enum as a module (no parameters, so no state_dict keys)."""
    modules = {
        "none": nn.Identity,
        "relu": nn.ReLU,
        "lrelu": lambda: nn.LeakyReLU(negative_slope=0.2),
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
    }
    if name not in modules:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(modules)}")
    return modules[name]()


class LatentLayer(nn.Module):
    """Linear -> h * (condition_bias + Linear(act(t_emb))) -> LayerNorm -> act -> dropout.

    The last layer of the net is a plain Linear (no time modulation, norm or activation).
    The released checkpoints also store `linear_emb` under the alias `cond_layers.1`; the
    checkpoint loader maps that alias onto `linear_emb` (see checkpoints.py).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        time_channels: int,
        conditioned: bool,
        use_norm: bool,
        condition_bias: float,
        dropout: float,
        act: str = "silu",
    ) -> None:
        super().__init__()
        self.conditioned = conditioned
        self.condition_bias = condition_bias
        self.linear = nn.Linear(in_channels, out_channels)
        # The official layer applies the same activation to its output and, before
        # `linear_emb`, to the time embedding; the last layer has none of either.
        self.act = activation(act if conditioned else "none")
        if conditioned:
            self.linear_emb = nn.Linear(time_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels) if use_norm and conditioned else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        if not self.conditioned:
            return h
        h = h * (self.condition_bias + self.linear_emb(self.act(time_emb)))
        return self.dropout(self.act(self.norm(h)))


class LatentNet(nn.Module):
    """`forward(z_t, t)`: z_t (B, num_channels) normalised z_sem at step t (B,) -> eps (B, C)."""

    def __init__(self, config: LatentNetConfig) -> None:
        super().__init__()
        self.config = config
        c, hid = config.num_channels, config.num_hid_channels
        # num_time_layers Linears (keys time_embed.0, .2, .4, ...) with the activation between
        # them, and after the last one only when time_last_act.
        time_layers: list[nn.Module] = []
        for i in range(config.num_time_layers):
            time_layers.append(nn.Linear(config.time_emb_channels if i == 0 else c, c))
            if i < config.num_time_layers - 1 or config.time_last_act:
                time_layers.append(activation(config.activation))
        self.time_embed = nn.Sequential(*time_layers)
        layers = []
        for i in range(config.num_layers):
            last = i == config.num_layers - 1
            in_ch = c if i == 0 else hid
            if i in config.skip_layers:
                in_ch += c
            layers.append(
                LatentLayer(
                    in_ch,
                    c if last else hid,
                    time_channels=c,
                    conditioned=not last,
                    use_norm=config.use_norm,
                    condition_bias=config.condition_bias,
                    dropout=0.0 if last else config.dropout,
                    act=config.activation,
                )
            )
        self.layers = nn.ModuleList(layers)
        self.last_act = activation(config.last_act)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time_emb = self.time_embed(timestep_embedding(t, self.config.time_emb_channels))
        h = z_t
        for i, layer in enumerate(self.layers):
            if i in self.config.skip_layers:
                h = torch.cat([h, z_t], dim=1)
            h = layer(h, time_emb)
        return self.last_act(h)

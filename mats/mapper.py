"""Mapper + projector: turn one encoder embedding into P soft tokens the LM reads as a prefix.

ClipCap (Mokady et al. 2021) introduced both mappers; MATS uses the transformer one:

    embedding [B, D] --linear--> clip_length tokens [B, C, W]
    concat learned prefix constants [P, W]             -> [B, C+P, W]
    N transformer layers (the constants attend to the clip tokens)
    keep the last P outputs                            -> [B, P, W]
    projector: linear W -> LM hidden size              -> [B, P, H]

The projector is separate so one mapper width works with any LM: only the last linear changes.
"""
from __future__ import annotations

import torch
from torch import nn

from mats.config import MapperConfig
from mats.errors import ConfigError


class TransformerMapper(nn.Module):
    def __init__(self, in_dim: int, cfg: MapperConfig):
        super().__init__()
        self.cfg = cfg
        self.to_clip = nn.Linear(in_dim, cfg.clip_length * cfg.width)
        # Learned queries: after the transformer, these positions carry what the LM reads.
        self.prefix_const = nn.Parameter(torch.randn(cfg.prefix_length, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.width,
            nhead=cfg.num_heads,
            dim_feedforward=cfg.width * 2,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,  # pre-norm trains stably without warm-up tricks on small data
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=cfg.num_layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        clip = self.to_clip(x).view(b, self.cfg.clip_length, self.cfg.width)
        prefix = self.prefix_const.unsqueeze(0).expand(b, -1, -1)
        out = self.transformer(torch.cat([clip, prefix], dim=1))
        return out[:, self.cfg.clip_length :]


class MLPMapper(nn.Module):
    """ClipCap's MLP variant: one hidden layer straight to P x W."""

    def __init__(self, in_dim: int, cfg: MapperConfig):
        super().__init__()
        self.cfg = cfg
        hidden = (in_dim + cfg.prefix_length * cfg.width) // 2
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, cfg.prefix_length * cfg.width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0], self.cfg.prefix_length, self.cfg.width)


class PrefixMapper(nn.Module):
    """Mapper followed by the projector into the LM's embedding space. Saved as ``mapper.safetensors``."""

    def __init__(self, in_dim: int, lm_hidden: int, cfg: MapperConfig):
        super().__init__()
        if cfg.kind == "transformer":
            if cfg.width % cfg.num_heads:
                raise ConfigError(f"mapper width {cfg.width} must be divisible by num_heads {cfg.num_heads}")
            self.mapper = TransformerMapper(in_dim, cfg)
        elif cfg.kind == "mlp":
            self.mapper = MLPMapper(in_dim, cfg)
        else:
            raise ConfigError(f"unknown mapper kind '{cfg.kind}': use 'transformer' or 'mlp'")
        self.projector = nn.Linear(cfg.width, lm_hidden)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """[B, D] -> [B, prefix_length, lm_hidden]"""
        return self.projector(self.mapper(embedding))

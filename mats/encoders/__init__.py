"""Encoder factory: a config dict (``{"backend": ..., ...}``) in, a ready frozen encoder out."""
from __future__ import annotations

from pathlib import Path

from mats.encoders.base import Encoder
from mats.errors import ConfigError

BACKENDS = ("clap", "offline")


def resolve_relative(cfg: dict, base_dir: str | Path | None) -> dict:
    """Paths starting with ./ or ../ are relative to the checkpoint folder that names them."""
    cfg = dict(cfg)
    for key in ("id", "path"):
        value = cfg.get(key)
        if base_dir is not None and isinstance(value, str) and value.startswith(("./", "../")):
            cfg[key] = str((Path(base_dir) / value).resolve())
    return cfg


def load_encoder(cfg: dict, base_dir: str | Path | None = None, device=None) -> Encoder:
    cfg = resolve_relative(cfg, base_dir)
    backend = cfg.get("backend")
    if backend == "clap":
        from mats.encoders.clap import ClapEncoder

        enc = ClapEncoder.from_config(cfg)
    elif backend == "offline":
        from mats.encoders.offline import OfflineEncoder

        enc = OfflineEncoder.from_config(cfg)
    else:
        raise ConfigError(f"unknown encoder backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    enc.requires_grad_(False)  # frozen: MATS never trains its encoder
    enc.eval()
    if device is not None:
        enc.to(device)
    return enc


__all__ = ["Encoder", "load_encoder", "BACKENDS"]

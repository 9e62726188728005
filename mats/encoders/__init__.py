"""Encoder factory: a config dict (``{"backend": ..., ...}``) in, a ready frozen encoder out."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mats.errors import ConfigError
from mats.paths import resolve_relative

if TYPE_CHECKING:
    from mats.encoders.base import Encoder

BACKENDS = ("clap", "offline", "yamnet")


def load_encoder(cfg: dict, base_dir: str | Path | None = None, device=None) -> Encoder:
    cfg = resolve_relative(cfg, base_dir)
    backend = cfg.get("backend")
    if backend == "clap":
        from mats.encoders.clap import ClapEncoder

        enc = ClapEncoder.from_config(cfg)
    elif backend == "offline":
        from mats.encoders.offline import OfflineEncoder

        enc = OfflineEncoder.from_config(cfg)
    elif backend == "yamnet":
        from mats.encoders.audioset import AudioSetEncoder

        enc = AudioSetEncoder.from_config(cfg)
    else:
        raise ConfigError(f"unknown encoder backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    enc.requires_grad_(False)  # frozen: MATS never trains its encoder
    enc.eval()
    if device is not None:
        enc.to(device)
    return enc


def load_encoder_folder(path: str | Path, device=None) -> "Encoder":
    """A local encoder folder, whichever offline backend wrote it (its config.json names it: "offline" or "yamnet")."""
    import json

    cfg_path = Path(path) / "config.json"
    try:
        backend = json.loads(cfg_path.read_text()).get("backend", "offline")
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"Cannot read {cfg_path}: {err}. Give an encoder folder written by `mats align`.") from err
    return load_encoder({"backend": backend, "path": str(Path(path).resolve())}, device=device)


def __getattr__(name: str):
    # Encoder needs torch; importing this package must not (`mats --help` reads mats.encoders.align's flags).
    if name == "Encoder":
        from mats.encoders.base import Encoder

        return Encoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Encoder", "load_encoder", "load_encoder_folder", "BACKENDS", "resolve_relative"]

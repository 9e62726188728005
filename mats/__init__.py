"""MATS: an audio-language model trained with text only (arXiv 2502.13433, ICML 2025)."""
from mats.errors import AudioError, CheckpointError, ConfigError, DataError, MATSError

__version__ = "0.1.0"
__all__ = ["MATS", "MATSConfig", "MATSError", "AudioError", "CheckpointError", "ConfigError", "DataError"]


def __getattr__(name):
    # Lazy: `import mats` stays light (no torch/transformers) until a model is needed.
    if name == "MATS":
        from mats.model import MATS

        return MATS
    if name == "MATSConfig":
        from mats.config import MATSConfig

        return MATSConfig
    raise AttributeError(f"module 'mats' has no attribute '{name}'")

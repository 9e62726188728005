"""LAION-CLAP through transformers' ClapModel (no `laion-clap` package: it downloads three tokenizers
from the Hub at import time, pins numpy<2 and pulls wandb).

The feature extractor is taken from the checkpoint's own preprocessor config: ``ClapFeatureExtractor()``
defaults to ``truncation="fusion"``, which the unfused models reject. Windows are exactly 10 s, so the
extractor never has to crop (its "rand_trunc" would be random) and we feed it one window at a time.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mats.encoders.base import Encoder
from mats.errors import ConfigError

KNOWN_IDS = ("laion/clap-htsat-unfused", "laion/larger_clap_general", "laion/larger_clap_music_and_speech")


class ClapEncoder(Encoder):
    def __init__(self, model, feature_extractor, tokenizer, name_or_path: str, revision: str | None = None):
        super().__init__()
        self.model = model
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.name_or_path = name_or_path
        self.revision = revision
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.window_seconds = float(feature_extractor.max_length_s)
        self.dim = int(model.config.projection_dim)
        # CLAP's learned temperature, used for zero-shot label scores.
        self.logit_scale = float(model.logit_scale_a.detach().exp()) if hasattr(model, "logit_scale_a") else 100.0

    @classmethod
    def from_pretrained(cls, name_or_path: str = "laion/clap-htsat-unfused", revision: str | None = None):
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        kwargs = {"revision": revision} if revision else {}
        try:
            model = ClapModel.from_pretrained(name_or_path, **kwargs)
            fe = ClapFeatureExtractor.from_pretrained(name_or_path, **kwargs)
            tok = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        except OSError as e:
            raise ConfigError(
                f"could not load the CLAP encoder '{name_or_path}' ({e}). Use a Hub id such as "
                f"{KNOWN_IDS[0]} (needs internet once) or a local folder saved with save_pretrained."
            ) from e
        if fe.truncation == "fusion" and not getattr(model.config.audio_config, "enable_fusion", False):
            fe.truncation = "rand_trunc"  # never triggers: windows are exactly max_length_s long
        return cls(model.eval(), fe, tok, name_or_path, revision)

    @classmethod
    def from_config(cls, cfg: dict) -> "ClapEncoder":
        return cls.from_pretrained(cfg.get("id", KNOWN_IDS[0]), cfg.get("revision"))

    def to_config(self) -> dict:
        cfg = {"backend": "clap", "id": self.name_or_path}
        if self.revision:
            cfg["revision"] = self.revision
        return cfg

    def save_pretrained(self, directory) -> None:
        self.model.save_pretrained(directory)
        self.feature_extractor.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    @staticmethod
    def _features(out) -> torch.Tensor:
        # transformers 5 returns an output object (.pooler_output); older versions a tensor.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    @torch.inference_mode()
    def embed_audio(self, windows) -> torch.Tensor:
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim == 1:
            windows = windows[None]
        feats = [
            self.feature_extractor(w, sampling_rate=self.sample_rate, return_tensors="pt")["input_features"]
            for w in windows
        ]
        inputs = torch.cat(feats, dim=0).to(self.device)
        emb = self._features(self.model.get_audio_features(input_features=inputs))
        return F.normalize(emb.float(), dim=-1)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        outs = []
        for i in range(0, len(texts), batch_size):
            # RoBERTa positions start after the padding index: the usable length is max_positions - 2.
            limit = self.model.config.text_config.max_position_embeddings - 2
            tok = self.tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=limit,
                                 return_tensors="pt")
            tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
            outs.append(self._features(self.model.get_text_features(**tok)).float())
        return F.normalize(torch.cat(outs), dim=-1)

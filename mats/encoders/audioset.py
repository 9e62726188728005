"""AudioSet ears: YAMNet (frozen) mapped into the locked all-MiniLM-L6-v2 text space.

The aisfx encoder (offline.py) learnt what things sound like from ~800 real clips; YAMNet learnt it from ~2 million
AudioSet clips, so it knows speech, music, instruments, animals, vehicles and household sounds. This encoder keeps
YAMNet frozen and maps what it hears into MiniLM's space, so the MATS LMs (trained on MiniLM text embeddings) hear
it without retraining.

Per 5 s window YAMNet gives 9 patches, each with 521 class scores and a 1024-d embedding. The ``head`` maps them
to one text-space vector; three designs (chosen on validation, docs/encoder.md):

* ``"tags"`` (no training): ``normalise(sum_c p_c * text(c))`` over the window's top-k AudioSet classes, p_c
  their mean scores. Everything else must beat it.
* ``"projection"``: pooled embeddings + scores -> standardise -> linear map or MLP, trained with InfoNCE
  (``mats align --backbone yamnet``).
* ``"weighted"``: "tags" with one learnt weight per AudioSet class (521 numbers), so classes that fire on
  everything count less.
* ``"fused"``: "weighted" and "projection", each trained on its own, added as unit vectors, the projection
  ``fuse_weight`` times (chosen on validation): the tags carry what AudioSet taught YAMNet about everyday sounds,
  the projection what the corpus taught about speech, music and signals.
* ``"corrected"``: the tag embedding plus a trained correction (the projection's output, starting at zero), so
  training can only move away from the training-free answer as far as the data asks.

Pooling over the window's patches: "mean", "max", "meanmax" or "attention" (a learnt score per patch).
``tags(waveforms)`` gives the AudioSet tags themselves: the clip's patch scores averaged (YAMNet's own clip-level
rule), the evidence the app shows beside Santa's.

Checkpoint folder: ``config.json`` (backend "yamnet"), ``yamnet.safetensors`` (the converted YAMNet body, fp16 on
disk; scripts/convert_yamnet.py), ``yamnet_class_map.csv`` (the 521 class names), ``model.safetensors`` (the head
and the class names' text embeddings), ``LICENSE.yamnet`` / ``NOTICE.yamnet``.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mats.encoders.base import Encoder
from mats.encoders.offline import (MINILM_ID, TEXT_SUBFOLDER, AudioProjection, _find_checkpoint, _load_text_tower,
                                   _tiny_text_tower, embed_sentences)
from mats.encoders.yamnet import EMBED_DIM, NUM_CLASSES, SAMPLE_RATE, Yamnet, read_class_names
from mats.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
HEAD_NAME = "model.safetensors"
YAMNET_NAME = "yamnet.safetensors"
CLASSES_NAME = "yamnet_class_map.csv"
NOTES = ("LICENSE.yamnet", "NOTICE.yamnet")
DESIGNS = ("tags", "weighted", "projection", "corrected", "fused")
POOLS = ("mean", "max", "meanmax", "attention")
FEATURE_DIM = EMBED_DIM + NUM_CLASSES  # a patch's embedding and its class scores, side by side

DEFAULT_AUDIO = {"design": "tags", "pool": "mean", "proj_hidden": 0, "proj_dropout": 0.0, "top_k": 10,
                 "tag_template": "{name}", "fuse_weight": 1.0}


def tag_prior(scores: torch.Tensor, tag_text: torch.Tensor, top_k: int,
              class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Patch scores [B, n, 521] -> the training-free text-space vector [B, D] (not normalised):
    the mean score of each class over the patches (times ``class_weight`` if given), only the top ``top_k``
    kept, weighting the class names' text."""
    p = scores.mean(dim=1)
    if class_weight is not None:
        p = p * class_weight
    if 0 < top_k < p.shape[-1]:
        keep = p.topk(top_k, dim=-1).indices
        p = torch.zeros_like(p).scatter(-1, keep, p.gather(-1, keep))
    return p @ tag_text


class PatchPool(nn.Module):
    """[B, n, F] patch features -> [B, F] ("mean", "max", "attention") or [B, 2F] ("meanmax")."""

    def __init__(self, how: str, dim: int = FEATURE_DIM):
        super().__init__()
        if how not in POOLS:
            raise ConfigError(f"Unknown pool {how!r}; use one of {POOLS}.")
        self.how = how
        self.out_dim = dim * (2 if how == "meanmax" else 1)
        if how == "attention":
            # A learnt relevance per patch over standardised features (statistics set by the trainer), so a
            # short event in a long window is not averaged away. Starts uniform (zero weights) = mean pooling.
            self.register_buffer("feat_mean", torch.zeros(dim))
            self.register_buffer("feat_std", torch.ones(dim))
            self.score = nn.Linear(dim, 1)
            nn.init.zeros_(self.score.weight)
            nn.init.zeros_(self.score.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "mean":
            return x.mean(dim=1)
        if self.how == "max":
            return x.amax(dim=1)
        if self.how == "meanmax":
            return torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=-1)
        w = torch.softmax(self.score((x - self.feat_mean) / self.feat_std), dim=1)  # [B, n, 1]
        return (w * x).sum(dim=1)


class AudioSetHead(nn.Module):
    """Patch features [B, n, 1024 + 521] -> text-space vector [B, D] (normalised by the encoder).

    ``design`` "tags" has no trained parameters; "projection" is pool -> AudioProjection; "corrected" adds the
    projection to the tag vector (the projection's output layer starts at zero, so training starts at "tags")."""

    def __init__(self, tag_text: torch.Tensor, design: str = "tags", pool: str = "mean", proj_hidden: int = 0,
                 proj_dropout: float = 0.0, top_k: int = 10, fuse_weight: float = 1.0):
        super().__init__()
        if design not in DESIGNS:
            raise ConfigError(f"Unknown design {design!r}; use one of {DESIGNS}.")
        self.design, self.top_k, self.fuse_weight = design, int(top_k), float(fuse_weight)
        self.register_buffer("tag_text", tag_text.float().clone())
        if design in ("weighted", "fused"):
            # One learnt weight per AudioSet class (log scale, starting at 1): 521 numbers that can only say how
            # much a class's name should count (less for "Animal" or "Inside, small room", which fire on
            # everything), never invent a direction the tags did not point to.
            self.class_log_weight = nn.Parameter(torch.zeros(tag_text.shape[0]))
        if design in ("projection", "corrected", "fused"):
            self.pool = PatchPool(pool)
            self.proj = AudioProjection(self.pool.out_dim, tag_text.shape[1], int(proj_hidden), float(proj_dropout))
            nn.init.zeros_(self.proj.net[-1].weight)
            nn.init.zeros_(self.proj.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.design == "projection":
            return self.proj(self.pool(x))
        weight = self.class_log_weight.exp() if self.design in ("weighted", "fused") else None
        prior = F.normalize(tag_prior(x[..., EMBED_DIM:], self.tag_text, self.top_k, weight), dim=-1)
        if self.design in ("tags", "weighted"):
            return prior
        if self.design == "fused":
            return prior + self.fuse_weight * F.normalize(self.proj(self.pool(x)), dim=-1)
        return prior + self.proj(self.pool(x))

    def set_statistics(self, x: torch.Tensor) -> None:
        """Fix the standardisation from training features [N, n, F] (what the trainer calls before fitting)."""
        if self.design in ("tags", "weighted"):
            return
        with torch.no_grad():
            pooled = self.pool(x) if self.pool.how != "attention" else x.mean(dim=1)
            self.proj.feat_mean.copy_(pooled.mean(0))
            self.proj.feat_std.copy_(pooled.std(0).clamp(min=1e-4))
            if self.pool.how == "attention":
                flat = x.flatten(0, 1)
                self.pool.feat_mean.copy_(flat.mean(0))
                self.pool.feat_std.copy_(flat.std(0).clamp(min=1e-4))


class AudioSetEncoder(Encoder):
    """YAMNet (frozen) + head (audio) and locked all-MiniLM-L6-v2 (text), both L2-normalised.

    ``from_pretrained(folder or Hub id)`` / ``from_config(cfg)``; ``build(yamnet_dir)`` for training; ``tiny()``
    for tests (a random YAMNet body and text tower)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, text_model: nn.Module, tokenizer: Any, yamnet: Yamnet, class_names: Sequence[str], *,
                 tag_text: torch.Tensor | None = None, text_model_ref: str = MINILM_ID, window_seconds: float = 5.0,
                 audio: dict | None = None, max_text_tokens: int = 256, batch_size: int = 16,
                 source: str | None = None):
        super().__init__()
        audio = {**DEFAULT_AUDIO, **(audio or {})}
        unknown = set(audio) - set(DEFAULT_AUDIO)
        if unknown:
            raise ConfigError(f"Unknown audio settings {sorted(unknown)}; known: {sorted(DEFAULT_AUDIO)}.")
        if len(class_names) != NUM_CLASSES:
            raise ConfigError(f"YAMNet has {NUM_CLASSES} classes; got {len(class_names)} names.")
        self.window_seconds = float(window_seconds)
        self.audio_settings = audio
        self.text_model_ref = text_model_ref
        self.max_text_tokens = int(max_text_tokens)
        self.batch_size = int(batch_size)
        self.source = source
        self.text_model, self.tokenizer = text_model, tokenizer
        self.dim = int(text_model.config.hidden_size)
        self.yamnet = yamnet
        self.class_names = list(class_names)
        for p in self.text_model.parameters():
            p.requires_grad_(False)
        if tag_text is None:  # the class names in the text space, once (saved with the head)
            tag_text = self.embed_text([audio["tag_template"].format(name=n) for n in self.class_names])
        self.head = AudioSetHead(tag_text, audio["design"], audio["pool"], audio["proj_hidden"],
                                 audio["proj_dropout"], audio["top_k"], audio["fuse_weight"])
        self.eval()

    # -- audio ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def patch_features(self, windows: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Windows [B, L] -> YAMNet's patch embeddings and scores side by side [B, n, 1024 + 521]
        (what the trainer caches: YAMNet is frozen)."""
        x = self._as_windows(windows)
        outs = []
        for i in range(0, len(x), self.batch_size):
            scores, emb, _ = self.yamnet(x[i : i + self.batch_size])
            outs.append(torch.cat([emb, scores], dim=-1))
        return torch.cat(outs)

    @torch.inference_mode()
    def embed_audio(self, windows: torch.Tensor | np.ndarray) -> torch.Tensor:
        return F.normalize(self.head(self.patch_features(windows)), dim=-1).float()

    @torch.inference_mode()
    def tag_scores(self, waveforms: Sequence[np.ndarray]) -> torch.Tensor:
        """Whole clips (16 kHz, any length) -> clip-level AudioSet scores [N, 521]: every patch of the clip, averaged."""
        out = []
        for w in waveforms:
            wave = torch.as_tensor(np.asarray(w, dtype=np.float32), device=self.device)[None]
            scores, _, _ = self.yamnet(wave)
            out.append(scores[0].mean(dim=0))
        return torch.stack(out).cpu()

    def tags(self, waveforms: Sequence[np.ndarray], top: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top`` AudioSet classes of each clip, best first: [[(name, score), ...], ...]."""
        scores = self.tag_scores(waveforms)
        best = scores.topk(min(int(top), NUM_CLASSES), dim=-1)
        return [[(self.class_names[j], round(float(s), 4)) for s, j in zip(v.tolist(), i.tolist())]
                for v, i in zip(best.values, best.indices)]

    # -- text ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        return embed_sentences(self.text_model, self.tokenizer, texts, self.max_text_tokens, self.device, batch_size)

    # -- config / checkpoint -------------------------------------------------------------------

    def _core_config(self) -> dict:
        return {"backend": "yamnet", "format_version": FORMAT_VERSION, "sample_rate": self.sample_rate,
                "window_seconds": self.window_seconds, "dim": self.dim, "text_model": self.text_model_ref,
                "max_text_tokens": self.max_text_tokens, "audio": dict(self.audio_settings)}

    def to_config(self) -> dict:
        return {**self._core_config(), "path": self.source}

    def save_pretrained(self, out_dir: str | Path, notes_from: str | Path | None = None) -> Path:
        """Write the folder (see the module docstring). YAMNet's weights go in fp16: the scores move by < 0.003,
        about a hundredth of what the interpreter's own quantised front end moves them (0.32; tests/test_yamnet.py)."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        body = {k: v.detach().cpu().half().contiguous() for k, v in self.yamnet.net.state_dict().items()}
        save_file(body, str(out / YAMNET_NAME), metadata={"format": "pt", "what": "YAMNet body, converted"})
        # The MLP's weights in fp16 (an ensemble of 3 is 6 M numbers: 24 MB in fp32); the standardisation
        # statistics, the class weights and the class names' text stay fp32 (they divide or are few).
        head = {k: (v.half() if k.startswith("proj.net.") else v.float()).detach().cpu().contiguous()
                for k, v in self.head.state_dict().items()}
        save_file(head, str(out / HEAD_NAME), metadata={"format": "pt", "mats_yamnet_encoder": str(FORMAT_VERSION)})
        with (out / CLASSES_NAME).open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "display_name"])
            w.writerows(enumerate(self.class_names))
        for note in NOTES:  # the licence and attribution travel with the weights
            src = Path(notes_from or self.source or "") / note
            if src.is_file() and src.resolve() != (out / note).resolve():
                shutil.copyfile(src, out / note)
        if self.text_model_ref == TEXT_SUBFOLDER:
            self.text_model.save_pretrained(out / TEXT_SUBFOLDER)
            self.tokenizer.save_pretrained(out / TEXT_SUBFOLDER)
        (out / CONFIG_NAME).write_text(json.dumps(self._core_config(), indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, **overrides: Any) -> "AudioSetEncoder":
        folder = _find_checkpoint(str(path_or_id))
        cfg_path = folder / CONFIG_NAME
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"Cannot read {cfg_path}: {err}. Is this a YAMNet encoder folder?") from err
        if cfg.get("backend") != "yamnet" or cfg.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{cfg_path} is not a version-{FORMAT_VERSION} YAMNet encoder (backend "
                                  f"{cfg.get('backend')!r}, format_version {cfg.get('format_version')!r}).")
        from safetensors.torch import load_file

        for name in (HEAD_NAME, YAMNET_NAME, CLASSES_NAME):
            if not (folder / name).is_file():
                raise CheckpointError(f"{folder / name} is missing; a YAMNet encoder folder holds {name}.")
        head = load_file(str(folder / HEAD_NAME))
        if "tag_text" not in head:
            raise CheckpointError(f"{folder / HEAD_NAME} has no tag_text; re-save the encoder.")
        text_model, tokenizer = _load_text_tower(cfg.get("text_model", MINILM_ID), base_dir=folder)
        enc = cls(text_model, tokenizer, Yamnet().load(folder / YAMNET_NAME), read_class_names(folder / CLASSES_NAME),
                  tag_text=head["tag_text"], text_model_ref=cfg.get("text_model", MINILM_ID),
                  window_seconds=cfg.get("window_seconds", 5.0), audio=cfg.get("audio"),
                  max_text_tokens=cfg.get("max_text_tokens", 256), source=str(path_or_id), **overrides)
        if enc.dim != cfg.get("dim", enc.dim):
            raise CheckpointError(f"{cfg_path} says dim {cfg['dim']} but the text model gives {enc.dim}.")
        own = enc.head.state_dict()
        if set(head) != set(own) or any(head[k].shape != own[k].shape for k in own):
            raise CheckpointError(f"{folder / HEAD_NAME} does not match the head its config.json describes "
                                  f"(tensors {sorted(set(head) ^ set(own))[:5]}).")
        enc.head.load_state_dict({k: v.float() for k, v in head.items()})
        return enc

    @classmethod
    def from_config(cls, cfg: dict) -> "AudioSetEncoder":
        path = cfg.get("path") or cfg.get("id")
        if not path:
            raise ConfigError("A yamnet encoder config needs 'path' (folder or Hub id), e.g. "
                              "{'backend': 'yamnet', 'path': 'assets/encoders/yamnet-minilm'}.")
        return cls.from_pretrained(path)

    @classmethod
    def build(cls, yamnet_dir: str | Path, text_model: str = MINILM_ID, window_seconds: float = 5.0,
              **audio: Any) -> "AudioSetEncoder":
        """A fresh encoder for training from a converted YAMNet folder (scripts/convert_yamnet.py)."""
        yamnet_dir = Path(yamnet_dir)
        model, tokenizer = _load_text_tower(text_model)
        return cls(model, tokenizer, Yamnet().load(yamnet_dir / YAMNET_NAME),
                   read_class_names(yamnet_dir / CLASSES_NAME), text_model_ref=text_model,
                   window_seconds=window_seconds, audio=audio, source=str(yamnet_dir))

    @classmethod
    def tiny(cls, seed: int = 0, window_seconds: float = 2.0, **audio: Any) -> "AudioSetEncoder":
        """Random YAMNet body and 1-layer text tower, built offline (tests). Class names are placeholders."""
        model, tokenizer = _tiny_text_tower(seed)
        torch.manual_seed(seed)
        yamnet = Yamnet()
        with torch.no_grad():  # keep activations in range through 14 random layers
            for m in yamnet.net.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_(math.sqrt(2.0))
        names = [f"sound {i}" for i in range(NUM_CLASSES)]
        return cls(model, tokenizer, yamnet.eval(), names, text_model_ref=TEXT_SUBFOLDER,
                   window_seconds=window_seconds, audio=audio, max_text_tokens=64).eval()

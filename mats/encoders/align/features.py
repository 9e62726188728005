"""The audio backbone's side of alignment: the frozen CNN's frame features of every clip, cached by the audio itself,
and the pooling that turns them into what the projection reads.

The seam for another backbone: ``frame_features`` (audio windows -> frames [N, T, D]), ``backbone_id`` (which
weights computed them, so a cache never serves another backbone's features), ``cached_features`` (compute only
what the cache lacks) and ``Featurizer`` / ``pooled`` (frames -> the pooled vector). Everything after this module
(fit, card) reads only the pooled vectors.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from mats.encoders.align.data import Clip
from mats.encoders.align.progress import log
from mats.encoders.offline import AisfxEmbeddingNet, OfflineEncoder, pool_blocks


@torch.inference_mode()
def frame_features(enc: OfflineEncoder, waves: list[np.ndarray], t0: float, batch: int = 16,
                   maps: bool = False) -> torch.Tensor:
    """Frozen CNN frame features [N, 27, 512] (fp16): every pool is computed from these, so settings can be
    compared without running the CNN again. ``maps=True``: blocks 1-3 only, [N, 256, 27, 12], what a block 4
    that is being fine-tuned reads (--tune-block4)."""
    out = []
    for s in range(0, len(waves), batch):
        spec = enc.frontend(torch.from_numpy(np.stack(waves[s : s + batch])))
        out.append((enc.audio_net.stem(spec) if maps else enc.audio_net.frames(spec)).half())
        if (s // batch) % 100 == 0:
            log(f"features {s + len(out[-1])}/{len(waves)}", t0)
    return torch.cat(out)


def pooled(frames: torch.Tensor, pool: str) -> torch.Tensor:
    # "window": aisfx's own head (max over time of the frequency mean) = OfflineEncoder's window vector.
    return frames.float().amax(dim=1) if pool == "window" else pool_blocks(frames.float(), pool)


class Featurizer:
    """Cached CNN output -> the pooled vector the projection reads. Frozen CNN: the cache holds frame features
    and this only pools. --tune-block4: the cache holds blocks 1-3's maps and ``block4`` (a copy of the CNN's last
    block, trained with the projection) runs on them first."""

    def __init__(self, pool: str, block4: torch.nn.Module | None = None):
        self.pool, self.block4 = pool, block4

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.block4 is None:
            return pooled(x, self.pool)
        dev = next(self.block4.parameters()).device
        return pooled(AisfxEmbeddingNet.head_frames(self.block4, x.to(dev).float()), self.pool)

    def all(self, x: torch.Tensor, step: int = 256) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self(x[s : s + step]).cpu() for s in range(0, len(x), step)])


class FeatureStore:
    """The frozen CNN's features of clips, keyed by the clip's audio itself (a hash of its window's samples).

    Content keys, not clip names, so that a larger corpus (``mats corpus --scale``), another fold rotation or
    another augmentation seed runs the CNN only on audio it has not seen, and a remade clip is never served stale
    features. Each ``add`` writes one shard (``<kind>-<n>.safetensors``, its keys in the metadata)."""

    def __init__(self, root: Path, kind: str):
        self.root, self.kind = Path(root), kind

    @staticmethod
    def key(wave: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()

    def shards(self) -> list[Path]:
        return sorted(self.root.glob(f"{self.kind}-*.safetensors"))

    def load(self, keys: list[str]) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        want, out = set(keys), {}
        for shard in self.shards():
            with safe_open(str(shard), framework="pt") as fh:
                names = json.loads(fh.metadata()["keys"])
                rows = [j for j, k in enumerate(names) if k in want and k not in out]
                if rows:
                    frames = fh.get_tensor("frames")
                    out.update({names[j]: frames[j] for j in rows})
        return out

    def add(self, keys: list[str], frames: torch.Tensor) -> Path:
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{self.kind}-{len(self.shards()):04d}.safetensors"
        save_file({"frames": frames.contiguous()}, str(path), metadata={"keys": json.dumps(keys)})
        return path


def first_unseen(keys: list[str], have: dict) -> list[int]:
    """Indices of the first clip of each audio key not in ``have`` (identical windows are computed once)."""
    missing, seen = [], set()
    for i, k in enumerate(keys):
        if k not in have and k not in seen:
            seen.add(k)
            missing.append(i)
    return missing


def backbone_id(aisfx: Path) -> str:
    """A short hash of the CNN's weights file: cached features belong to the weights that computed them."""
    return hashlib.sha1(Path(aisfx).read_bytes()).hexdigest()[:12]


def cached_features(args, enc: OfflineEncoder, clips: list[Clip], t0: float, backbone: str) -> torch.Tensor:
    """The frozen CNN's frame features of every clip (blocks 1-3's maps with --tune-block4), computed only for
    audio that --cache-dir has not seen yet with this ``backbone`` (backbone_id; FeatureStore)."""
    kind = "maps" if args.tune_block4 else "frames"
    keys = [FeatureStore.key(c.wave) for c in clips]
    store = FeatureStore(args.cache_dir / "features" / f"aisfx-{backbone}", kind) if args.cache_dir else None
    have = store.load(keys) if store else {}
    missing = first_unseen(keys, have)
    log(f"features: {len(clips) - len(missing)} cached, {len(missing)} to compute", t0)
    if missing:
        part = frame_features(enc, [clips[i].wave for i in missing], t0, maps=args.tune_block4)
        if store is not None:
            store.add([keys[i] for i in missing], part)
        have.update({keys[i]: part[j] for j, i in enumerate(missing)})
    return torch.stack([have[k] for k in keys])

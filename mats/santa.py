"""Santa: "Strongly-related noisy text with audio" (MATS paper, Sec. 3.3).

Training only ever shows the mapper *noisy text* embeddings; at inference it gets *audio* embeddings,
which sit elsewhere in the shared space (the modality gap). Santa pulls an audio embedding towards the
text side by mixing it with the most similar caption embeddings from a memory bank:

    1. bank: N noisy caption embeddings (the kind of input the mapper was trained on)
    2. k-means the bank into K clusters once (offline, seeded)
    3. for an audio embedding a: nearest centroid -> its members -> top-k by dot product
    4. weights w = softmax(tau * a . t_i) over those k
    5. z = normalise((1 - lambda) * a + lambda * sum_i w_i t_i)

Searching one cluster instead of the whole bank keeps retrieval cheap with large banks.

A deliberate departure from the official code: the bank is noised once, when it is built (seeded, so a
rebuild gives the same bank), not again on every query. The same clip then always retrieves the same
captions, which a demo, a cache and a test need; the shipped banks are built clean (``bank_noise_variance``
0), as measured in ``SantaConfig``.

Saved beside the checkpoint as ``santa.safetensors`` (tensors) + ``santa.json`` (texts). The retrieval
settings (top-k, tau, lambda) are not saved with the bank: a checkpoint's ``config.json`` ``santa`` section is
their one home, and ``MATS`` passes them on every call, so editing them there changes retrieval.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mats.config import SantaConfig
from mats.errors import ArgumentError, CheckpointError

_PAPER = SantaConfig()  # a standalone bank's retrieval defaults: the config's (the paper's), one home
RETRIEVE_CHUNK = 64  # clips retrieved at once: each holds its cluster's members ([M, D]) in memory


def add_noise(embeddings: torch.Tensor, variance: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise injection: normalise, add N(0, sigma^2 I), normalise (paper: sigma^2 = 0.015)."""
    x = F.normalize(embeddings, dim=-1)
    if variance <= 0:
        return x
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return F.normalize(x + noise * variance**0.5, dim=-1)


def blend(audio: torch.Tensor, text: torch.Tensor, strength: float) -> torch.Tensor:
    """Step 5: z = normalise((1 - lambda) * a + lambda * t), ``a`` already unit-length."""
    return F.normalize((1 - strength) * audio + strength * text, dim=-1)


def label_mix(audio: torch.Tensor, label_embeddings: torch.Tensor, strength: float, top_k: int = _PAPER.top_k,
              tau: float = _PAPER.tau) -> torch.Tensor:
    """Santa with the candidate labels as its bank: classify with a given label set.

    The same steps 3-5 as a caption bank, over the embeddings of the labels' sentences ("the sound of {label}")
    searched whole (a label set is small, so no clusters). Why: the mapper decodes a clean label sentence to its
    label almost always (the round trip), but it was never trained on audio; mixing in the labels the clip is
    nearest to moves the prefix towards text the LM can name, and keeps its answer within the asked-for labels.
    A caption bank's neighbours are about other sounds as often as not. Measured on the validation fold
    (README, "Santa over the labels"); the retrieval settings are the checkpoint's (``config.santa``).
    """
    a = F.normalize(audio.float(), dim=-1)
    if strength == 0.0:
        return a
    t = F.normalize(label_embeddings.float(), dim=-1).to(a.device)
    _, top_pos, weights = label_weights(a, t, top_k, tau)
    return blend(a, torch.einsum("bk,bkd->bd", weights, t[top_pos]), strength)


def label_weights(audio: torch.Tensor, label_embeddings: torch.Tensor, top_k: int = _PAPER.top_k,
                  tau: float = _PAPER.tau) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(similarities [B, k], label indices [B, k], weights [B, k]) of the labels ``label_mix`` mixes in, best
    first: its evidence."""
    a, t = F.normalize(audio.float(), dim=-1), F.normalize(label_embeddings.float(), dim=-1).to(audio.device)
    top_sims, top_pos = (a @ t.T).topk(min(top_k, t.shape[0]), dim=1)
    return top_sims, top_pos, torch.softmax(tau * top_sims, dim=1)


def kmeans(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means (cosine), vectorised, seeded k-means++ init. Returns (centroids [k, D], labels [N]).

    Spherical because every embedding is unit-length and retrieval uses the dot product.
    """
    n = x.shape[0]
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    # k-means++: each new centroid drawn with probability proportional to its distance to the chosen ones.
    centroids = [x[torch.randint(n, (1,), generator=g)].squeeze(0)]
    dist = 1 - x @ centroids[0]
    for _ in range(1, k):
        probs = dist.clamp_min(0) + 1e-12
        idx = torch.multinomial(probs / probs.sum(), 1, generator=g)
        centroids.append(x[idx].squeeze(0))
        dist = torch.minimum(dist, 1 - x @ centroids[-1])
    c = torch.stack(centroids)
    labels = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        labels_new = (x @ c.T).argmax(dim=1)
        sums = torch.zeros_like(c).index_add_(0, labels_new, x)
        counts = torch.bincount(labels_new, minlength=k)
        empty = counts == 0
        if empty.any():
            # Re-seed an empty cluster with the points worst served by their centroid.
            worst = (x * c[labels_new]).sum(1).argsort()[: int(empty.sum())]
            sums[empty] = x[worst]
        c = F.normalize(sums, dim=-1)
        if torch.equal(labels_new, labels):
            break
        labels = labels_new
    labels = (x @ c.T).argmax(dim=1)
    return c, labels


# The familiarity cue: cosine similarity of a clip's audio embedding to the clean embedding of its nearest bank
# caption (the encoder's zero-shot score). Measured with the offline encoder (sfx-minilm) on the example clips,
# ESC-50 clips and synthetic signals: sounds the training captions describe well reach 0.40-0.49, tones, chirps and
# other sounds no caption describes stay below 0.33. Other encoders have other scales; the words say "probably".
FAMILIAR_SIMILARITY = 0.40
UNFAMILIAR_SIMILARITY = 0.33


def familiarity(similarity: float) -> tuple[str, str]:
    """(level, plain words) for a clip's similarity to its nearest bank caption."""
    if similarity >= FAMILIAR_SIMILARITY:
        return "familiar", ("Familiar: the clip is close to captions the model was trained on, so the answer is "
                            "probably within its range.")
    if similarity >= UNFAMILIAR_SIMILARITY:
        return "partly familiar", ("Partly familiar: the nearest captions only loosely match the clip; read the "
                                   "answer as a guess.")
    return "unfamiliar", ("Unfamiliar: the clip is far from every caption in the memory bank, so it is probably "
                          "outside what the model can describe; the answer is likely wrong.")


@dataclass
class Evidence:
    """What Santa leaned on for one clip: the top retrieved captions with their weights, and how familiar the clip is."""

    strength: float  # lambda: the share of the caption mix in z (0 = audio only, nothing was leaned on)
    captions: list[dict]  # [{"text", "weight" (share of the caption mix), "similarity" (clip . caption)}], by weight
    nearest: str  # the bank caption most similar to the clip (zero-shot, clean embeddings)
    nearest_similarity: float
    familiarity: str  # "familiar" | "partly familiar" | "unfamiliar"
    note: str  # the familiarity cue in plain words

    def to_dict(self) -> dict:
        return {"strength": self.strength, "captions": self.captions, "nearest": self.nearest,
                "nearest_similarity": self.nearest_similarity, "familiarity": self.familiarity, "note": self.note}


@dataclass
class Retrieval:
    indices: torch.Tensor  # [B, k] bank indices (-1 where a cluster had fewer than k members)
    weights: torch.Tensor  # [B, k] softmax weights, 0 at padding, rows sum to 1
    mixed_text: torch.Tensor  # [B, D] sum_i w_i t_i


class SantaBank:
    """Memory bank of noisy caption embeddings with their texts and k-means centroids."""

    def __init__(self, embeddings: torch.Tensor, texts: list[str], centroids: torch.Tensor, labels: torch.Tensor,
                 top_k: int = _PAPER.top_k, tau: float = _PAPER.tau, strength: float = _PAPER.strength):
        if embeddings.shape[0] != len(texts):
            raise ArgumentError(f"bank has {embeddings.shape[0]} embeddings but {len(texts)} texts: give one text per embedding")
        self.embeddings = embeddings.float()
        self.texts = list(texts)
        self.centroids = centroids.float()
        self.labels = labels.long()
        self.top_k, self.tau, self.strength = top_k, tau, strength
        self.clean: torch.Tensor | None = None  # [N, D] noise-free caption embeddings (familiarity); set on demand
        self.clean_lock = threading.Lock()  # two first requests embed the captions once, not twice
        self._members = self._member_table()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def build(cls, embeddings: torch.Tensor, texts: list[str], n_clusters: int = _PAPER.n_clusters,
              top_k: int = _PAPER.top_k, tau: float = _PAPER.tau, strength: float = _PAPER.strength,
              noise_variance: float = 0.015, seed: int = 0) -> "SantaBank":
        """Bank from clean caption embeddings: noise is added once (seeded), as in training."""
        g = torch.Generator().manual_seed(seed)
        noisy = add_noise(embeddings.float().cpu(), noise_variance, generator=g)
        centroids, labels = kmeans(noisy, n_clusters, seed=seed)
        bank = cls(noisy, texts, centroids, labels, top_k=top_k, tau=tau, strength=strength)
        if noise_variance == 0:  # a clean bank is its own noise-free reference (the familiarity cue)
            bank.clean = bank.embeddings
        return bank

    def _member_table(self) -> torch.Tensor:
        """[K, max_members] bank indices per cluster, padded with -1: one gather per query batch."""
        k = self.centroids.shape[0]
        counts = torch.bincount(self.labels, minlength=k)
        table = torch.full((k, max(int(counts.max()), 1)), -1, dtype=torch.long)
        order = torch.argsort(self.labels, stable=True)
        pos = 0
        for c in range(k):
            n = int(counts[c])
            table[c, :n] = order[pos : pos + n]
            pos += n
        return table

    def __len__(self) -> int:
        return len(self.texts)

    # -- retrieval and mixing --------------------------------------------------------------------
    def retrieve(self, audio: torch.Tensor, top_k: int | None = None, tau: float | None = None) -> Retrieval:
        """Per clip: the top-k captions of its nearest cluster. Clips go ``RETRIEVE_CHUNK`` at a time: each holds its
        cluster's members ([M, D]), so memory stays bounded however many clips (a long timeline, a batch) come."""
        if audio.shape[0] > RETRIEVE_CHUNK:
            parts = [self.retrieve(audio[i : i + RETRIEVE_CHUNK], top_k=top_k, tau=tau)
                     for i in range(0, audio.shape[0], RETRIEVE_CHUNK)]
            width = max(r.indices.shape[1] for r in parts)  # a chunk's k can be smaller (small clusters)
            pad = lambda t, v: F.pad(t, (0, width - t.shape[1]), value=v)  # noqa: E731
            return Retrieval(indices=torch.cat([pad(r.indices, -1) for r in parts]),
                             weights=torch.cat([pad(r.weights, 0.0) for r in parts]),
                             mixed_text=torch.cat([r.mixed_text for r in parts]))
        top_k = top_k or self.top_k
        tau = self.tau if tau is None else tau
        a = F.normalize(audio.float().cpu(), dim=-1)
        cluster = (a @ self.centroids.T).argmax(dim=1)  # [B]
        members = self._members[cluster]  # [B, M]
        valid = members >= 0
        cand = self.embeddings[members.clamp_min(0)]  # [B, M, D]
        sims = torch.einsum("bd,bmd->bm", a, cand).masked_fill(~valid, float("-inf"))
        k = min(top_k, members.shape[1])
        top_sims, top_pos = sims.topk(k, dim=1)
        indices = members.gather(1, top_pos)
        weights = torch.softmax(tau * top_sims, dim=1)  # -inf padding gets weight exactly 0
        # A centroid left without members after the last k-means step gives all -inf: no text to mix in.
        weights = torch.nan_to_num(weights, nan=0.0)
        indices = indices.masked_fill(~torch.isfinite(top_sims), -1)  # padding slots of small clusters
        mixed = torch.einsum("bk,bkd->bd", weights, self.embeddings[indices.clamp_min(0)])
        return Retrieval(indices=indices, weights=weights, mixed_text=mixed)

    def mix(self, audio: torch.Tensor, strength: float | None = None, top_k: int | None = None,
            tau: float | None = None) -> torch.Tensor:
        """z = normalise((1 - lambda) a + lambda * sum w t). lambda = 0 returns the (normalised) audio."""
        lam = self.strength if strength is None else float(strength)
        if not 0.0 <= lam <= 1.0:
            raise ArgumentError(f"Santa strength must be between 0 and 1, got {lam}; 0 = audio only")
        a = F.normalize(audio.float(), dim=-1)
        if lam == 0.0:
            return a
        return blend(a, self.retrieve(a, top_k=top_k, tau=tau).mixed_text.to(a.device), lam)

    def evidence(self, audio: torch.Tensor, strength: float | None = None, top: int = 5, top_k: int | None = None,
                 tau: float | None = None) -> list[Evidence]:
        """Per clip: the ``top`` captions Santa mixes in (by weight) and the familiarity cue.

        Similarities use ``self.clean`` (noise-free caption embeddings) when set: the bank's own embeddings carry
        the training noise, which drowns a clip-caption similarity (noisy text.text neighbours score ~0.2).
        """
        lam = self.strength if strength is None else float(strength)
        if audio.shape[0] > RETRIEVE_CHUNK:  # bounded memory: [chunk, N] similarities at a time
            return [e for i in range(0, audio.shape[0], RETRIEVE_CHUNK)
                    for e in self.evidence(audio[i : i + RETRIEVE_CHUNK], strength, top, top_k, tau)]
        a = F.normalize(audio.float().cpu(), dim=-1)
        ref = self.clean if self.clean is not None else self.embeddings
        r = self.retrieve(a, top_k=top_k, tau=tau)
        sims = a @ ref.T  # [B, N]: cheap even for a 50,000-caption bank
        best_sim, best = sims.max(dim=1)
        out = []
        for i in range(a.shape[0]):
            order = r.weights[i].argsort(descending=True)[:top]
            caps = [{"text": self.texts[int(r.indices[i, j])], "weight": round(float(r.weights[i, j]), 4),
                     "similarity": round(float(sims[i, int(r.indices[i, j])]), 4)}
                    for j in order if int(r.indices[i, j]) >= 0 and float(r.weights[i, j]) > 0]
            level, note = familiarity(float(best_sim[i]))
            out.append(Evidence(strength=lam, captions=caps, nearest=self.texts[int(best[i])],
                                nearest_similarity=round(float(best_sim[i]), 4), familiarity=level, note=note))
        return out

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        save_file(
            {"embeddings": self.embeddings.half().contiguous(), "centroids": self.centroids.contiguous(),
             "labels": self.labels.int().contiguous()},
            str(directory / "santa.safetensors"),
        )
        # Texts only: top-k, tau and lambda live in the checkpoint's config.json (one home; see the module doc).
        (directory / "santa.json").write_text(json.dumps({"texts": self.texts}, ensure_ascii=False))

    @classmethod
    def load(cls, directory: str | Path, top_k: int = _PAPER.top_k, tau: float = _PAPER.tau,
             strength: float = _PAPER.strength) -> "SantaBank":
        """Read a saved bank. The settings are the caller's (``MATS`` gives its config's); a ``santa.json`` written
        before they moved to config.json still has them, and they are ignored."""
        directory = Path(directory)
        tpath, jpath = directory / "santa.safetensors", directory / "santa.json"
        for p in (tpath, jpath):
            if not p.is_file():
                raise CheckpointError(f"{p} is missing; rebuild the bank with `mats bank build`.")
        try:
            tensors = load_file(str(tpath))
            meta = json.loads(jpath.read_text())
            bank = cls(tensors["embeddings"].float(), meta["texts"], tensors["centroids"].float(),
                       tensors["labels"].long(), top_k=top_k, tau=tau, strength=strength)
        except (KeyError, ValueError, TypeError, OSError, SafetensorError, json.JSONDecodeError) as e:
            raise CheckpointError(f"Santa bank in {directory} is damaged ({e}); rebuild it with `mats bank build`.") from e
        return bank

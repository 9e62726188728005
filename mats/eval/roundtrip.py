"""The round trip: the text-only part of a checkpoint alone (issue "LM gap")."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mats.eval.clips import _bar
from mats.eval.run import DEFAULT_TEMPLATE, _generate, _rank_labels
from mats.metrics import map_to_labels
from mats.prompts import label_prompt

__all__ = ["round_trip"]


def round_trip(model, labels: Sequence[str], template: str = DEFAULT_TEMPLATE, noise_variance: float = 0.0,
               seed: int = 0, batch_size: int = 16, gen: dict | None = None) -> dict:
    """The text-only part alone: hand the mapper + LM the *text* embedding of ``template`` for each label (plus
    Gaussian noise of ``noise_variance``, as in training, when > 0), ask the classify question, and map the answer
    back onto ``labels`` with ``MAPPING_RULE``. If this is low, no audio can do better: the LM cannot decode even
    its own training signal. Santa is not used (λ = 0)."""
    import torch

    from mats.prompts import instruction_for
    from mats.santa import add_noise

    labels = list(labels)
    texts = [label_prompt(l, template) for l in labels]
    # add_noise is the training noise (normalise, add N(0, var), normalise); variance 0 only normalises.
    z = add_noise(model.encoder.embed_text(texts).float(), noise_variance, torch.Generator().manual_seed(seed))
    z = z.to(model.device)
    gen = {k: v for k, v in (gen or {}).items() if v is not None}
    with _bar(len(labels), "round trip", False) as bar:
        out = _generate(model, z, [instruction_for("classify")] * len(labels), batch_size, gen, bar)
    ranked = map_to_labels(model.encoder, out, labels, template)
    hits = ranked[:, 0] == np.arange(len(labels))
    # The same embeddings, the LM choosing among the labels itself (no free text, no mapping).
    best = _rank_labels(model, z, labels, batch_size)[:, 0]
    rank_hits = best == np.arange(len(labels))
    return {"top1": float(hits.mean()), "rank_top1": float(rank_hits.mean()), "n": len(labels),
            "noise_variance": noise_variance,
            "failures": [{"label": l, "answer": a, "mapped_to": labels[r[0]]}
                         for l, a, r, h in zip(labels, out, ranked, hits) if not h],
            "rank_failures": [{"label": l, "ranked_first": labels[b]}
                              for l, b, h in zip(labels, best, rank_hits) if not h]}

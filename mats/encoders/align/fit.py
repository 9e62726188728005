"""Fitting the projection: symmetric multi-positive InfoNCE on cached features, seed ensembles merged into one
wider MLP, the zero-shot checks that score a fit, and ``--select``'s comparison of capacities."""
from __future__ import annotations

import argparse
import copy
import json
import math

import numpy as np
import torch
from torch.nn import functional as F

from mats import hearing
from mats.encoders.align.data import Clip
from mats.encoders.align.features import Featurizer, pooled
from mats.encoders.align.progress import log
from mats.encoders.offline import AudioProjection, OfflineEncoder
from mats.prompts import label_prompt

CANDIDATES = [  # what --select compares (capacity); the data is the same for all
    {"pool": "window", "proj_hidden": 0},
    {"pool": "stats", "proj_hidden": 0},
    {"pool": "window", "proj_hidden": 1024},
    {"pool": "stats", "proj_hidden": 1024},
]


def epoch_batches(domains: np.ndarray, batch_size: int, how: str, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches. "mixed": one shuffle of everything. "domain": each batch holds clips of one domain
    (real recordings, or the synthesized corpus), so a real clip's negatives are other real classes, not easy
    synthetic ones, and the projection must learn to tell a dog from a cat, not only from a piano."""
    if how == "mixed":
        order = rng.permutation(len(domains))
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    out = []
    for d in np.unique(domains):
        order = rng.permutation(np.flatnonzero(domains == d))
        out += [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def train_projection(x: torch.Tensor, concepts: list[str], caption_ids: list[list[int]], text: torch.Tensor,
                     hidden: int, args: argparse.Namespace, t0: float, tag: str,
                     domains: np.ndarray | None = None, featurize: Featurizer | None = None,
                     init: AudioProjection | None = None) -> AudioProjection:
    """Fit a fresh projection (and a temperature) with symmetric multi-positive InfoNCE on cached features:
    each clip is paired with one of its captions, drawn anew every step; clips of one concept are positives.
    ``featurize`` turns a batch of ``x`` into pooled vectors (default: ``x`` already is); when it holds a block 4,
    that block trains too, at ``--block4-lr-scale`` times the learning rate, its BatchNorm statistics kept (eval
    mode), so the frozen blocks 1-3 still see the inputs they were trained for. On a GPU when there is one.
    ``init``: start from this projection (its standardisation included) instead of a fresh one."""
    block4 = featurize.block4 if featurize is not None else None
    dev = next(block4.parameters()).device if block4 is not None else torch.device("cpu")
    feat = featurize if block4 is not None else (lambda xb: xb)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cid = {c: j for j, c in enumerate(sorted(set(concepts)))}
    concept = torch.tensor([cid[c] for c in concepts])
    n_cap = torch.tensor([len(c) for c in caption_ids])
    caps = torch.full((len(caption_ids), int(n_cap.max())), -1, dtype=torch.long)
    for i, c in enumerate(caption_ids):
        caps[i, : len(c)] = torch.tensor(c)

    if init is not None:
        proj = copy.deepcopy(init)
    else:
        x0 = x if block4 is None else featurize.all(x)  # the starting features fix the standardisation
        proj = AudioProjection(x0.shape[1], text.shape[1], hidden, args.proj_dropout if hidden else 0.0)
        proj.feat_mean.copy_(x0.mean(0))
        proj.feat_std.copy_(x0.std(0).clamp(min=1e-4))
        del x0
        torch.nn.init.normal_(proj.net[-1].weight, std=0.01)  # start near zero: no arbitrary initial alignment
        torch.nn.init.zeros_(proj.net[-1].bias)
    proj.to(dev)
    text = text.to(dev)
    # The temperature carries over from a warm start too; a reset one would undo what the warm stage learnt.
    log_scale = torch.nn.Parameter(torch.tensor(getattr(init, "log_scale", math.log(1 / 0.07)), device=dev))
    groups = [{"params": list(proj.parameters()), "weight_decay": args.weight_decay},
              {"params": [log_scale], "weight_decay": 0.0}]
    max_lr = [args.lr, args.lr]
    if block4 is not None:
        groups.append({"params": list(block4.parameters()), "weight_decay": 0.0})
        max_lr.append(args.lr * args.block4_lr_scale)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=args.lr)
    domains = np.zeros(len(x), int) if domains is None else np.asarray(domains)
    steps_per_epoch = len(epoch_batches(domains, args.batch_size, args.batching, np.random.default_rng(0)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(20, args.epochs * steps_per_epoch),
                                                pct_start=0.1)
    proj.train()
    for epoch in range(args.epochs):
        run = 0.0
        for b in epoch_batches(domains, args.batch_size, args.batching, rng):
            b = torch.from_numpy(b)
            pick = (torch.from_numpy(rng.random(len(b))).float() * n_cap[b]).long()
            txt = text[caps[b, pick].to(dev)]
            a = F.normalize(proj(feat(x[b]).to(dev)), dim=-1)
            logits = log_scale.exp().clamp(max=100.0) * a @ txt.T
            c = concept[b].to(dev)
            pos = (c[:, None] == c[None, :]).float()
            target = pos / pos.sum(1, keepdim=True)
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
            if args.align_weight:  # close the modality gap: pull each clip onto its caption itself (not only nearer)
                loss = loss + args.align_weight * (1 - (a * txt).sum(-1)).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            run += loss.item()
        if (epoch + 1) % max(1, args.epochs // 3) == 0 or epoch == args.epochs - 1:
            log(f"{tag}: epoch {epoch + 1}/{args.epochs} loss {run / steps_per_epoch:.3f}", t0)
    proj.log_scale = float(log_scale.detach())  # a plain attribute (not saved with the encoder): for a later warm start
    return proj.cpu().eval()


def member_args(args: argparse.Namespace, m: int) -> argparse.Namespace:
    a = copy.copy(args)
    a.seed = args.seed + m
    return a


def merge_projections(members: list[AudioProjection]) -> AudioProjection:
    """Projections fit from different seeds -> one projection whose output is exactly their mean, so the ensemble
    costs one forward pass and the saved format and loader stay as they are. MLPs become one MLP ``len(members)``
    times as wide (config.json names the wider hidden layer); linear maps average into one linear map. Averaging the
    raw outputs and averaging the normalised ones scored the same on validation. Members share the standardisation
    (the same training features fix it)."""
    first, n = members[0], len(members)
    for p in members[1:]:
        if not (torch.equal(p.feat_mean, first.feat_mean) and torch.equal(p.feat_std, first.feat_std)):
            raise ValueError("ensemble members must share their feature standardisation (fit them on the same data)")
        if len(p.net) != len(first.net):
            raise ValueError("ensemble members must all be MLPs or all linear")
    hidden = first.net[0] if len(first.net) == 4 else None  # (Linear, GELU, Dropout, Linear) or (Dropout, Linear)
    outs = [p.net[-1] for p in members]
    width = n * hidden.out_features if hidden is not None else 0
    dropout = (first.net[2] if hidden is not None else first.net[0]).p
    merged = AudioProjection(first.feat_mean.numel(), outs[0].out_features, width, dropout)
    with torch.no_grad():
        merged.feat_mean.copy_(first.feat_mean)
        merged.feat_std.copy_(first.feat_std)
        if hidden is not None:  # the members' hidden units side by side; the output layer reads all, scaled by 1/n
            merged.net[0].weight.copy_(torch.cat([p.net[0].weight for p in members]))
            merged.net[0].bias.copy_(torch.cat([p.net[0].bias for p in members]))
            merged.net[-1].weight.copy_(torch.cat([o.weight for o in outs], dim=1) / n)
        else:
            merged.net[-1].weight.copy_(torch.stack([o.weight for o in outs]).mean(0))
        merged.net[-1].bias.copy_(torch.stack([o.bias for o in outs]).mean(0))
    return merged.eval()


@torch.inference_mode()
def evaluate_split(enc: OfflineEncoder, emb: torch.Tensor, clips: list[Clip]) -> dict:
    """All zero-shot checks on L2-normalised audio embeddings of ``clips`` (real and synthesized)."""
    res = {}
    for ds, labels in (("esc50", hearing.ESC50_LABELS), ("us8k", hearing.US8K_LABELS)):
        idx = [i for i, c in enumerate(clips) if c.row.get("dataset") == ds]
        if not idx:
            continue
        t = enc.embed_text([label_prompt(l) for l in labels])
        pred = (emb[idx] @ t.T).argmax(1).tolist()
        res[f"zero_shot_{ds}"] = round(float(np.mean([labels[p] == clips[i].row["label"] for p, i in zip(pred, idx)])), 4)
        res[f"{ds}_clips"] = len(idx)
    res.update(hearing.zero_shot_checks(enc, emb, [c.row for c in clips]))
    return res


SELECT_KEYS = ("coarse", "family", "zero_shot_esc50", "zero_shot_us8k", "mixture_source_top5")


def score(res: dict) -> float:
    """Selection score: the mean of the five checks (each counts the same)."""
    return float(np.mean([res[k] for k in SELECT_KEYS if res.get(k) is not None]))


def fit_and_embed(enc, feats, clips, train_idx, eval_idx, text, cap_ids, cfg, args, t0, tag):
    """Train on ``train_idx``, embed ``eval_idx``. Returns the projection, the embeddings and the trained block 4
    (None unless --tune-block4; each fit starts from the pretrained block)."""
    block4 = None
    if args.tune_block4:
        block4 = copy.deepcopy(enc.audio_net.conv_block4).to(memory_format=torch.contiguous_format).eval()
        block4.to("cuda" if torch.cuda.is_available() else "cpu")
        x = feats[train_idx]
    else:
        x = pooled(feats[train_idx], cfg["pool"])
    featurize = Featurizer(cfg["pool"], block4)
    fit = (x, [clips[i].concept for i in train_idx], [cap_ids[i] for i in train_idx], text, cfg["proj_hidden"])
    domains = np.array([clips[i].row["dataset"] == "corpus" for i in train_idx], int)
    init = None
    if block4 is not None and args.warm_epochs:
        # Warm start (what makes --tune-block4 affordable on a CPU): the projection first learns on the pretrained
        # block's features, cheaply; then both train for --epochs.
        u, inv = np.unique(train_idx, return_inverse=True)
        warm = copy.copy(args)
        warm.epochs = args.warm_epochs
        init = train_projection(featurize.all(feats[u])[torch.from_numpy(inv)], *fit[1:], warm, t0, f"{tag} warm",
                                domains)
    if args.ensemble > 1:  # (parse_args refuses it with --tune-block4)
        # Members differ only in the projection's seed (init, batch order, caption draws); the data is the same.
        proj = merge_projections([train_projection(*fit, member_args(args, m), t0, f"{tag} member {m + 1}", domains)
                                  for m in range(args.ensemble)])
    else:
        proj = train_projection(*fit, args, t0, tag, domains, featurize if block4 is not None else None, init)
    with torch.inference_mode():
        emb = F.normalize(proj(featurize.all(feats[eval_idx])), dim=-1)
    return proj, emb, (block4.cpu() if block4 is not None else None)


def select_settings(args, enc, feats, clips, tr, va, text, cap_ids, t0) -> tuple[dict, list[dict]]:
    """--select: every candidate capacity trained on train, scored on val; then the best one on real clips only
    (what the data alone buys). Returns the chosen settings and the comparison."""
    selection = []
    single = copy.copy(args)
    single.ensemble = 1  # capacities are compared one seed each; the ensemble of the choice is scored below
    wanted = None if not args.candidates else {tuple(c.split(":")) for c in args.candidates.split(",")}
    for cand in [c for c in CANDIDATES if wanted is None or (c["pool"], str(c["proj_hidden"])) in wanted]:
        _, emb, _ = fit_and_embed(enc, feats, clips, tr, va, text, cap_ids, cand, single, t0, f"select {cand}")
        res = evaluate_split(enc, emb, [clips[i] for i in va])
        selection.append({**cand, "score": round(score(res), 4), "val": res})
        log(f"val {cand}: score {score(res):.3f} | " + json.dumps(res), t0)
    best = max(selection, key=lambda r: r["score"])
    cfg = {"pool": best["pool"], "proj_hidden": best["proj_hidden"]}
    if args.ensemble > 1:
        _, emb, _ = fit_and_embed(enc, feats, clips, tr, va, text, cap_ids, cfg, args, t0, "select ensemble")
        res = evaluate_split(enc, emb, [clips[i] for i in va])
        selection.append({**cfg, "data": f"corpus + real, ensemble of {args.ensemble} seeds", "score": round(score(res), 4),
                          "val": res})
        log(f"val {cfg} ensemble of {args.ensemble}: score {score(res):.3f} | " + json.dumps(res), t0)
    real_tr = np.array([i for i in tr if clips[i].row["dataset"] != "corpus"])
    _, emb, _ = fit_and_embed(enc, feats, clips, real_tr, va, text, cap_ids, cfg, single, t0, "select real-only")
    res = evaluate_split(enc, emb, [clips[i] for i in va])
    selection.append({**cfg, "data": "real clips only", "score": round(score(res), 4), "val": res})
    log(f"val {cfg} real clips only: score {score(res):.3f} | "
        + " ".join(f"{k} {res.get(k)}" for k in SELECT_KEYS), t0)
    log(f"chosen: {cfg}", t0)
    return cfg, selection

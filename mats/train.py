"""The text-only trainer (accelerate: one CPU, one GPU, or many with `accelerate launch` / torchrun).

    mats train configs/gpt2.yaml train.max_steps=2000 --out runs/gpt2
    mats train configs/gpt2.yaml --out runs/gpt2 --resume          # continue after a crash

What is trained: mapper + projector, plus LoRA on the LM (or the full LM, for a small from-scratch
decoder). The encoder is frozen, so every unique text is embedded once (cached on disk) and only the
noise is drawn per step.

Determinism: the data order comes from the seeded Mixture (epoch, position); the noise and dropout of
step s are seeded from (seed, s, rank). A run killed and resumed from a checkpoint therefore follows the
same loss curve as an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mats.bank import TextEmbeddingCache, build_bank
from mats.config import MATSConfig, apply_overrides, build_section
from mats.errors import ConfigError


@dataclass
class TrainConfig:
    out: str = "runs/mats"
    seed: int = 0
    batch_size: int = 16  # per process
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 1000
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # "auto" (bf16 on GPUs that have it) | "no" | "bf16" | "fp16"
    log_every: int = 10
    eval_every: int = 200
    save_every: int = 200
    keep_checkpoints: int = 2
    max_val_samples: int = 256
    half_mapper: bool = False  # write mapper.safetensors in fp16 (shipping size)
    # A trained MATS (folder or Hub id) to start from instead of fresh weights: its mapper, and its LoRA adapter or
    # full LM + tokenizer. Continues a released model (longer, or on your own captions); same architecture needed.
    init_from: str | None = None
    # Wall-clock limit: stop after the step that reaches it and still write the model (the LR schedule is cut short,
    # so prefer a step count that fits; this is the safety net for a lease or a Space that must end in time).
    max_seconds: float | None = None


@dataclass
class DataConfig:
    sources: list = field(default_factory=list)  # [{"path": ..., "kind": ..., "weight": ..., "max_samples": ...}]
    val_fraction: float = 0.05
    bank_tasks: list = field(default_factory=lambda: ["caption", "music_caption"])


@dataclass
class RunConfig:
    model: MATSConfig
    data: DataConfig
    train: TrainConfig

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        unknown = set(d) - {"model", "data", "train"}
        if unknown:
            raise ConfigError(f"unknown top-level config key(s) {sorted(unknown)}; use model, data, train")
        model = MATSConfig.from_dict(d.get("model", {}))
        return cls(model=model, data=build_section(DataConfig, d.get("data", {}), "data"),
                   train=build_section(TrainConfig, d.get("train", {}), "train"))

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "data": asdict(self.data), "train": asdict(self.train)}


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text) or {}
    else:
        raw = json.loads(text)
    raw = apply_overrides(raw, overrides or [])
    # Relative data paths in a config are relative to the config file, so configs travel with their data.
    for src in raw.get("data", {}).get("sources", []):
        # "$MATS_DATA/captions/..." lets one config serve any copy of the data folders.
        for key, value in list(src.items()):
            src[key] = _expand(value)
        if "path" in src and not Path(src["path"]).is_absolute() and not Path(src["path"]).exists():
            candidate = path.parent / src["path"]
            if candidate.exists():
                src["path"] = str(candidate)
    return RunConfig.from_dict(raw)


def _expand(value):
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, str) and "$" in value:
        out = os.path.expandvars(value)
        if "$" in out:
            raise ConfigError(f"data path {value} uses an unset environment variable (e.g. export MATS_DATA=...)")
        return out
    return value


def portable_path(path) -> str:
    """A data path as train_info records it: under ``$MATS_DATA`` when it lies there (as the configs write it), so a
    checkpoint names no folder of the machine it was trained on and a run installs into ``assets/`` as it is."""
    p = str(path)
    root = os.environ.get("MATS_DATA")
    if not root:
        return p
    r = os.path.normpath(os.path.abspath(os.path.expanduser(root)))
    q = os.path.normpath(os.path.abspath(p))
    if q == r or q.startswith(r + os.sep):
        return "$MATS_DATA" + q[len(r):]
    return p


# ---------------------------------------------------------------------------------------- model setup
def build_model(cfg: MATSConfig, train_texts: list[str], device, base_dir=None):
    """A fresh MATS for training; a ``lm.scratch`` spec builds a small LM + tokenizer fitted to the corpus."""
    from mats.encoders import load_encoder
    from mats.model import MATS

    if "scratch" in cfg.lm:
        from mats.lm import attach_lora, scratch_lm

        encoder = load_encoder(cfg.encoder, base_dir=base_dir, device=device)
        lm, tok = scratch_lm(cfg.lm["scratch"], train_texts, seed=cfg.santa.seed)
        lm.to(device)
        if cfg.uses_lora:
            lm = attach_lora(lm, cfg.lora)
        return MATS(cfg, encoder, lm, tok)
    return MATS.build(cfg, device=device, dtype=torch.float32, base_dir=base_dir)


def _location(spec: dict) -> tuple:
    """(backend, where) of an encoder or LM spec: a local path resolved, so './x' and '/abs/x' naming one folder
    compare equal."""
    where = spec.get("path") or spec.get("id")
    if isinstance(where, str) and Path(where).expanduser().exists():
        where = str(Path(where).expanduser().resolve())
    return spec.get("backend"), where


def model_from_checkpoint(cfg: MATSConfig, source: str, device):
    """A trained MATS to go on training (``train.init_from``). The run's model section must describe the same
    weights: encoder, mapper, what of the LM was trained, LoRA, and the LM itself unless it was trained fully and
    ships inside the checkpoint; prompt wording may differ. Returns the model with ``cfg`` as its config."""
    from mats.hub import resolve_checkpoint
    from mats.paths import resolve_relative
    from mats.model import MATS

    folder = resolve_checkpoint(source)
    init = MATS.from_pretrained(folder, device=device, dtype=torch.float32, quantize="none")
    prev = init.config
    encoder = resolve_relative(prev.encoder, folder)  # the mapper learnt on this encoder's embeddings
    pairs = [("encoder", _location(cfg.encoder), _location(encoder)),
             ("mapper", asdict(cfg.mapper), asdict(prev.mapper)), ("train_lm", cfg.train_lm, prev.train_lm)]
    if cfg.train_lm == "lora":
        pairs.append(("lora", asdict(cfg.lora), asdict(prev.lora)))
    if prev.train_lm != "full":  # a fully trained LM comes from the checkpoint itself, whatever cfg.lm says
        pairs.append(("lm", _location(cfg.lm), _location(resolve_relative(prev.lm, folder))))
    diffs = [f"{name}: config {a!r} vs checkpoint {b!r}" for name, a, b in pairs if a != b]
    if diffs:
        raise ConfigError(f"train.init_from={source!r} has other weights than the model section describes; "
                          "make them match (or start fresh without init_from). " + "; ".join(diffs))
    cfg.encoder = encoder
    if prev.train_lm == "full":
        cfg.lm = dict(prev.lm)
    if cfg.answer_end_token is None:  # keep the end token its answers were trained to stop with
        cfg.answer_end_token = prev.answer_end_token
    for name, p in init.lm.named_parameters():  # from_pretrained loads the adapter frozen, for inference
        if "lora_" in name:
            p.requires_grad_(True)
    init.mapper.requires_grad_(True)
    cfg.train_info = {**cfg.train_info, "init_from": {
        "source": str(source), **{k: prev.train_info[k] for k in ("steps", "train_samples", "val_loss", "hyperparameters")
                                  if k in prev.train_info}}}
    # The same parts under the run's config (its prompt wording, the checks MATS makes of a config).
    model = MATS(cfg, init.encoder, init.lm, init.tokenizer, mapper=init.mapper)
    model.base_dir = folder  # cfg.lm's "./lm" (a fully trained LM) is read from there
    return model


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # No weight decay on norms, biases, and learned constants (standard AdamW practice).
        if p.ndim < 2 or "norm" in name or ".ln_" in name or name.endswith("bias") or "prefix_const" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(warmup: int, total: int, min_ratio: float):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


# ---------------------------------------------------------------------------------------- checkpoints
def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_training_state(folder: Path, model, optimizer, scheduler, step: int, epoch: int, position: int,
                        losses: list) -> None:
    """model (trainable part), optimiser, scheduler, RNG, data position: safetensors + JSON, no pickles."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    save_file(tensors or {"_empty": torch.zeros(1)}, str(tmp / "optimizer.safetensors"))
    save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    state = {"step": step, "epoch": epoch, "position": position, "param_groups": opt["param_groups"],
             "optimizer_scalars": scalars, "scheduler": scheduler.state_dict(), "losses": losses,
             "python_rng": random.getstate(), "numpy_rng": _np_state()}
    (tmp / "state.json").write_text(json.dumps(state, default=_json_default))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)  # a crash mid-save leaves the previous checkpoint intact


def _np_state():
    s = np.random.get_state()
    return [s[0], s[1].tolist(), s[2], s[3], s[4]]


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o))


def load_training_state(folder: Path, model, optimizer, scheduler) -> dict:
    state = json.loads((folder / "state.json").read_text())
    params = dict(model.named_parameters())
    for name, value in load_file(str(folder / "trainable.safetensors")).items():
        if name not in params:
            raise ConfigError(f"checkpoint {folder} has parameter {name} the model lacks: was the config changed?")
        params[name].data.copy_(value)
    tensors = load_file(str(folder / "optimizer.safetensors"))
    opt_state: dict = {}
    for key, v in tensors.items():
        if key == "_empty":
            continue
        idx, k = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[k] = v
    for key, v in state["optimizer_scalars"].items():
        idx, k = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[k] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch_rng"])
    py = state["python_rng"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy_rng"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    return state


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("step-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    ckpts = [c for c in ckpts if (c / "state.json").is_file()]
    return ckpts[-1] if ckpts else None


# ---------------------------------------------------------------------------------------- training
def _step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 9_176 + micro * 131 + rank) % (2**63)


def train(run: RunConfig, resume: bool = False, on_step: Callable[[int, float], None] | None = None,
          cache_root: str | None = None, progress: bool = True) -> Path:
    """Train and write a complete checkpoint to ``<out>/model``. Returns that folder."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from mats.mixture import build_dataset

    tc, cfg = run.train, run.model
    out = Path(tc.out)
    if not run.data.sources:
        raise ConfigError("data.sources is empty: list at least one caption/label/QA file")
    mp = tc.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    acc = Accelerator(gradient_accumulation_steps=tc.grad_accum, mixed_precision=mp)
    rank, world = acc.process_index, acc.num_processes
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(run.to_dict(), indent=2))

    train_mix, val, reports = build_dataset(run.data.sources, seed=tc.seed, val_fraction=run.data.val_fraction)
    if acc.is_main_process:
        for r in reports:
            acc.print(r.summary())
    samples = train_mix.samples
    torch.manual_seed(tc.seed)
    if tc.init_from:
        model = model_from_checkpoint(cfg, tc.init_from, acc.device)
    else:
        model = build_model(cfg, [s.answer for s in samples] + [s.prompt for s in samples], acc.device)
    if cfg.train_lm == "full":
        model.lm.requires_grad_(True)
    elif not cfg.uses_lora:  # frozen, or LoRA switched off: only the mapper learns
        model.lm.requires_grad_(False)
    model.encoder.requires_grad_(False)

    # Each unique text embedded once; rank 0 fills the cache first so the others only read it.
    cache_kwargs = {"root": cache_root} if cache_root else {}
    with acc.main_process_first():
        cache = TextEmbeddingCache(model.encoder, **cache_kwargs)
        all_texts = [s.text for s in samples] + [s.text for s in val[: tc.max_val_samples]]
        cache.embed(all_texts, progress=acc.is_main_process and progress)
    text_emb = cache.embed([s.text for s in samples])
    val = val[: tc.max_val_samples]
    val_emb = cache.embed([s.text for s in val]) if val else None
    # The collate step, once: every sample's prompt and answer as token ids (not re-tokenised at every step).
    tokens = model.collate([s.prompt for s in samples], [s.answer for s in samples])

    optimizer = torch.optim.AdamW(_param_groups(model, tc.weight_decay), lr=tc.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(tc.warmup_steps, tc.max_steps, tc.min_lr_ratio))
    step, epoch, position, losses = 0, 0, 0, []
    if resume:
        ck = latest_checkpoint(out)
        if ck is None:
            acc.print(f"--resume: no checkpoint in {out / 'checkpoints'}; starting from scratch")
        else:
            st = load_training_state(ck, model, optimizer, scheduler)
            step, epoch, position, losses = st["step"], st["epoch"], st["position"], st["losses"]
            acc.print(f"resumed from {ck} (step {step})")
    dmodel, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    log_file = out / "log.jsonl"

    global_batch = tc.batch_size * world
    order = train_mix.epoch_indices(epoch)
    bar = tqdm(total=tc.max_steps, initial=step, desc="training", disable=not (acc.is_main_process and progress))
    t0, seen, stopped_early = time.perf_counter(), 0, False
    while step < tc.max_steps:
        dmodel.train()
        loss_sum = 0.0
        for micro in range(tc.grad_accum):
            if position + global_batch > len(order):
                epoch, position = epoch + 1, 0
                order = train_mix.epoch_indices(epoch)
            idx = order[position + rank * tc.batch_size : position + (rank + 1) * tc.batch_size]
            position += global_batch
            emb = text_emb[idx].to(acc.device)
            seed = _step_seed(tc.seed, step, micro, rank)
            torch.manual_seed(seed)  # dropout of this step: same with or without a resume
            gen = torch.Generator().manual_seed(seed)
            with acc.accumulate(dmodel):
                with acc.autocast():
                    loss = dmodel(emb, tokens=[tokens[i] for i in idx], generator=gen)
                acc.backward(loss)
                if acc.sync_gradients and tc.max_grad_norm:
                    acc.clip_grad_norm_(dmodel.parameters(), tc.max_grad_norm)
                optimizer.step()
                scheduler.step() if acc.sync_gradients else None
                optimizer.zero_grad()
            loss_sum += loss.detach().float()
        step += 1
        seen += global_batch * tc.grad_accum
        mean_loss = acc.reduce(loss_sum / tc.grad_accum, reduction="mean").item()
        losses.append(mean_loss)
        lr = scheduler.get_last_lr()[0]
        rate = seen / max(1e-9, time.perf_counter() - t0)
        bar.update(1)
        bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}")
        if acc.is_main_process and (step % tc.log_every == 0 or step == tc.max_steps):
            _log(log_file, {"step": step, "epoch": epoch, "loss": mean_loss, "lr": lr, "samples_per_s": rate})
        if on_step is not None:
            on_step(step, mean_loss)
        if val_emb is not None and (step % tc.eval_every == 0 or step == tc.max_steps):
            vl = validation_loss(acc.unwrap_model(dmodel), val, val_emb, tc)
            if acc.is_main_process:
                _log(log_file, {"step": step, "val_loss": vl})
                bar.write(f"step {step}: val_loss {vl:.4f}")
        if step % tc.save_every == 0 and step < tc.max_steps:
            acc.wait_for_everyone()
            if acc.is_main_process:
                save_training_state(out / "checkpoints" / f"step-{step:07d}", acc.unwrap_model(dmodel), optimizer,
                                    scheduler, step, epoch, position, losses)
                _prune(out / "checkpoints", tc.keep_checkpoints)
        if tc.max_seconds is not None and step < tc.max_steps:
            over = torch.tensor(float(time.perf_counter() - t0 >= tc.max_seconds), device=acc.device)
            if acc.reduce(over, reduction="sum").item() > 0:  # every process stops at the same step
                stopped_early = True
                acc.print(f"train.max_seconds={tc.max_seconds:g} reached after step {step} of {tc.max_steps}; "
                          "writing the model now")
                if acc.is_main_process:
                    _log(log_file, {"step": step, "stopped_early": True, "seconds": round(time.perf_counter() - t0, 1)})
                break
    bar.close()
    acc.wait_for_everyone()
    final = out / "model"
    if acc.is_main_process:
        model = acc.unwrap_model(dmodel)
        model.eval()
        bank_texts = [s.text for s in samples if s.task in run.data.bank_tasks]
        if bank_texts:
            model.santa = build_bank(cache, bank_texts, cfg.santa, cfg.noise_variance)
        vl = validation_loss(model, val, val_emb, tc) if val_emb is not None else None
        cfg.train_info = {
            **cfg.train_info,
            "sources": [{"name": r.kind, "path": portable_path(r.path), "samples": r.samples} for r in reports],
            "train_samples": len(samples), "val_samples": len(val), "steps": step,
            **({"stopped_early_at_max_seconds": tc.max_seconds} if stopped_early else {}),
            "hyperparameters": {k: v for k, v in asdict(tc).items() if k not in ("out",)},
            "train_seconds": round(time.perf_counter() - t0, 1), "final_train_loss": losses[-1] if losses else None,
        }
        if vl is not None:
            cfg.train_info["val_loss"] = vl
        model.config = cfg
        model.save_pretrained(final, half=tc.half_mapper)
        (out / "train_config.json").write_text(json.dumps(run.to_dict(), indent=2))
        acc.print(f"wrote {final}")
    acc.wait_for_everyone()
    acc.end_training()
    return final


@torch.no_grad()
def validation_loss(model, val, val_emb, tc: TrainConfig) -> float:
    """Mean loss on held-out samples with the training objective (noise on, fixed seed, dropout off)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(tc.seed + 12345)
    total, n = 0.0, 0
    for i in range(0, len(val), tc.batch_size):
        batch = val[i : i + tc.batch_size]
        loss = model(val_emb[i : i + len(batch)].to(model.device), [s.prompt for s in batch],
                     [s.answer for s in batch], noise=True, generator=gen)
        total += loss.item() * len(batch)
        n += len(batch)
    model.train(was_training)
    return total / max(1, n)


def _log(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _prune(folder: Path, keep: int) -> None:
    ckpts = sorted(folder.glob("step-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    for old in ckpts[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def train_from_cli(config_path: str, overrides: list[str], resume: bool = False, out: str | None = None) -> int:
    run = load_run_config(config_path, overrides)
    if out:
        run.train.out = out
    train(run, resume=resume)
    return 0

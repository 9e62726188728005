"""MATS: encoder + Santa + mapper + projector + causal LM (+LoRA).

Training (text only):  text -> frozen text embedding -> noise -> mapper -> prefix -> LM; CE on answer tokens.
Inference (audio):     clip -> audio embedding -> Santa(lambda) -> mapper -> prefix -> LM.generate.

The LM sees ``[prompt-before] [P soft tokens] [prompt-after] [answer]`` as ``inputs_embeds``; the prompt
tokens are embedded with the LM's own embedding table so LoRA and the chat template behave as usual.
"""
from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mats.audio import check_signal, load_clip
from mats.config import SANTA_BANKS, MATSConfig
from mats.encoders import load_encoder
from mats.errors import ArgumentError, CheckpointError, ConfigError, MATSError
from mats.lm import PICKLE_SUFFIXES, attach_lora, default_device, default_dtype, load_lm
from mats.generation import generation_kwargs, stream_answer
from mats.mapper import PrefixMapper
from mats.paths import portable, resolve_relative
from mats.prompts import (LABEL_TEMPLATE, PromptFormat, humanise_label, instruction_for, label_prompt, resolve_style,
                          split_tags)
from mats.santa import Evidence, SantaBank, add_noise, label_mix, label_weights

IGNORE = -100
LABEL_CACHE_SIZE = 8  # label sets whose sentence embeddings a model remembers (label_embeddings)
LABEL_CHUNK = 64  # clip x label answers scored per LM pass (label_log_likelihoods): bounds its memory


@dataclass
class RowTokens:
    """One row's token ids around the audio prefix: ``before [prefix] after answer`` (``MATS.collate``)."""

    before: list[int]
    after: list[int]  # the instruction and what follows it, up to where the answer starts
    answer: list[int]  # empty at inference


@dataclass
class Batch:
    inputs_embeds: torch.Tensor  # [B, T, H]
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor | None  # [B, T] with IGNORE outside the answer


class MATS(torch.nn.Module):
    def __init__(self, config: MATSConfig, encoder, lm, tokenizer, santa: SantaBank | None = None,
                 mapper: PrefixMapper | None = None):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.lm = lm
        self.tokenizer = tokenizer
        self.santa = santa
        hidden = lm.get_input_embeddings().weight.shape[1]
        self.mapper = mapper or PrefixMapper(encoder.dim, hidden, config.mapper)
        self.mapper.to(self.device)
        self.prompt = PromptFormat(resolve_style(config.prompt_style, tokenizer), config.system_prompt)
        if config.answer_end_token is None:  # a new model (or an older checkpoint): record what answers end with
            config.answer_end_token = tokenizer.eos_token
        if config.answer_end_token is not None and config.answer_end_token not in tokenizer.get_vocab():
            raise CheckpointError(
                f"answer_end_token {config.answer_end_token!r} is not a token of this LM's tokenizer; the checkpoint "
                "was trained with another tokenizer. Load it with the LM it was trained on."
            )
        # Generation is not re-entrant on one model; the demo shares models between users.
        self.lock = threading.RLock()
        self.source: str | None = None  # folder or Hub id it was loaded from
        self.base_dir: Path | None = None  # the folder the config's ./ and ../ paths are relative to
        self.quantized: str | None = None  # "fp16" when from_pretrained packed the LM's weights for the CPU
        # The last few label sets' sentence embeddings: one classify embeds its labels for zero-shot, for Santa and
        # for the demo's evidence, and an evaluation once per lambda. Keyed by the encoder too (views share this).
        self._label_cache: dict[tuple, tuple] = {}

    # ------------------------------------------------------------------ construction
    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    @property
    def lm_dtype(self) -> torch.dtype:
        return self.lm.get_input_embeddings().weight.dtype

    @property
    def precision(self) -> str:
        """What the LM's weights are, for status lines: "fp16 packed" when packed for the CPU, else their dtype."""
        return f"{self.quantized} packed" if self.quantized else str(self.lm_dtype).removeprefix("torch.")

    @classmethod
    def build(cls, config: MATSConfig, device=None, dtype=None, encoder=None, base_dir=None) -> "MATS":
        """A fresh, untrained MATS (LoRA attached when the config asks for it): the trainer's start point."""
        device = torch.device(device) if device is not None else default_device()
        encoder = encoder or load_encoder(config.encoder, base_dir=base_dir, device=device)
        lm, tok = load_lm(resolve_relative(config.lm, base_dir), device=device, dtype=dtype)
        if config.uses_lora:
            lm = attach_lora(lm, config.lora)
        model = cls(config, encoder, lm, tok)
        model.base_dir = Path(base_dir) if base_dir is not None else None
        return model

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, revision: str | None = None, device=None,
                        dtype=None, quantize: str | bool | None = "auto") -> "MATS":
        """Load a checkpoint folder or Hub repo (``user/repo``; downloaded with snapshot_download).

        ``quantize``: ``"auto"`` (default) gives a large LM's Linear layers fp16 weights packed for fbgemm on
        a CPU, 2-3x faster with the same answers (mats.quantize); ``"fp16"`` forces it on a CPU; ``"none"`` (or
        False) keeps fp32. A packed model is for inference: it cannot be trained or saved.
        """
        from mats.hub import resolve_checkpoint
        from mats.quantize import pack_lm, quantize_mode, wants_packing

        mode = quantize_mode(quantize)

        folder = resolve_checkpoint(name_or_path, revision=revision)
        config = MATSConfig.load(folder)
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        if not (folder / "mapper.safetensors").is_file():
            raise CheckpointError(f"{folder / 'mapper.safetensors'} is missing: the checkpoint is incomplete.")
        encoder = load_encoder(config.encoder, base_dir=folder, device=device)
        lm, tok = load_lm(resolve_relative(config.lm, folder), device=device, dtype=dtype)
        adapter = folder / "adapter"
        if config.uses_lora:
            if not (adapter / "adapter_config.json").is_file():
                raise CheckpointError(f"{adapter}/adapter_config.json is missing: the config says LoRA was trained.")
            _refuse_pickled_adapter(adapter)
            lm = attach_lora(lm, config.lora, adapter_dir=adapter, trainable=False)
        packed = wants_packing(mode, lm, device)
        if packed:
            lm = pack_lm(lm)
        s = config.santa
        has_bank = (folder / "santa.json").exists() or (folder / "santa.safetensors").exists()
        santa = SantaBank.load(folder, top_k=s.top_k, tau=s.tau, strength=s.strength) if has_bank else None
        model = cls(config, encoder, lm, tok, santa=santa)
        state = _load_mapper_state(folder / "mapper.safetensors")
        try:
            model.mapper.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as e:
            raise CheckpointError(
                f"{folder / 'mapper.safetensors'} does not match config.json's mapper sizes ({e.args[0][:300]})"
            ) from e
        model.mapper.to(model.device)
        model.eval()
        model.source = str(name_or_path)
        model.base_dir = folder
        model.quantized = "fp16" if packed else None
        return model

    def save_pretrained(self, directory: str | Path, half: bool = False, model_card: bool = True) -> Path:
        """Write the checkpoint folder: config.json, mapper.safetensors, adapter/, santa.*, README.md."""
        if self.quantized:
            raise MATSError(
                f"This model's LM was loaded with {self.quantized} weights packed for fast CPU inference (LoRA "
                "merged), so it cannot be saved as a checkpoint. Load it with MATS.from_pretrained(..., quantize='none') to save or train."
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.config.train_lm == "full":
            # A fully trained LM exists nowhere else: it ships inside the checkpoint as lm/.
            self.lm.save_pretrained(str(directory / "lm"), safe_serialization=True)
            self.tokenizer.save_pretrained(str(directory / "lm"))
            _drop_load_flags(directory / "lm" / "tokenizer_config.json")
            self.config.lm = {"id": str((directory / "lm").resolve())}
        # Local parts are named relative to the new folder (mats.paths), so the checkpoint loads from anywhere
        # its parts move with it; the in-memory config keeps what it had.
        on_disk = copy.copy(self.config)
        on_disk.encoder = portable(self.config.encoder, self.base_dir, directory)
        on_disk.lm = portable(self.config.lm, self.base_dir, directory)
        on_disk.save(directory)
        dt = torch.float16 if half else torch.float32
        save_file({k: v.detach().to("cpu", dt).contiguous() for k, v in self.mapper.state_dict().items()},
                  str(directory / "mapper.safetensors"))
        if self.config.uses_lora:
            # PEFT records the folder the LM was loaded from (for a GGUF, a local cache path); name it portably.
            from mats.lm import base_model_name

            name = base_model_name(on_disk.lm)  # as config.json names it: the same, portable
            for peft_cfg in self.lm.peft_config.values():
                peft_cfg.base_model_name_or_path = name
            base_cfg = self.lm.get_base_model().config  # the adapter's README takes its base_model from here
            loaded_from, base_cfg._name_or_path = base_cfg._name_or_path, name
            try:
                self.lm.save_pretrained(str(directory / "adapter"))
            finally:
                base_cfg._name_or_path = loaded_from
        if self.santa is not None:
            self.santa.save(directory)
        if model_card:
            from mats.hub import write_model_card

            write_model_card(on_disk, directory)
        return directory

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None, **kw) -> str:
        from mats.hub import push_to_hub

        return push_to_hub(self, repo_id, private=private, token=token, **kw)

    # ------------------------------------------------------------------ shared pieces
    def _embed_tokens(self, ids: list[int]) -> torch.Tensor:
        t = torch.tensor(ids, dtype=torch.long, device=self.device)
        return self.lm.get_input_embeddings()(t)

    def _tokens(self, text: str) -> list[int]:
        """Template text: its special tokens (``<|im_start|>``...) are real special tokens."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def collate(self, instructions: Sequence[str], answers: Sequence[str] | None = None) -> list[RowTokens]:
        """The collate step: every row's prompt and answer as token ids, tokenised in one batched call each.

        The trainer runs it once over all its samples, not at every step; ``assemble`` runs it for text.
        """
        before, between, after = self.prompt.render_around(self.tokenizer)
        ids_before, ids_between, ids_after = self._tokens(before), self._tokens(between), self._tokens(after)
        # Instructions are user text: a typed "<|im_end|>" stays plain characters, never a control token.
        questions = self.tokenizer(list(instructions), add_special_tokens=False,
                                   split_special_tokens=True)["input_ids"] if len(instructions) else []
        if answers is None:
            targets = [[] for _ in questions]
        else:
            end = self.config.answer_end_token
            texts = [self.prompt.answer(self.tokenizer, a, end) for a in answers]
            targets = [ids[: self.config.max_answer_tokens]  # bounded sequence length and memory
                       for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return [RowTokens(ids_before, ids_between + q + ids_after, t) for q, t in zip(questions, targets)]

    @property
    def context_length(self) -> int | None:
        """How many positions the LM can read (GPT-2: n_positions; others: max_position_embeddings)."""
        cfg = self.lm.config
        for name in ("n_positions", "max_position_embeddings"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def prefix(self, embedding: torch.Tensor) -> torch.Tensor:
        """[B, D] embedding -> [B, P, H] soft tokens in the LM's dtype."""
        return self.mapper(embedding.to(self.device, torch.float32)).to(self.lm_dtype)

    def assemble(self, prefix: torch.Tensor, instructions: Sequence[str] | None = None,
                 answers: Sequence[str] | None = None, pad_left: bool = False,
                 tokens: Sequence[RowTokens] | None = None) -> Batch:
        """Build inputs_embeds/attention_mask(/labels) for a batch; loss only on answer tokens.

        Rows come as text (``instructions``, ``answers``) or already collated (``tokens``, ``MATS.collate``)."""
        if tokens is None:
            tokens = self.collate(instructions, answers)
        with_answers = any(t.answer for t in tokens)  # an answer always has its end token, so never empty
        rows, labels = [], []
        for i, t in enumerate(tokens):
            parts = [self._embed_tokens(t.before), prefix[i], self._embed_tokens(t.after + t.answer)]
            rows.append(torch.cat([p for p in parts if p.shape[0]], dim=0))
            labels.append([IGNORE] * (len(t.before) + prefix.shape[1] + len(t.after)) + t.answer)
        width = max(r.shape[0] for r in rows)
        hidden = rows[0].shape[1]
        embeds = torch.zeros(len(rows), width, hidden, dtype=rows[0].dtype, device=self.device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        lab = torch.full((len(rows), width), IGNORE, dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            n = r.shape[0]
            sl = slice(width - n, width) if pad_left else slice(0, n)
            embeds[i, sl], mask[i, sl] = r, 1
            lab[i, sl] = torch.tensor(labels[i], device=self.device)
        return Batch(embeds, mask, lab if with_answers else None)

    # ------------------------------------------------------------------ training
    def forward(self, text_embeddings: torch.Tensor, instructions: Sequence[str] | None = None,
                answers: Sequence[str] | None = None, noise: bool = True, generator: torch.Generator | None = None,
                tokens: Sequence[RowTokens] | None = None) -> torch.Tensor:
        """Training loss for a batch of (frozen) text embeddings: noise -> mapper -> LM cross-entropy.

        ``noise``: the one switch. On (the training objective, also for a validation loss), the embeddings get
        the config's Gaussian noise (sigma^2 = ``noise_variance``); off, they are only normalised. Rows come as
        text or as ``tokens`` from ``MATS.collate`` (the trainer collates once, not at every step).
        """
        e = text_embeddings.float()
        z = add_noise(e, self.config.noise_variance, generator=generator) if noise else F.normalize(e, dim=-1)
        batch = self.assemble(self.prefix(z), instructions, answers, tokens=tokens)
        out = self.lm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, labels=batch.labels)
        return out.loss

    # ------------------------------------------------------------------ inference
    def embed_clips(self, clips: Sequence, sr: int | None = None) -> torch.Tensor:
        # A clip with nothing to hear is refused: the model would invent a confident caption for it.
        waves = [check_signal(load_clip(c, sr=sr, target_sr=self.encoder.sample_rate)).waveform for c in clips]
        return self.encoder.embed_clips(waves).to(self.device)

    def santa_strength(self, santa: float | None = None) -> float:
        """The lambda to use: ``santa``, or the checkpoint's default; outside [0, 1] is a MATSError."""
        try:
            lam = self.config.santa.strength if santa is None else float(santa)
        except (TypeError, ValueError):
            raise ArgumentError(f"Santa strength must be a number between 0 and 1, got {santa!r}; "
                                "0 = audio only.") from None
        if not 0.0 <= lam <= 1.0:
            raise ArgumentError(f"Santa strength must be between 0 and 1 (got {lam}); 0 = audio only.")
        return lam

    def condition(self, audio_embeddings: torch.Tensor, santa: float | None = None,
                  labels: Sequence[str] | None = None, template: str = LABEL_TEMPLATE) -> torch.Tensor:
        """Santa mixing (or the plain normalised audio embedding when there is no bank or lambda = 0).

        ``labels``: mix in the nearest of these labels' sentences instead of bank captions (``santa.label_mix``;
        what ``classify`` does with a label set). It needs no bank."""
        lam = self.santa_strength(santa)
        s = self.config.santa  # the one home of top-k and tau (a bank's own are for standalone use)
        if labels is not None and lam > 0.0:
            return label_mix(audio_embeddings.to(self.device), self.label_embeddings(labels, template), lam,
                             top_k=s.top_k, tau=s.tau)
        if self.santa is None or lam == 0.0:
            return F.normalize(audio_embeddings.float(), dim=-1)
        return self.santa.mix(audio_embeddings, strength=lam, top_k=s.top_k, tau=s.tau).to(self.device)

    def _gen_kwargs(self, **overrides) -> dict:
        return generation_kwargs(self.config.generation, overrides)

    def stop_token_ids(self) -> list[int]:
        """Token ids that end an answer: the one it was trained to end with, and the tokenizer's EOS."""
        tokens = dict.fromkeys(t for t in (self.config.answer_end_token, self.tokenizer.eos_token) if t)
        return [self.tokenizer.convert_tokens_to_ids(t) for t in tokens]

    @torch.inference_mode()
    def generate_from_embeddings(self, z: torch.Tensor, instructions: Sequence[str], streamer=None,
                                 **gen) -> list[str]:
        kw = self._gen_kwargs(**gen)
        batch = self.assemble(self.prefix(z), instructions, pad_left=True)
        kw["max_new_tokens"] = self._room_for_answer(batch.inputs_embeds.shape[1], kw["max_new_tokens"])
        eos = self.stop_token_ids() or None
        with self.lock:
            if kw.get("num_beams", 1) > 1 and batch.inputs_embeds.shape[1] > 1:
                kw["cache"] = self._prompt_cache(batch, kw["num_beams"])
            out = self.lm.generate(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                                   pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos, streamer=streamer,
                                   **kw)
        # With inputs_embeds only, generate returns just the new tokens.
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def _prompt_cache(self, batch: Batch, beams: int):
        """The KV cache of each prompt but its last position, run once per clip and repeated for each beam.

        transformers' beam search copies the prompt per beam and runs all copies (4x the prompt's cost at the
        default beam 4: 0.20 s instead of 0.07 s for MATS-SmolLM2 on a CPU). Given this cache it runs only the
        last position itself; the answer is the same (tests/test_model.py)."""
        mask = batch.attention_mask[:, :-1]
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)  # as generate numbers a left-padded prompt
        cache = self.lm(inputs_embeds=batch.inputs_embeds[:, :-1], attention_mask=mask, position_ids=positions,
                        use_cache=True).cache
        cache.batch_repeat_interleave(beams)
        return cache

    def _room_for_answer(self, prompt_tokens: int, max_new_tokens: int) -> int:
        """New tokens that still fit the LM's positions after the prompt (GPT-2 crashes past n_positions)."""
        context = self.context_length
        if context is None:
            return max_new_tokens
        room = context - prompt_tokens
        if room < 1:
            prefix = self.config.mapper.prefix_length
            raise MATSError(
                f"The prompt is {prompt_tokens} tokens (instructions, question and {prefix} audio tokens), but this "
                f"model's LM reads at most {context} tokens in all. Ask a shorter question."
            )
        return min(max_new_tokens, room)

    def run(self, clips, task: str, question: str | Sequence[str] | None = None, santa: float | None = None,
            sr: int | None = None, audio_embeddings: torch.Tensor | None = None, **gen) -> list[str]:
        """One answer per clip. ``audio_embeddings`` ([N, D] from ``embed_clips``) stands in for ``clips`` when the
        clips were embedded already."""
        if audio_embeddings is None and (clips is None or len(clips) == 0):
            raise MATSError("No clips given: pass a clip, or a non-empty list of clips.")
        for q in question if isinstance(question, (list, tuple)) else [question]:
            instruction_for(task, q)  # a bad task or question fails before any audio is embedded
        self._gen_kwargs(**gen)  # and so does a bad generation setting
        audio = audio_embeddings if audio_embeddings is not None else self.embed_clips(list(clips), sr=sr)
        questions = question if isinstance(question, (list, tuple)) else [question] * len(audio)
        if len(questions) != len(audio):
            raise MATSError(f"{len(questions)} questions for {len(audio)} clips: give one question, or one per clip.")
        instructions = [instruction_for(task, q) for q in questions]
        return self.generate_from_embeddings(self.condition(audio, santa), instructions, **gen)

    def caption(self, clip, santa: float | None = None, sr: int | None = None, **gen):
        """Caption one clip (returns str) or a list of clips (returns list[str])."""
        many = _is_batch(clip)
        out = self.run(clip if many else [clip], "caption", santa=santa, sr=sr, **gen)
        return out if many else out[0]

    def ask(self, clip, question: str | None = None, santa: float | None = None, sr: int | None = None, **gen):
        many = _is_batch(clip)
        out = self.run(clip if many else [clip], "ask", question=question, santa=santa, sr=sr, **gen)
        return out if many else out[0]

    def classify(self, clip, labels: Sequence[str] | None = None, santa: float | None = None,
                 sr: int | None = None, template: str = LABEL_TEMPLATE, santa_bank: str = "labels", **gen) -> dict:
        """MATS sound tags; with ``labels``, CLAP-style zero-shot scores and the LM's own scores for them too.

        ``labels``: a list, or one comma-separated string ("dog, rain, siren").
        ``santa_bank``: with labels, Santa mixes in the nearest labels' sentences ("labels", the default: better
        on held-out clips, README "Santa over the labels") or the checkpoint's bank captions ("captions").
        Returns ``{"text": raw generated text, "tags": [tag, ...], "scores": {label: prob} | None,
        "lm_scores": {label: prob} | None}``: ``scores`` come from the encoder alone (zero-shot), ``lm_scores``
        from the MATS LM (``label_log_likelihoods``, softmax over the given labels, Santa as ``santa``).
        """
        _check_template(template)  # before generating: a bad label set or template fails at once
        labels = _label_list(labels) if labels is not None else None
        bank_labels = _santa_bank_labels(santa_bank, labels)
        audio = self.embed_clips([clip], sr=sr)
        z = self.condition(audio, santa, labels=bank_labels, template=template)
        text = self.generate_from_embeddings(z, [instruction_for("classify")], **gen)[0]
        tags = split_tags(text)
        scores = self.zero_shot(audio, labels, template)[0] if labels else None
        lm_scores = None
        if labels:
            probs = torch.softmax(self.label_log_likelihoods(z, labels), dim=-1)[0]
            lm_scores = dict(zip(labels, map(float, probs)))
        return {"text": text, "tags": tags, "scores": scores, "lm_scores": lm_scores}

    @torch.inference_mode()
    def label_log_likelihoods(self, z: torch.Tensor, labels: Sequence[str],
                              chunk_size: int = LABEL_CHUNK) -> torch.Tensor:
        """[B, L] log P(the classify answer is exactly ``label`` | conditioning ``z``), end token included.

        The LM's own choice among given labels ("MATS rank" in ``mats eval``). Free generation followed by text
        matching loses answers that are right but worded differently ("water pouring" for pouring_water) and
        cannot tell which of two near answers the LM found more likely; scoring each label as a complete answer
        can. The label is worded as in training (``humanise_label``: "dog_bark" -> "dog bark").
        The prompt (instruction + audio prefix) is run once per clip and its KV cache is shared by all L
        answers, so the cost is one prompt pass plus L short answer passes.

        ``chunk_size``: at most this many clip x label answers go through the LM at once (and as many prompts),
        so memory stays bounded by it, not by B x L (all at once, 10 clips x 50 labels took 4 GB; issue 26).
        The scores are the same as one clip at a time.
        """
        labels = _label_list(labels)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ArgumentError(f"chunk_size must be a whole number of at least 1, got {chunk_size!r}.")
        answers = [self._tokens(self.prompt.answer(self.tokenizer, humanise_label(l), self.config.answer_end_token))
                   [: self.config.max_answer_tokens] for l in labels]
        B, L, width = len(z), len(labels), max(len(a) for a in answers)
        ids = torch.zeros(L, width, dtype=torch.long, device=self.device)
        valid = torch.zeros(L, width, dtype=torch.bool, device=self.device)
        for j, a in enumerate(answers):
            ids[j, : len(a)], valid[j, : len(a)] = torch.tensor(a, device=self.device), True
        per_pass = min(L, chunk_size)  # labels per answer pass
        clips_per_pass = max(1, chunk_size // per_pass)  # clips per prompt pass: clips x labels <= chunk_size
        instruction = instruction_for("classify")
        out = torch.empty(B, L, dtype=torch.float32)
        for c0 in range(0, B, clips_per_pass):
            zc = z[c0 : c0 + clips_per_pass]
            b = len(zc)
            # Every clip gets the same instruction, so the prompts have equal length and need no padding.
            prompt = self.assemble(self.prefix(zc), [instruction] * b)
            with self.lock:
                first = self.lm(inputs_embeds=prompt.inputs_embeds, attention_mask=prompt.attention_mask,
                                use_cache=True, logits_to_keep=1)  # only the last position's logits are read
                # Token 0 of an answer is predicted by the prompt's last position.
                head = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # [b, V]
                prompt_cache = first.cache
                del first
                for l0 in range(0, L, per_pass):
                    n = min(per_pass, L - l0)
                    lid, lvalid = ids[l0 : l0 + n], valid[l0 : l0 + n]
                    cache = copy.deepcopy(prompt_cache) if l0 + n < L else prompt_cache  # the last pass may use it up
                    cache.batch_repeat_interleave(n)  # [b*n, ...]: clip i's prompt for each of the n answers
                    mask = torch.cat([prompt.attention_mask.repeat_interleave(n, 0), lvalid.repeat(b, 1).long()],
                                     dim=1)
                    rest = self.lm(input_ids=lid.repeat(b, 1), attention_mask=mask, cache=cache).logits
                    del cache
                    # Token t > 0 is predicted by the logits one position earlier.
                    tok = torch.log_softmax(rest[:, :-1].float(), dim=-1).gather(
                        -1, lid[:, 1:].repeat(b, 1).unsqueeze(-1)).squeeze(-1)  # [b*n, width-1]
                    del rest
                    first_tok = head.gather(1, lid[:, 0].unsqueeze(0).expand(b, n))  # [b, n]
                    later = (tok * lvalid[:, 1:].repeat(b, 1)).sum(-1).view(b, n)
                    out[c0 : c0 + b, l0 : l0 + n] = (first_tok + later).cpu()
        return out

    def label_embeddings(self, labels: Sequence[str], template: str = LABEL_TEMPLATE) -> torch.Tensor:
        """[L, D] text embeddings of the labels' sentences ("the sound of {label}"): what zero-shot scores against
        and what Santa over the labels mixes in. The last LABEL_CACHE_SIZE label sets are remembered."""
        labels = _label_list(labels)
        key = (id(self.encoder), template, tuple(labels))
        hit = self._label_cache.get(key)
        if hit is not None and hit[0] is self.encoder:  # the same encoder, not a new one at a reused id
            return hit[1]
        emb = self.encoder.embed_text([label_prompt(l, template) for l in labels])
        while len(self._label_cache) >= LABEL_CACHE_SIZE:
            self._label_cache.pop(next(iter(self._label_cache)), None)
        self._label_cache[key] = (self.encoder, emb)
        return emb

    @torch.inference_mode()
    def zero_shot(self, audio_embeddings: torch.Tensor, labels: Sequence[str],
                  template: str = LABEL_TEMPLATE) -> list[dict[str, float]]:
        _check_template(template)
        labels = _label_list(labels)
        text = self.label_embeddings(labels, template).to(audio_embeddings.device)
        scale = getattr(self.encoder, "logit_scale", 100.0)
        probs = torch.softmax(scale * F.normalize(audio_embeddings.float(), dim=-1) @ text.T, dim=-1)
        return [dict(zip(labels, map(float, row))) for row in probs]

    # ------------------------------------------------------------------ Santa evidence and your own bank
    def explain(self, clip=None, santa: float | None = None, top: int = 5, sr: int | None = None,
                audio_embeddings: torch.Tensor | None = None) -> Evidence | list[Evidence]:
        """What Santa leaned on: the top bank captions with their weights, lambda, and how familiar the clip is.

        Returns an ``Evidence`` for one clip, a list for a list of clips or for ``audio_embeddings`` ([N, D]).
        """
        if self.santa is None:
            raise MATSError("This checkpoint has no Santa memory bank, so there is no evidence to show.")
        lam = self.santa_strength(santa)
        many = audio_embeddings is not None or _is_batch(clip)
        audio = audio_embeddings if audio_embeddings is not None else self.embed_clips(clip if many else [clip], sr=sr)
        self.prepare_evidence()
        s = self.config.santa
        out = self.santa.evidence(audio, strength=lam, top=top, top_k=s.top_k, tau=s.tau)
        return out if many else out[0]

    def explain_labels(self, audio_embeddings: torch.Tensor, labels: Sequence[str], santa: float | None = None,
                       top: int = 5, template: str = LABEL_TEMPLATE) -> list[dict]:
        """What classify's Santa over ``labels`` leaned on, per clip: ``{"strength", "labels": [{"text", "weight",
        "similarity"}, ...]}``, the ``top`` labels by weight (``explain`` is the same for bank captions)."""
        lam = self.santa_strength(santa)
        labels = _label_list(labels)
        s = self.config.santa
        sims, pos, weights = label_weights(audio_embeddings.to(self.device), self.label_embeddings(labels, template),
                                           s.top_k, s.tau)
        return [{"strength": lam, "labels": [{"text": labels[int(j)], "weight": round(float(w), 4),
                                              "similarity": round(float(v), 4)}
                                             for v, j, w in list(zip(sims[i], pos[i], weights[i]))[:top]]}
                for i in range(len(sims))]

    @property
    def can_tag(self) -> bool:
        """Whether the encoder names what it hears (a YAMNet encoder's AudioSet tags)."""
        return callable(getattr(self.encoder, "tags", None))

    def tags(self, clip, top: int = 5, sr: int | None = None) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """What the encoder itself hears: the ``top`` AudioSet classes and their scores, best first (the clip's
        YAMNet patch scores averaged). Evidence beside Santa's: the LM's answer starts from this hearing.
        A list of clips gives a list of lists."""
        if not self.can_tag:
            raise ConfigError(f"This model's encoder ({self.config.encoder.get('backend')!r} backend) does not name "
                              "AudioSet classes; tags need a YAMNet encoder, e.g. assets/encoders/yamnet-minilm.")
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 521:
            raise ConfigError(f"top must be a whole number from 1 to 521, got {top!r}.")
        many = _is_batch(clip)
        waves = [check_signal(load_clip(c, sr=sr, target_sr=self.encoder.sample_rate)).waveform
                 for c in (clip if many else [clip])]
        out = self.encoder.tags(waves, top=top)
        return out if many else out[0]

    def prepare_evidence(self) -> None:
        """Noise-free caption embeddings for the familiarity cue. A clean bank (``santa.bank_noise_variance`` 0, as
        shipped) has them already; a noisy one (the paper's) gets its captions embedded once (5,000 captions: ~25 s on
        one CPU thread, then read from the on-disk text cache). After that ``explain`` takes milliseconds."""
        bank = self.santa
        if bank is None or bank.clean is not None:
            return
        if self.config.santa.bank_noise_variance == 0:  # a clean bank (the shipped ones): nothing to embed
            bank.clean = bank.embeddings
            return
        from mats.bank import TextEmbeddingCache

        with bank.clean_lock:  # not MATS.lock: generation goes on meanwhile
            if bank.clean is None:
                bank.clean = TextEmbeddingCache(self.encoder).embed(bank.texts).float().cpu()

    def with_bank(self, bank: SantaBank | None) -> "MATS":
        """This model answering with another Santa bank (e.g. ``mats.bank.caption_bank``): weights, LM and lock are
        shared, nothing is copied, and the original keeps its own bank."""
        view = copy.copy(self)
        view.santa = bank
        return view

    # Sentences that check two encoders share a text space (any wording works; these span the domains).
    _TEXT_PROBES = ("a dog barks", "a man speaks", "a piano plays a slow melody", "rain falls on a roof",
                    "a high-pitched beep repeats")

    def with_encoder(self, encoder) -> "MATS":
        """This model listening through another audio tower that shares its text tower, e.g. a *validation
        encoder* fit without the clips that settings are chosen on. The mapper and LM only ever saw text
        embeddings, so any audio side aligned to the same text space fits them; one aligned elsewhere does not,
        and is refused. A view, like ``with_bank``: nothing is copied and the original keeps its encoder."""
        if encoder.dim != self.encoder.dim:
            raise ConfigError(f"the encoder embeds into {encoder.dim} dimensions, this model's into "
                              f"{self.encoder.dim}; use an encoder aligned to the same text tower.")
        mine = self.encoder.embed_text(list(self._TEXT_PROBES)).float().cpu()
        theirs = encoder.embed_text(list(self._TEXT_PROBES)).float().cpu()
        cos = float((mine * theirs).sum(-1).min())
        if cos < 0.999:
            raise ConfigError(f"the encoder's text tower differs from this model's (probe sentences agree only to "
                              f"cosine {cos:.3f}); the mapper was trained on this model's text space, so use an "
                              "encoder aligned to the same locked text tower.")
        view = copy.copy(self)
        view._modules = dict(self._modules)  # a shallow copy shares nn.Module's registry; the view needs its own
        view.encoder = encoder
        return view

    # ------------------------------------------------------------------ streaming
    def stream(self, clip, task: str, question: str | None = None, santa: float | None = None,
               sr: int | None = None, audio_embedding: torch.Tensor | None = None,
               labels: Sequence[str] | None = None, **gen) -> Iterator[str]:
        """Yield the growing answer text as tokens arrive; the last text yielded is the answer.

        With one beam (greedy or sampling) the text only grows. Hugging Face streamers do not support beam
        search, so with several beams each step yields the best-scoring hypothesis so far, which may still
        be revised, and the finished beam search's answer last: the first words show after one step
        instead of after the whole search.
        ``audio_embedding`` ([1, D] from ``embed_clips``) skips decoding and encoding the clip again.
        ``labels``: Santa mixes in these labels' sentences, not bank captions (as ``classify`` with a label set).
        """
        audio = audio_embedding if audio_embedding is not None else self.embed_clips([clip], sr=sr)
        z = self.condition(audio, santa, labels=labels)
        instruction = instruction_for(task, question)
        beams = self._gen_kwargs(**gen)["num_beams"]
        yield from stream_answer(
            lambda streamer, **kw: self.generate_from_embeddings(z, [instruction], streamer=streamer, **kw)[0],
            self.tokenizer, beams, gen)

    def stream_caption(self, clip, **kw) -> Iterator[str]:
        return self.stream(clip, "caption", **kw)

    def stream_classify(self, clip, **kw) -> Iterator[str]:
        return self.stream(clip, "classify", **kw)

    def stream_ask(self, clip, question: str, **kw) -> Iterator[str]:
        return self.stream(clip, "ask", question=question, **kw)


def _load_mapper_state(path: Path) -> dict:
    """mapper.safetensors as tensors; a damaged file is a CheckpointError that names it."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as e:
        raise CheckpointError(
            f"{path} is damaged ({str(e)[:200]}): it is not a readable safetensors file. Download or copy the "
            "checkpoint again, or re-save it with save_pretrained."
        ) from e


def _refuse_pickled_adapter(adapter: Path) -> None:
    """LoRA weights saved only as a pickle (``adapter_model.bin``): refused, as pickled LM weights are (a pickle can
    run code when loaded), before PEFT would hand it to torch.load."""
    if (adapter / "adapter_model.safetensors").is_file():
        return
    pickles = sorted(p.name for p in adapter.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{adapter} holds only pickled adapter weights ({', '.join(pickles)}) and no adapter_model.safetensors. "
            "mats never loads pickles (they can run code); convert them where you trust them: "
            "PeftModel.from_pretrained(base_lm, adapter_folder).save_pretrained(adapter_folder, "
            "safe_serialization=True)."
        )
    raise CheckpointError(f"{adapter}/adapter_model.safetensors is missing: the config says LoRA was trained. "
                          "Download or copy the checkpoint again.")


def _label_list(labels) -> list[str]:
    """A label set as a clean list: one comma-separated string is split (iterating it would score the labels
    'd', 'o', 'g'), blanks are dropped, and an empty set is a MATSError."""
    if isinstance(labels, str):
        labels = labels.split(",")
    labels = [str(l).strip() for l in labels if l is not None and str(l).strip()]
    if not labels:
        raise MATSError("no labels given: type a comma-separated list such as 'dog, rain, siren'")
    return labels


def _santa_bank_labels(santa_bank: str, labels: list[str] | None) -> list[str] | None:
    """The labels Santa should mix in (None: the checkpoint's caption bank); a bad choice is a MATSError."""
    if santa_bank not in SANTA_BANKS:
        raise MATSError(f"santa_bank must be one of {', '.join(SANTA_BANKS)}, got {santa_bank!r}.")
    return labels if santa_bank == "labels" else None


def _check_template(template) -> None:
    if not isinstance(template, str) or "{label}" not in template:
        raise MATSError(f"The label template must be text containing {{label}}, like '{LABEL_TEMPLATE}'; "
                        f"got {template!r}.")
    try:
        template.format(label="x")
    except (KeyError, IndexError, ValueError) as e:
        raise MATSError(f"The label template {template!r} may hold only {{label}} in braces ({e!r}).") from e


def _is_batch(clip) -> bool:
    return isinstance(clip, list)


def _drop_load_flags(path: Path) -> None:
    """transformers writes how this process loaded the tokenizer (``is_local``, ``local_files_only``) into its
    saved config; a checkpoint read elsewhere (a Hub download) must not inherit them."""
    if path.is_file():
        cfg = json.loads(path.read_text())
        if cfg.keys() & {"is_local", "local_files_only"}:
            for key in ("is_local", "local_files_only"):
                cfg.pop(key, None)
            path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")

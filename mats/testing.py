"""Tiny random models built in code, for tests and for checking an install with no downloads.

Everything here is random and tiny (milliseconds to build). `mats tiny OUT` writes a complete tiny
checkpoint a user can load with ``MATS.from_pretrained(OUT)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

WORDS = (
    "a dog barks loudly while birds chirp in the background rain falls on a roof people talk and laugh "
    "a car engine idles then drives away music plays with drums and guitar a man speaks water runs "
    "wind blows through trees a siren wails in the distance footsteps on gravel a door creaks open "
    "what is making the sound yes no the sound of an animal vehicle machine baby cries cat meows"
).split()
CAPTIONS = [
    "a dog barks loudly", "rain falls on a roof", "people talk and laugh", "a car engine idles",
    "music plays with drums and guitar", "a man speaks", "water runs", "wind blows through trees",
    "a siren wails in the distance", "footsteps on gravel", "a door creaks open", "birds chirp",
    "a baby cries", "a cat meows", "a car drives away", "drums play loudly",
]
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer(special: list[str], vocab_size: int = 300, chat: bool = False):
    """A byte-level BPE fitted on a small word list: real tokenizer behaviour, no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [" ".join(WORDS)] + CAPTIONS
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    return fast


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer(["<|endoftext|>"])
    tok.eos_token = tok.bos_token = tok.unk_token = "<|endoftext|>"
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                     initializer_range=0.2)  # larger than GPT-2's 0.02 so tiny logits can move
    return GPT2LMHeadModel(cfg).eval(), tok


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], chat=True)
    tok.eos_token = "<|im_end|>"
    tok.bos_token = "<|im_start|>"
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      initializer_range=0.2)
    return LlamaForCausalLM(cfg).eval(), tok


def tiny_clap(seed: int = 0):
    """Tiny ClapModel that works with the real 64-mel extractor (48 kHz, 10 s windows)."""
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    tok = tiny_tokenizer(["<s>", "<pad>", "</s>", "<unk>"])
    tok.bos_token, tok.pad_token, tok.eos_token, tok.unk_token = "<s>", "<pad>", "</s>", "<unk>"
    audio = ClapAudioConfig(spec_size=256, num_mel_bins=64, patch_size=16, patch_stride=[16, 16],
                            patch_embeds_hidden_size=32, hidden_size=64, depths=[1, 1],
                            num_attention_heads=[2, 2], window_size=4, enable_fusion=False)
    text = ClapTextConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=130, pad_token_id=tok.pad_token_id,
                          projection_dim=32)
    torch.manual_seed(seed)
    cfg = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=32)
    model = ClapModel(cfg).eval()
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, max_length_s=10, truncation="rand_trunc",
                              padding="repeatpad")
    return model, fe, tok


def tiny_clip(seconds: float = 2.0, sr: int = 16000, freq: float = 440.0, seed: int = 0) -> tuple[int, np.ndarray]:
    """A (sample_rate, int16 array) clip as Gradio hands it over: a tone plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.shape)
    return sr, (wave * 32767).astype(np.int16)


def tiny_config(lm: str = "gpt2"):
    from mats.config import GenerationConfig, LoraConfig, MapperConfig, MATSConfig, SantaConfig

    return MATSConfig(
        encoder={"backend": "clap", "id": "./encoder"},
        lm={"id": "./lm"},
        prompt_style="auto",
        mapper=MapperConfig(kind="transformer", prefix_length=4, clip_length=4, width=32, num_layers=1, num_heads=2),
        lora=LoraConfig(r=4, alpha=8, dropout=0.0),
        santa=SantaConfig(bank_size=64, n_clusters=4, top_k=4, tau=10.0, strength=0.3),
        generation=GenerationConfig(num_beams=2, max_new_tokens=8),
        train_info={"name": f"tiny random {lm} (for tests only)"},
    )


def write_tiny_parts(out: str | Path, lm: str = "gpt2", seed: int = 0) -> Path:
    """Write tiny encoder/ and lm/ folders (the 'base models' a tiny checkpoint references)."""
    out = Path(out)
    model, fe, tok = tiny_clap(seed)
    model.save_pretrained(out / "encoder")
    fe.save_pretrained(out / "encoder")
    tok.save_pretrained(out / "encoder")
    lm_model, lm_tok = {"gpt2": tiny_gpt2, "llama": tiny_llama}[lm](seed)
    lm_model.save_pretrained(out / "lm")
    lm_tok.save_pretrained(out / "lm")
    return out


def make_tiny_checkpoint(out: str | Path, lm: str = "gpt2", santa: bool = True, seed: int = 0,
                         encoder: str = "clap") -> Path:
    """A complete, loadable tiny MATS checkpoint (random weights) in ``out``. ``encoder="yamnet"``: a tiny random
    YAMNet encoder (mats.encoders.audioset) instead of the tiny CLAP, so AudioSet tags work too."""
    from mats.model import MATS
    from mats.santa import SantaBank

    if lm not in ("gpt2", "llama"):
        raise ValueError(f"tiny LM must be 'gpt2' or 'llama', got '{lm}'")
    if encoder not in ("clap", "yamnet"):
        raise ValueError(f"tiny encoder must be 'clap' or 'yamnet', got '{encoder}'")
    out = write_tiny_parts(out, lm, seed)
    config = tiny_config(lm)
    if encoder == "yamnet":
        from mats.encoders.audioset import AudioSetEncoder

        AudioSetEncoder.tiny(seed).save_pretrained(out / "yamnet-encoder")
        config.encoder = {"backend": "yamnet", "path": "./yamnet-encoder"}
    torch.manual_seed(seed)
    model = MATS.build(config, device="cpu", base_dir=out)
    if santa:
        emb = model.encoder.embed_text(CAPTIONS)
        s = config.santa
        model.santa = SantaBank.build(emb, CAPTIONS, n_clusters=s.n_clusters, top_k=s.top_k, tau=s.tau,
                                      strength=s.strength, noise_variance=config.noise_variance, seed=seed)
    model.save_pretrained(out)
    return out

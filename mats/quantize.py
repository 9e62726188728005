"""Faster CPU inference: the LM's Linear layers with fp16 weights in fbgemm's packed layout (issue 15).

Decoding one token reads every LM weight once, and transformers' eager fp32 Linear spends SmolLM2-135M's
step (54 ms on two cores) mostly reading 540 MB of fp32 weights. fbgemm, PyTorch's x86 CPU backend, can
keep a Linear's weight in fp16, packed for its matrix kernel, and multiply it with fp32 activations
(``torch.ao``'s dynamic quantisation with ``float16_dynamic_qconfig``): half the bytes, a faster kernel, no
calibration data, no compile step, about a second of packing after the load.

Measured on the example and validation clips (bench/cpu_speed.py has the speed; the README the quality):

    kind of Linear (SmolLM2, every layer)   decoding step   KL to fp32 per step   same top token
    fp32 (transformers eager)               54 ms           -                     -
    fp16 weights, fbgemm (this module)      22 ms           0.0000                100 %
    int8 weights, int8 activations          20 ms           0.049                 93 %

Int8 is no faster and is not exact: it quantises each step's activations with one scale, and one scale over
a MATS prompt crushes the audio prefix, whose embeddings are ~14x smaller than the text tokens' (the model
went deaf: first-token KL 1.0-2.5 nats); even decoding only, it cost 2-5 points of held-out accuracy. The
fp16 weights' rounding (2^-11 relative) leaves greedy answers as they were.

Tiny LMs (the 4-layer GPT-2 of MATS-GPT2-mini) are bound by per-layer overhead, not by weight reads, and
stay fp32 under ``auto``, as does any LM on a GPU, or on a CPU without fbgemm (ARM).
"""
from __future__ import annotations

import warnings

from mats.errors import ConfigError

QUANTIZE_MODES = ("auto", "fp16", "none")
NO_QUANTIZE_HELP = ("keep the LM's weights in fp32 on a CPU (default: a large LM's Linear layers with fp16 weights "
                    "in fbgemm's layout, 2-3x faster, same answers)")
# Below this many LM parameters decoding is bound by per-layer overhead, so packing would gain nothing
# (MATS-GPT2-mini, 4.2 M: 4.4 ms/token either way).
MIN_PARAMETERS = 50_000_000


def quantize_flag(args) -> str:
    """The ``quantize=`` a command line asked for: its ``--no-quantize`` flag (absent: the default, ``auto``)."""
    return "none" if getattr(args, "no_quantize", False) else "auto"


def quantize_mode(quantize: str | bool | None) -> str:
    """Normalise the user's switch: True -> 'fp16', False/None -> 'none'; anything else is a ConfigError."""
    if quantize is True:
        return "fp16"
    if quantize is False or quantize is None:
        return "none"
    mode = str(quantize).lower()
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE_MODES)} (got {quantize!r}).")
    return mode


def has_fbgemm() -> bool:
    import torch

    return "fbgemm" in torch.backends.quantized.supported_engines


def wants_packing(mode: str, lm, device) -> bool:
    """Whether ``mode`` asks to pack this LM on this device: a CPU only; ``auto`` also skips tiny LMs and CPUs
    without fbgemm, where ``fp16`` is a ConfigError instead."""
    import torch

    if mode == "none" or torch.device(device).type != "cpu":
        return False
    if not has_fbgemm():
        if mode == "fp16":
            raise ConfigError("fp16 packed weights need PyTorch's fbgemm backend (x86 CPUs); load with quantize='none'.")
        return False
    return mode == "fp16" or sum(p.numel() for p in lm.parameters()) >= MIN_PARAMETERS


def pack_lm(lm):
    """The LM for CPU inference: LoRA merged into its weights, every ``nn.Linear`` an fbgemm fp16 Linear.

    Merging first matters twice: the adapter's two small matmuls per layer would otherwise stay in eager fp32
    beside the packed base, and the packed weight is then the merged one, rounded once. Not trainable.
    """
    import torch
    from torch.ao.quantization import float16_dynamic_qconfig, quantize_dynamic

    if hasattr(lm, "merge_and_unload"):  # a PEFT model
        lm = lm.merge_and_unload()
    with warnings.catch_warnings():
        # torch.ao's eager quantisation is deprecated in favour of torchao, whose fp16/int8 weight-only paths
        # need torch.compile to be fast on a CPU (a compile a fresh Space would pay); nothing a user can act on.
        warnings.simplefilter("ignore")
        return quantize_dynamic(lm.eval(), {torch.nn.Linear: float16_dynamic_qconfig}, dtype=torch.float16,
                                inplace=True)

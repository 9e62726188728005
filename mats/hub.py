"""Checkpoints on the Hugging Face Hub: resolve (local folder or ``user/repo``), model card, push.

Tokens come from the usual places (``HF_TOKEN``, ``huggingface-cli login``); nothing here reads or
prints them.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from mats.audio import AUDIO_SUFFIXES
from mats.config import MATSConfig
from mats.errors import CheckpointError
from mats.paths import resolve_relative

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PAPER = "https://arxiv.org/abs/2502.13433"
CITATION = """@inproceedings{wang2025mats,
  title     = {MATS: An Audio Language Model under Text-only Supervision},
  author    = {Wang, Wen and Hou, Ruibing and Chang, Hong and Shan, Shiguang and Chen, Xilin},
  booktitle = {Proceedings of the 42nd International Conference on Machine Learning (ICML)},
  year      = {2025},
  url       = {https://arxiv.org/abs/2502.13433}
}"""


def looks_like_checkpoint(arg: str) -> bool:
    """Whether a command-line word names a model rather than a clip or a question: a folder with config.json, or a
    Hub id ('user/name') that is not a path on disk."""
    path = Path(arg).expanduser()
    if path.is_dir():
        return (path / "config.json").is_file()
    return not path.exists() and bool(HUB_ID.match(arg)) and path.suffix.lower() not in AUDIO_SUFFIXES


def resolve_checkpoint(name_or_path, revision: str | None = None) -> Path:
    """A local folder as is; a Hub id downloaded (or taken from the cache) with snapshot_download."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; a MATS checkpoint is a folder with config.json.")
    name = str(name_or_path)
    if not HUB_ID.match(name):
        raise CheckpointError(f"'{name}' is neither a checkpoint folder nor a Hub id like 'user/mats-gpt2'.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, revision=revision))
    except LocalEntryNotFoundError as e:
        raise CheckpointError(
            f"'{name}' is not a local folder and could not be downloaded (offline or HF_HUB_OFFLINE=1). "
            "Connect to the internet once, or pass the path of a downloaded checkpoint folder."
        ) from e
    except HfHubHTTPError as e:
        raise CheckpointError(f"could not download '{name}' from the Hub: {e}. Check the id and your access.") from e


def _link(model_id: str) -> str:
    return f"[{model_id}](https://huggingface.co/{model_id})" if HUB_ID.match(model_id or "") else f"`{model_id}`"


def model_card_text(config: MATSConfig, repo_id: str | None = None, eval_results: dict | None = None) -> str:
    """Model card (README.md): what it is, what it was trained on, how well it did, how to use it."""
    from huggingface_hub import ModelCard, ModelCardData

    enc_id = config.encoder.get("id") or config.encoder.get("path") or config.encoder.get("backend")
    lm_id = config.lm.get("id")
    info = config.train_info or {}
    data = ModelCardData(
        license=info.get("license", "cc-by-nc-4.0"),
        library_name="mats",
        pipeline_tag="audio-text-to-text",
        tags=["audio-text-to-text", "mats", "audio-captioning", "text-only-training"],
        base_model=[m for m in (enc_id, lm_id) if isinstance(m, str) and HUB_ID.match(m)] or None,
    )
    g, m, s = config.generation, config.mapper, config.santa
    sources = info.get("sources", [])
    src_lines = "\n".join(f"| {x.get('name', x.get('path'))} | {x.get('samples', '?')} |" for x in sources) or "| (not recorded) | |"
    metrics = {**({"val_loss": info["val_loss"]} if "val_loss" in info else {}), **(eval_results or info.get("eval", {}))}
    metric_lines = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |"
                             for k, v in metrics.items()) or "| (none measured yet) | |"
    usage_id = repo_id or "path/to/this/folder"
    steps = f"{info['steps']} steps" if "steps" in info else "an unrecorded number of steps"
    prev = info.get("init_from")
    if prev:  # a run that went on from an earlier checkpoint: say what that one had learnt
        steps += (f", continuing `{prev.get('source')}` (itself {prev.get('steps', '?')} steps, val loss "
                  f"{prev['val_loss']:.3f})" if isinstance(prev.get("val_loss"), float) else f", continuing `{prev.get('source')}`")
    body = f"""
# MATS: {info.get('name', repo_id or 'audio-language model trained with text only')}

An audio-language model in the style of **MATS** ([paper]({PAPER}), ICML 2025): it captions, tags and answers
questions about audio, but was trained on **text only**. A frozen audio-text encoder maps captions (training) and
clips (inference) into one space; Santa mixes each audio embedding with similar caption embeddings from a memory bank
to bridge the modality gap.

| part | value |
|---|---|
| audio-text encoder | {_link(str(enc_id))} (`{config.encoder.get('backend')}` backend, frozen) |
| language model | {_link(str(lm_id))} ({config.train_lm}{', LoRA r=%d alpha=%d dropout=%g' % (config.lora.r, config.lora.alpha, config.lora.dropout) if config.train_lm == 'lora' else ''}) |
| mapper | {m.kind}, {m.num_layers} layers, width {m.width}, clip length {m.clip_length}, prefix {m.prefix_length} |
| noise variance | {config.noise_variance} |
| Santa | bank {s.bank_size}, {s.n_clusters} clusters, top {s.top_k}, tau {s.tau}, default lambda {s.strength}; classify with given labels mixes in the nearest labels' sentences instead |
| decoding | beams {g.num_beams}, no_repeat_ngram {g.no_repeat_ngram_size}, repetition penalty {g.repetition_penalty}, max {g.max_new_tokens} new tokens |

## Training data (text only)

| source | samples |
|---|---|
{src_lines}

Trained for {steps}. Hyper-parameters: `{json.dumps(info.get('hyperparameters', {}))}`

## Results

| metric | value |
|---|---|
{metric_lines}

## Usage

```python
from mats import MATS
m = MATS.from_pretrained("{usage_id}")
print(m.caption("clip.wav"))
print(m.classify("clip.wav", labels=["dog", "rain", "siren"]))
print(m.ask("clip.wav", "What is making the sound?"))
```

or `mats caption {usage_id} clip.wav`.

## Citation

```bibtex
{CITATION}
```
"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body).content


def write_model_card(config: MATSConfig, directory, repo_id: str | None = None, eval_results: dict | None = None) -> Path:
    path = Path(directory) / "README.md"
    path.write_text(model_card_text(config, repo_id, eval_results))
    return path


def prepare_upload(model, folder: Path, repo_id: str) -> Path:
    """Save the checkpoint for upload; local encoder/LM folders travel inside it (Hub users can't see our disk)."""
    model.save_pretrained(folder, model_card=False)
    config = MATSConfig.load(folder)
    for key, sub in (("encoder", "encoder"), ("lm", "lm")):
        spec = dict(getattr(config, key))
        for field in ("id", "path"):
            value = spec.get(field)
            if not isinstance(value, str) or HUB_ID.match(value) or value.startswith("pypi:"):
                continue
            if value == f"./{sub}" and (folder / sub).is_dir():
                continue  # already inside (e.g. a fully trained LM written by save_pretrained)
            local = Path(resolve_relative({field: value}, folder)[field])  # save_pretrained wrote it relative to folder
            if local.resolve().is_dir():
                shutil.copytree(local.resolve(), folder / sub, dirs_exist_ok=True)
                spec[field] = f"./{sub}"
        setattr(config, key, spec)
    config.save(folder)
    write_model_card(config, folder, repo_id=repo_id)
    return folder


def push_to_hub(model, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str = "Upload MATS checkpoint") -> str:
    """Create the repo (if needed) and upload the checkpoint folder with a generated model card."""
    from huggingface_hub import HfApi

    if not HUB_ID.match(repo_id):
        raise CheckpointError(f"'{repo_id}' is not a Hub repo id; use the form 'user/mats-gpt2'.")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = prepare_upload(model, Path(tmp), repo_id)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    return getattr(info, "commit_url", str(info))

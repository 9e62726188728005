"""Which MATS checkpoints the demo offers, and a thread-safe lazy cache of the loaded models.

Nothing is loaded at start: the page must open even when no checkpoint exists yet, and a Space should
not pay for a model nobody uses. The first request for a model loads it (once, even when several users
ask at the same moment); later requests share the cached instance. Generation on one model is
serialised by ``MATS.lock``, so sharing is safe.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mats.errors import CheckpointError
# The shipped offline defaults, relative to the repository root (app.py's). The app knows the repository's layout;
# the library does not. The GPT-2 one first so Compare pits it against the LLaMA one.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINTS = ("assets/mats-gpt2-mini", "assets/mats-smollm2")

PAPER_URL = "https://arxiv.org/abs/2502.13433"
# The model menu opens on the strongest shipped checkpoint (README: "How well they hear"); the others follow.
STRONGEST_DEFAULT = "assets/mats-smollm2"
DEMO_DEFAULTS = tuple(sorted(DEFAULT_CHECKPOINTS, key=lambda p: p != STRONGEST_DEFAULT))

HOW_TO_GET_A_MODEL = (
    "Start the demo with a checkpoint: `python app.py --model path/to/checkpoint` or a Hub id "
    "(`--model user/mats-gpt2`, or set `MATS_MODELS=user/a,user/b` on a Space). "
    "To check the install without any download: `mats tiny /tmp/mats-tiny && python app.py --model /tmp/mats-tiny` "
    "(random weights: the text is gibberish). The default checkpoints live in "
    + " and ".join(f"`{p}`" for p in DEFAULT_CHECKPOINTS)
    + " once the training scripts in `scripts/` have made them."
)


@dataclass
class ModelChoice:
    """One model the user can pick: where it comes from and, if it cannot be used, why."""

    source: str  # folder or Hub id, as given: the dropdown's (and the API's) value
    label: str  # short name shown in the page
    problem: str | None = None  # None = looks usable (it is only really tested on first load)
    folder: Path | None = None  # folder holding config.json: the checkpoint, or a Hub id's cached snapshot
    local: bool = False  # True: a checkpoint folder on disk; False: a Hub id (mats resolves cache/offline)

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def location(self) -> str:
        """What to load: the resolved folder, or the Hub id."""
        return str(self.folder) if self.local and self.folder is not None else self.source


@dataclass
class LoadRecord:
    model: object
    seconds: float
    device: str


@dataclass
class ModelDefaults:
    """What the page's controls start at for a checkpoint, read from its config.json (no loading)."""

    santa: float = 0.3
    has_santa: bool = True
    num_beams: int = 4
    max_new_tokens: int = 30
    temperature: float = 1.0
    lm: str = "?"
    encoder: str = "?"


def _is_hub_id(source: str) -> bool:
    from mats.hub import HUB_ID

    return bool(HUB_ID.match(source))


def _cached_hub_folder(repo_id: str) -> Path | None:
    """The local snapshot holding ``config.json`` for a Hub id, if it was downloaded before."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # malformed id or cache: treat as not cached
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def inspect_source(source: str, base: Path | None = None) -> ModelChoice:
    """Cheap checks (no model loading) that say whether a --model value can possibly work.

    A relative folder is looked up in the working directory, then under ``base`` (if given).
    """
    source = str(source).strip()
    path = Path(source).expanduser()
    label = path.name or source
    if not path.exists() and base is not None and not path.is_absolute() and (base / path).exists():
        path = base / path
    if path.is_dir():
        if not (path / "config.json").is_file():
            return ModelChoice(source, label, f"{source} has no config.json, so it is not a MATS checkpoint folder.")
        return ModelChoice(source, label, None, path, local=True)
    if path.exists():
        return ModelChoice(source, label, f"{source} is a file; a MATS checkpoint is a folder with config.json.")
    if _is_hub_id(source):
        cached = _cached_hub_folder(source)
        if cached is None and _offline():
            return ModelChoice(source, source, f"{source} is not in the local Hub cache and HF_HUB_OFFLINE is set.")
        return ModelChoice(source, source, None, cached)
    return ModelChoice(source, label, f"{source} does not exist (not a folder, not a Hub id like user/repo).")


def read_defaults(choice: ModelChoice) -> ModelDefaults:
    """Slider defaults from the checkpoint's config.json; library defaults when it is not on disk yet."""
    from mats.config import MATSConfig

    if choice.folder is None:
        return ModelDefaults()
    try:
        cfg = MATSConfig.load(choice.folder)
    except Exception:  # shown as a load error later; the page still needs some defaults now
        return ModelDefaults()
    folder = choice.folder
    return ModelDefaults(
        santa=float(cfg.santa.strength),
        has_santa=(folder / "santa.safetensors").exists() or (folder / "santa.json").exists(),
        num_beams=int(cfg.generation.num_beams),
        max_new_tokens=int(cfg.generation.max_new_tokens),
        temperature=float(cfg.generation.temperature),
        lm=str(cfg.lm.get("id", "?")),
        encoder=str(cfg.encoder.get("id") or cfg.encoder.get("path") or cfg.encoder.get("backend", "?")),
    )


def _unique_labels(choices: list[ModelChoice]) -> None:
    """Two folders called 'checkpoint' must not look the same in a dropdown."""
    seen: dict[str, int] = {}
    for c in choices:
        seen[c.label] = seen.get(c.label, 0) + 1
    for c in choices:
        if seen[c.label] > 1:
            c.label = c.source


def where(model, fallback: str = "cpu") -> str:
    """Where and how a model runs, for status lines: "cpu · fp16 packed", "cuda:0 · bfloat16"."""
    device = str(getattr(model, "device", fallback))
    precision = getattr(model, "precision", None)
    return f"{device} · {precision}" if precision else device


def _default_loader(source: str, device, quantize: str = "auto"):
    from mats.model import MATS

    return MATS.from_pretrained(source, device=device, quantize=quantize)


@dataclass
class ModelRegistry:
    """The demo's only shared state: the model choices and the lazily loaded models."""

    choices: list[ModelChoice]
    device: str | None = None  # None = cuda if available, else cpu (mats' default)
    loader: Callable[[str, object], object] = _default_loader
    _loaded: dict[str, LoadRecord] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_sources(cls, sources: list[str] | None, device: str | None = None, quantize: str = "auto",
                     **kw) -> "ModelRegistry":
        """``sources`` empty/None: the default checkpoints that exist (missing ones are silently skipped).
        ``quantize``: as ``MATS.from_pretrained`` ("auto": a large LM's weights fp16-packed on a CPU; "none": fp32)."""
        kw.setdefault("loader", functools.partial(_default_loader, quantize=quantize))
        if sources:
            choices = [inspect_source(s) for s in sources]
        else:  # defaults are folders: one that is missing is skipped (never mistaken for a Hub id)
            choices = [inspect_source(s, base=REPO_ROOT) for s in DEMO_DEFAULTS]
            choices = [c for c in choices if c.usable and c.local]
        _unique_labels(choices)
        return cls(choices=choices, device=device, **kw)

    @property
    def device_name(self) -> str:
        """Where models go: the --device given, else mats' default (cuda if available, else cpu)."""
        if self.device:
            return str(self.device)
        from mats.lm import default_device

        return default_device().type

    # -- lookup --------------------------------------------------------------------------------------
    @property
    def usable(self) -> list[ModelChoice]:
        return [c for c in self.choices if c.usable]

    @property
    def problems(self) -> list[ModelChoice]:
        return [c for c in self.choices if not c.usable]

    def dropdown_choices(self) -> list[tuple[str, str]]:
        return [(c.label, c.source) for c in self.usable]

    def choice(self, source: str | None) -> ModelChoice:
        if not self.usable:
            raise CheckpointError("No usable model is configured. " + HOW_TO_GET_A_MODEL)
        if not source:
            raise CheckpointError("Pick a model in the 'Model' menu first.")
        for c in self.choices:
            if c.source == source or c.label == source:
                if c.problem:
                    raise CheckpointError(f"Model {c.label} cannot be used: {c.problem}")
                return c
        names = ", ".join(c.label for c in self.usable)
        raise CheckpointError(f"Unknown model '{source}'. Choose one of: {names}.")

    def label(self, source: str | None) -> str:
        for c in self.choices:
            if c.source == source:
                return c.label
        return str(source)

    def defaults(self, source: str | None) -> ModelDefaults:
        try:
            return read_defaults(self.choice(source))
        except CheckpointError:
            return ModelDefaults()

    # -- loading -------------------------------------------------------------------------------------
    def is_loaded(self, source: str) -> bool:
        return self.choice(source).source in self._loaded

    def get(self, source: str | None):
        """The loaded model for ``source`` (loading it on first use). Raises CheckpointError/MATSError."""
        return self.get_record(source).model

    def get_record(self, source: str | None) -> LoadRecord:
        key = self.choice(source).source
        record = self._loaded.get(key)
        if record is not None:
            return record
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        # Per-model lock: two users asking for the same new model load it once; other models are not blocked.
        with lock:
            record = self._loaded.get(key)
            if record is None:
                start = time.perf_counter()
                model = self.loader(self.choice(key).location, self.device)
                record = LoadRecord(model, time.perf_counter() - start, where(model, self.device or "cpu"))
                self._loaded[key] = record
        return record

    def preload(self) -> None:
        """Load every usable model now (ZeroGPU wants models loaded at start, outside GPU calls).

        A model that fails to load is marked unusable with the reason instead of stopping the app.
        """
        for c in self.usable:
            try:
                model = self.get(c.source)
                if hasattr(model, "prepare_evidence"):
                    model.prepare_evidence()  # the Santa evidence's first answer is then as fast as the others
            except Exception as e:  # the page must still open; the reason shows in the About panel
                c.problem = f"failed to load: {e}"

    def status_lines(self) -> list[str]:
        """One Markdown line per model: loaded (where, how long it took), waiting, or unusable and why."""
        lines = []
        for c in self.choices:
            rec = self._loaded.get(c.source)
            if rec is not None:
                lines.append(f"- **{c.label}**: loaded on `{rec.device}` in {rec.seconds:.1f} s (`{c.source}`)")
            elif c.usable:
                lines.append(f"- **{c.label}**: loads on first use (`{c.source}`)")
            else:
                lines.append(f"- **{c.label}**: unavailable. {c.problem}")
        return lines or ["- none. " + HOW_TO_GET_A_MODEL]

"""The text-only trainer on tiny random models: loss falls, resume is exact, DDP runs, the cache is hit."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mats import MATS
from mats.testing import tiny_clip, write_tiny_parts
from mats.train import load_run_config, train

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ROOT / "tests" / "fixtures" / "data" / "captions.txt"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return write_tiny_parts(tmp_path_factory.mktemp("parts"), lm="gpt2")


def _run(parts, out, steps=30, extra=()):
    overrides = [f"model.encoder.id={parts / 'encoder'}", f"model.lm.id={parts / 'lm'}", f"train.out={out}",
                 f"train.max_steps={steps}", f"data.sources=[{{\"path\": \"{CAPTIONS}\"}}]", *extra]
    return load_run_config(ROOT / "configs" / "tiny.yaml", overrides)


def test_loss_falls_and_checkpoint_captions(parts, tmp_path):
    run = _run(parts, tmp_path / "run", steps=30)
    losses = []
    final = train(run, on_step=lambda s, l: losses.append(l), cache_root=str(tmp_path / "cache"), progress=False)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    log = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in log) and any("samples_per_s" in r for r in log)
    m = MATS.from_pretrained(final, device="cpu")
    assert isinstance(m.caption(tiny_clip()), str)
    assert m.santa is not None and len(m.santa) > 50  # bank built from the training captions
    info = json.loads((final / "config.json").read_text())["train_info"]
    assert info["train_samples"] > 200 and "val_loss" in info
    resolved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert resolved["train"]["max_steps"] == 30


def test_kill_and_resume_matches_uninterrupted(parts, tmp_path):
    full = []
    train(_run(parts, tmp_path / "a", steps=12, extra=["train.save_every=4"]), on_step=lambda s, l: full.append(l),
          cache_root=str(tmp_path / "cache"), progress=False)

    class Killed(Exception):
        pass

    def kill_at_6(step, loss):
        if step == 6:
            raise Killed  # dies after step 6; last checkpoint is step 4

    first = []
    with pytest.raises(Killed):
        train(_run(parts, tmp_path / "b", steps=12, extra=["train.save_every=4"]),
              on_step=lambda s, l: (first.append(l), kill_at_6(s, l)), cache_root=str(tmp_path / "cache"), progress=False)
    resumed = []
    train(_run(parts, tmp_path / "b", steps=12, extra=["train.save_every=4"]), resume=True,
          on_step=lambda s, l: resumed.append(l), cache_root=str(tmp_path / "cache"), progress=False)
    assert len(resumed) == 8  # steps 5..12 again after the step-4 checkpoint
    assert resumed == pytest.approx(full[4:], rel=1e-5, abs=1e-6)
    assert first[:6] == pytest.approx(full[:6], rel=1e-5, abs=1e-6)


def test_text_cache_embeds_each_text_once(parts, tmp_path):
    from mats.bank import TextEmbeddingCache
    from mats.encoders import load_encoder

    enc = load_encoder({"backend": "clap", "id": str(parts / "encoder")})
    calls = {"n": 0}
    real = enc.embed_text

    def counting(texts):
        calls["n"] += len(texts)
        return real(texts)

    enc.embed_text = counting
    texts = CAPTIONS.read_text().splitlines()
    cache = TextEmbeddingCache(enc, root=tmp_path / "c", batch_size=64)
    first = cache.embed(texts + texts[:10])  # duplicates embedded once
    assert calls["n"] == len(set(texts))
    second = cache.embed(texts)  # second epoch: all hits
    assert calls["n"] == len(set(texts))
    again = TextEmbeddingCache(enc, root=tmp_path / "c").embed(texts)  # a new run reads the disk cache
    assert calls["n"] == len(set(texts))
    assert (second - first[: len(texts)]).abs().max() == 0 and (again - second).abs().max() == 0


def test_bad_config_key_is_named(parts, tmp_path):
    from mats.errors import ConfigError

    with pytest.raises(ConfigError, match="learning_rate"):
        _run(parts, tmp_path, extra=["train.learning_rate=0.1"])


@pytest.mark.slow
def test_two_process_cpu_data_parallel(parts, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "mats", "train", str(ROOT / "configs" / "tiny.yaml"), f"model.encoder.id={parts / 'encoder'}",
           f"model.lm.id={parts / 'lm'}", "train.max_steps=6", f"data.sources=[{{\"path\": \"{CAPTIONS}\"}}]",
           "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(l) for l in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6 or any(r.get("step") == 6 for r in log)
    assert (tmp_path / "ddp" / "model" / "mapper.safetensors").is_file()


@pytest.mark.parametrize("train_lm", ["full", "lora"])
def test_init_from_goes_on_from_a_trained_checkpoint(parts, tmp_path, train_lm):
    import torch

    from mats.errors import ConfigError
    from mats.train import model_from_checkpoint

    extra = [f"model.train_lm={train_lm}", "model.lora.r=8"]
    fresh = []
    first = train(_run(parts, tmp_path / "a", steps=20, extra=extra), on_step=lambda s, l: fresh.append(l),
                  cache_root=str(tmp_path / "cache"), progress=False)
    run = _run(parts, tmp_path / "b", steps=4, extra=extra + [f"train.init_from={first}"])

    m = model_from_checkpoint(run.model, str(first), "cpu")
    a = MATS.from_pretrained(first, device="cpu", dtype=torch.float32)
    for (name, p), q in zip(a.mapper.state_dict().items(), m.mapper.state_dict().values()):
        assert torch.equal(p, q), name
    lm_a, lm_m = dict(a.lm.named_parameters()), dict(m.lm.named_parameters())
    assert all(torch.equal(lm_a[n], lm_m[n]) for n in lm_a)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert any(n.startswith("mapper.") for n in trainable)
    if train_lm == "lora":
        assert any("lora_" in n for n in trainable) and all("lora_" in n for n in trainable if n.startswith("lm."))

    going_on = []
    second = train(run, on_step=lambda s, l: going_on.append(l), cache_root=str(tmp_path / "cache"), progress=False)
    assert going_on[0] < fresh[0]  # it starts from what was learnt, not from random weights
    info = json.loads((second / "config.json").read_text())["train_info"]
    assert info["steps"] == 4 and info["init_from"]["source"] == str(first) and info["init_from"]["steps"] == 20

    with pytest.raises(ConfigError, match="encoder"):
        model_from_checkpoint(_run(parts, tmp_path / "c", extra=extra + ["model.encoder.id=laion/clap-htsat-unfused"]).model,
                              str(first), "cpu")
    with pytest.raises(ConfigError, match="mapper"):
        model_from_checkpoint(_run(parts, tmp_path / "c", extra=extra + ["model.mapper.width=64"]).model,
                              str(first), "cpu")


def test_max_seconds_stops_early_and_still_writes_the_model(parts, tmp_path):
    steps = []
    final = train(_run(parts, tmp_path / "run", steps=500, extra=["train.max_seconds=0"]),
                  on_step=lambda s, l: steps.append(s), cache_root=str(tmp_path / "cache"), progress=False)
    assert steps == [1]  # a limit of 0 s stops after the first step
    info = json.loads((final / "config.json").read_text())["train_info"]
    assert info["steps"] == 1 and info["stopped_early_at_max_seconds"] == 0
    assert isinstance(MATS.from_pretrained(final, device="cpu").caption(tiny_clip(), max_new_tokens=3), str)
    log = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("stopped_early") for r in log)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_config_loads(name, monkeypatch):
    # A recipe the README points at must at least parse into a run: model, data sources and train settings.
    monkeypatch.setenv("MATS_DATA", "/data")
    run = load_run_config(ROOT / "configs" / name)
    assert run.data.sources and run.train.batch_size > 0 and run.model.mapper.prefix_length > 0


def test_train_info_records_data_paths_under_mats_data(tmp_path, monkeypatch):
    # A run's train_info names its sources as the configs write them ($MATS_DATA/...), not this machine's folder, so
    # installing a run into assets/ needs no hand edits; paths elsewhere stay as they are.
    from mats.train import _expand, portable_path

    root = tmp_path / "data"
    monkeypatch.setenv("MATS_DATA", str(root) + "/")
    inside = root / "captions" / "a.csv"
    assert portable_path(inside) == "$MATS_DATA/captions/a.csv"
    assert os.path.normpath(_expand(portable_path(inside))) == str(inside)  # and back
    assert portable_path(tmp_path / "database" / "b.csv") == str(tmp_path / "database" / "b.csv")  # a sibling, not inside
    monkeypatch.delenv("MATS_DATA")
    assert portable_path(inside) == str(inside)

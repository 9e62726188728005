"""Hub: the model card has the fields users need; push uploads a real folder (only the network is faked)."""
import json
from pathlib import Path

import pytest

from mats import MATS
from mats.config import MATSConfig
from mats.hub import model_card_text


def test_model_card_fields(tiny_ckpt_gpt2):
    cfg = MATSConfig.load(tiny_ckpt_gpt2)
    cfg.encoder = {"backend": "clap", "id": "laion/clap-htsat-unfused"}
    cfg.lm = {"id": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    cfg.train_info = {"sources": [{"name": "audiocaps", "samples": 49000}], "val_loss": 2.3456,
                      "hyperparameters": {"lr": 0.0002, "batch_size": 16}, "license": "cc-by-nc-4.0"}
    card = model_card_text(cfg, "me/mats-test", eval_results={"esc50_zero_shot": 0.61})
    for needle in ("audio-text-to-text", "mats", "https://huggingface.co/laion/clap-htsat-unfused",
                   "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct", "audiocaps | 49000", "2.346",
                   "esc50_zero_shot", '"lr": 0.0002', 'MATS.from_pretrained("me/mats-test")', "2502.13433",
                   "@inproceedings", "license: cc-by-nc-4.0", "base_model"):
        assert needle in card, needle
    assert "Trained for an unrecorded number of steps" in card
    cfg.train_info.update(steps=767, init_from={"source": "assets/mats-smollm2", "steps": 879, "val_loss": 2.5951})
    card = model_card_text(cfg, "me/mats-test")
    assert "Trained for 767 steps, continuing `assets/mats-smollm2` (itself 879 steps, val loss 2.595)" in card


def test_push_uploads_complete_folder(tiny_ckpt_gpt2, monkeypatch):
    import huggingface_hub

    calls = {}

    def fake_create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None, **kw):
        calls["create"] = (repo_id, private, exist_ok)

    def fake_upload_folder(self, repo_id, folder_path, commit_message=None, **kw):
        folder = Path(folder_path)
        calls["files"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        calls["config"] = json.loads((folder / "config.json").read_text())
        calls["card"] = (folder / "README.md").read_text()
        # what was uploaded must load as a checkpoint on its own (no references to our disk)
        calls["loaded_prompt"] = MATS.from_pretrained(folder, device="cpu").prompt.style
        return "https://huggingface.co/me/mats-tiny/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    model = MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu")
    url = model.push_to_hub("me/mats-tiny", private=True)
    assert url.endswith("abc")
    assert calls["create"] == ("me/mats-tiny", True, True)
    for f in ("config.json", "mapper.safetensors", "santa.safetensors", "santa.json", "README.md",
              "adapter/adapter_config.json", "encoder/config.json", "lm/config.json"):
        assert f in calls["files"], f
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in calls["files"])
    assert calls["config"]["encoder"]["id"] == "./encoder" and calls["config"]["lm"]["id"] == "./lm"
    assert 'MATS.from_pretrained("me/mats-tiny")' in calls["card"]
    assert calls["loaded_prompt"] == "plain"


def test_push_rejects_bad_repo_id(tiny_ckpt_gpt2):
    from mats.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not a Hub repo id"):
        MATS.from_pretrained(tiny_ckpt_gpt2, device="cpu").push_to_hub("no slash here")
